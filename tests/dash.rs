//! DASH through `nerveabr` and `nervesr`: a three-rung ladder encoded from a real clip (Big Buck
//! Bunny, 6 s, 1 s fragments), served from a loopback HTTP server, played by
//! `urisourcebin ! decodebin3 ! nerveabr ! videoconvert ! nervesr ! appsink` as fast as it
//! decodes (no clock sync).
//!
//! Asserts: EOS without an error; one `nerveabr-decision` per media fragment (fragment k's made
//! when the manifest is read or fragment k-1 is downloaded), each naming a rung of the ladder
//! with its declared bitrate and height, and the demuxer fetching fragment k from that rung
//! (nerveabr steers it); every decoded frame comes out of
//! `nervesr` (its stats: enhanced + classical = frames decoded, enhanced > 0) at exactly twice
//! the size of the rung it was decoded from.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gst::prelude::*;
use nerve_e2e::dash::{Ladder, Rung, Server, encode_ladder};
use nerve_e2e::{SinkFrame, count_buffers, field, init, input, record_frames, size_of};

const CLIP: &str = "videos/animation/big_buck_bunny_0_30.webm";
const FPS: u32 = 24;
const FRAMES: u32 = 6 * FPS;
const RUNGS: [Rung; 3] = [
    Rung { width: 320, height: 180, bitrate: 300_000 },
    Rung { width: 480, height: 270, bitrate: 700_000 },
    Rung { width: 640, height: 360, bitrate: 1_200_000 },
];
const DEADLINE: Duration = Duration::from_secs(90);

#[derive(Debug)]
struct Decision {
    fragment: u64,
    rung: u32,
    bitrate: u64,
    height: u32,
    policy: String,
}

fn decision(s: &gst::StructureRef) -> Decision {
    Decision {
        fragment: s.get("fragment").expect("fragment (u64)"),
        rung: s.get("rung").expect("rung (u32)"),
        bitrate: s.get("bitrate").expect("bitrate (u64)"),
        height: s.get("height").expect("height (u32)"),
        policy: s.get("policy").expect("policy (string)"),
    }
}

/// (rung index, segment number) of a media segment request such as `r2/seg-5.m4s`.
fn media_request(path: &str) -> Option<(usize, u64)> {
    let (dir, file) = path.split_once('/')?;
    let rung = dir.strip_prefix('r')?.parse().ok()?;
    let n = file.strip_prefix("seg-")?.strip_suffix(".m4s")?.parse().ok()?;
    Some((rung, n))
}

/// The ladder, encoded into `name` under the target's temporary directory (one per test: the
/// tests run at once).
fn ladder(name: &str) -> Option<Ladder> {
    let clip = input(CLIP)?;
    // One fixed place, emptied first: a failed run leaves its ladder there to look at.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let ladder = encode_ladder(&clip, &RUNGS, FRAMES, FPS, &dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ladder.segments, (FRAMES / FPS) as usize, "one fragment per second of video");
    Some(ladder)
}

/// The input size of every frame `sr` gets, by PTS.
fn input_sizes(sr: &gst::Element) -> Arc<Mutex<HashMap<u64, (i32, i32)>>> {
    let sizes: Arc<Mutex<HashMap<u64, (i32, i32)>>> = Arc::default();
    let seen = sizes.clone();
    sr.static_pad("sink").expect("sink pad").add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        if let (Some(gst::PadProbeData::Buffer(b)), Some(caps)) = (&info.data, pad.current_caps())
            && let Some(pts) = b.pts()
            && let Ok(mut m) = seen.lock()
        {
            m.insert(pts.nseconds(), size_of(&caps));
        }
        gst::PadProbeReturn::Ok
    });
    sizes
}

#[test]
fn dash_ladder_through_nerveabr_and_nervesr() {
    let _t = nerve_e2e::Timer::start("dash");
    init();
    let Some(ladder) = ladder("e2e-dash") else { return };
    let server = Server::start(&ladder.dir).expect("loopback server");

    let pipeline = gst::parse::launch(&format!(
        "urisourcebin uri={} ! decodebin3 ! nerveabr name=abr policy=nerve ! videoconvert ! nervesr name=sr scale=2 ! \
         appsink name=sink sync=false",
        server.url("manifest.mpd")
    ))
    .expect("pipeline")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let abr = pipeline.by_name("abr").expect("nerveabr");
    let sr = pipeline.by_name("sr").expect("nervesr");
    let sink = pipeline.by_name("sink").expect("appsink").downcast::<gst_app::AppSink>().expect("appsink");

    // Frames decoded (into nerveabr), and the input size of each frame nervesr got, by PTS.
    let decoded = count_buffers(&abr.static_pad("sink").expect("sink pad"));
    let sr_in = input_sizes(&sr);
    let out = record_frames(&sink);

    let bus = pipeline.bus().expect("bus");
    pipeline.set_state(gst::State::Playing).expect("the pipeline starts");
    let outcome = nerve_e2e::wait(&bus, DEADLINE);
    pipeline.set_state(gst::State::Null).expect("stops");
    let requests = server.requests();
    drop(server);
    outcome.assert_clean_eos("DASH playback");

    // -- nerveabr: one decision per media fragment, within the ladder, steering the next fetch.
    let decisions: Vec<Decision> = outcome.messages("nerveabr-decision").into_iter().map(|s| decision(s)).collect();
    let media: Vec<(usize, u64)> = requests.iter().filter_map(|r| media_request(r)).collect();
    eprintln!("requests: {requests:?}");
    for d in &decisions {
        eprintln!("  {d:?}");
    }
    assert_eq!(media.len(), ladder.segments, "each fragment fetched once: {media:?}");
    assert_eq!(media.iter().map(|m| m.1).collect::<Vec<_>>(), (1..=ladder.segments as u64).collect::<Vec<_>>(), "in order");
    assert_eq!(decisions.len(), media.len(), "one nerveabr-decision per media fragment: {decisions:#?}");
    for (k, d) in decisions.iter().enumerate() {
        let rung = RUNGS.get(d.rung as usize).unwrap_or_else(|| panic!("decision {k} names rung {} of a {}-rung ladder", d.rung, RUNGS.len()));
        assert_eq!((d.bitrate, d.height), (rung.bitrate as u64, rung.height), "decision {k} describes its rung: {d:?}");
        assert_eq!(d.policy, "nerve", "{d:?}");
        assert_eq!(d.fragment, k as u64, "decision {k} is for fragment {k} (counted from 0): {d:?}");
    }
    // Decision k (the first one when the manifest is read, then one after each download) is
    // the rung the demuxer fetched fragment k from: nerveabr steers it.
    for (d, fetched) in decisions.iter().zip(&media) {
        assert_eq!(d.rung as usize, fetched.0, "decision {d:?}, but the demuxer fetched r{}/seg-{}", fetched.0, fetched.1);
    }

    // -- nervesr: every decoded frame out, enhanced, at twice its rung's size.
    let decoded = decoded.load(std::sync::atomic::Ordering::SeqCst);
    let out = out.lock().expect("frames").clone();
    let sr_in = sr_in.lock().expect("sizes").clone();
    assert_eq!(decoded, ladder.frames, "every frame of every fragment decoded");
    assert_eq!(out.len() as u64, decoded, "frames out = frames decoded");
    let stats = outcome.last("nervesr-stats").expect("nervesr posts its stats at EOS");
    let (enhanced, classical) = (field(stats, "frames-enhanced"), field(stats, "frames-classical"));
    eprintln!("nervesr: {stats}");
    assert!(enhanced > 0, "no frame went through the model: {stats}");
    assert_eq!(enhanced + classical, decoded, "nervesr counts every decoded frame once: {stats}");
    assert_eq!(field(stats, "inference-errors"), 0, "{stats}");
    assert!(out.windows(2).all(|w| w[0].pts < w[1].pts), "frames out in timestamp order");
    let mut sizes: Vec<(i32, i32)> = Vec::new();
    for SinkFrame { pts, size } in &out {
        let (w, h) = sr_in.get(pts).copied().unwrap_or_else(|| panic!("frame {pts} out of nervesr was never in it"));
        assert!(RUNGS.iter().any(|r| (r.width as i32, r.height as i32) == (w, h)), "input {w}x{h} is not a rung");
        assert_eq!(*size, (2 * w, 2 * h), "frame at {pts} ns: {w}x{h} in, {}x{} out", size.0, size.1);
        if !sizes.contains(size) {
            sizes.push(*size);
        }
    }
    eprintln!("output sizes: {sizes:?}");
    // Loopback throughput is far above the top rung, so any policy leaves the first (lowest)
    // rung: nervesr renegotiates mid-stream.
    assert!(sizes.len() >= 2, "one rung only was played: {sizes:?}");
    let _ = std::fs::remove_dir_all(&ladder.dir);
}

/// How nervesr made the frames from `pts` on (a `nervesr-switch` message).
#[derive(Debug, Clone)]
struct Made {
    pts: u64,
    enhanced: bool,
    scale: u32,
    reason: String,
}

/// The model factor nervesr's fit mode must pick for a rung on a `display` output: the largest k
/// in 2..=4 with k x rung <= display; 1 without one; 0 at the display size (pass-through).
fn fit_factor(rung: (i32, i32), display: (i32, i32)) -> u32 {
    if rung == display {
        return 0;
    }
    (2..=4).rev().find(|&k| k * rung.0 <= display.0 && k * rung.1 <= display.1).map_or(1, |k| k as u32)
}

/// Plays the ladder through `nerveabr policy=<policy> ! nervesr scale=0` onto a 1280x720 display and
/// checks, frame by frame, that the decision of the frame's fragment was enacted: the model ran
/// exactly when the decision's level was above 0 and the rung needed a model, at the factor the
/// rung needs, and the output never left the display size. Returns (frames enhanced, frames
/// classical because nerveabr said so).
fn play_fit(ladder: &Ladder, policy: &str) -> (u64, u64) {
    // Above the top rung, so that every rung needs enhancing: 180p takes the x4 model, 270p the
    // x2 one and a classical 540p -> 720p, 360p the x2 model.
    let display = (1280, 720);
    let server = Server::start(&ladder.dir).expect("loopback server");
    let pipeline = gst::parse::launch(&format!(
        "urisourcebin uri={} ! decodebin3 ! nerveabr name=abr policy={policy} ! videoconvert ! nervesr name=sr scale=0 ! \
         video/x-raw,width={},height={} ! appsink name=sink sync=false",
        server.url("manifest.mpd"),
        display.0,
        display.1
    ))
    .expect("pipeline")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let sr = pipeline.by_name("sr").expect("nervesr");
    let sink = pipeline.by_name("sink").expect("appsink").downcast::<gst_app::AppSink>().expect("appsink");
    let sr_in = input_sizes(&sr);
    let out = record_frames(&sink);
    let bus = pipeline.bus().expect("bus");
    pipeline.set_state(gst::State::Playing).expect("the pipeline starts");
    let outcome = nerve_e2e::wait(&bus, DEADLINE);
    pipeline.set_state(gst::State::Null).expect("stops");
    drop(server);
    outcome.assert_clean_eos(&format!("DASH playback, policy {policy}, nervesr fit mode"));

    let levels: Vec<u32> = outcome.messages("nerveabr-decision").iter().map(|s| s.get::<u32>("level").expect("level")).collect();
    let switches: Vec<Made> = outcome
        .messages("nervesr-switch")
        .iter()
        .map(|s| Made {
            pts: s.get("pts").expect("pts"),
            enhanced: s.get("enhanced").expect("enhanced"),
            scale: s.get("model-scale").expect("model-scale"),
            reason: s.get::<String>("reason").expect("reason"),
        })
        .collect();
    eprintln!("policy {policy}: levels per fragment {levels:?}");
    for m in &switches {
        eprintln!("  {m:?}");
    }
    let out = out.lock().expect("frames").clone();
    let sr_in = sr_in.lock().expect("sizes").clone();
    eprintln!("frame pts: first {:?}, last {:?}", out.first().map(|f| f.pts), out.last().map(|f| f.pts));
    assert_eq!(out.len() as u64, ladder.frames, "every frame out");
    let (mut enhanced, mut held_back) = (0, 0);
    for SinkFrame { pts, size } in &out {
        assert_eq!(*size, display, "frame at {pts} ns: the output left the display size");
        let rung = *sr_in.get(pts).unwrap_or_else(|| panic!("frame {pts} out of nervesr was never in it"));
        let fragment = (*pts / 1_000_000_000) as usize;
        let level = *levels.get(fragment).unwrap_or_else(|| panic!("no decision for fragment {fragment}"));
        let made = switches.iter().rev().find(|m| m.pts <= *pts).unwrap_or_else(|| panic!("no switch before frame {pts}"));
        let k = fit_factor(rung, display);
        let want = k >= 2 && level > 0;
        assert_eq!(made.enhanced, want, "frame {pts} (fragment {fragment}, level {level}, rung {rung:?}, factor {k}): {made:?}");
        if want {
            assert_eq!(made.scale, k, "frame {pts}: the x{k} model must make it: {made:?}");
            enhanced += 1;
        }
        let reason = match (k, level) {
            (0, _) => "pass-through",
            (1, _) => "no-model",
            (_, 0) => "abr",
            _ => "model",
        };
        assert_eq!(made.reason, reason, "frame {pts} (fragment {fragment}, level {level}, rung {rung:?}): {made:?}");
        if reason == "abr" {
            held_back += 1;
        }
    }
    let stats = outcome.last("nervesr-stats").expect("nervesr posts its stats at EOS");
    assert_eq!(field(stats, "frames-enhanced"), enhanced, "{stats}");
    (enhanced, held_back)
}

#[test]
fn dash_fit_mode_enacts_every_decision_at_its_fragment() {
    let _t = nerve_e2e::Timer::start("dash-fit");
    init();
    let Some(ladder) = ladder("e2e-dash-fit") else { return };
    // A bitrate-only policy decides level 0 for every fragment: nervesr must never run its model.
    let (enhanced, held_back) = play_fit(&ladder, "bb");
    assert_eq!(enhanced, 0);
    assert!(held_back > 0, "the lowest rung plays first and needs a model: nerveabr must have held it back");
    // The enhancement-aware policy enhances the low rungs: the model runs there, and only there.
    let (enhanced, _) = play_fit(&ladder, "nerve");
    assert!(enhanced > 0, "nerve enhanced nothing");
    // The learned policy (policy=ppo) plays too, its actor on nerve-engine: a tiny seeded actor
    // for the shipped 6-row table (nerve-abr/tests/fixtures), deciding on the 3 rows this
    // ladder's rungs take, every decision enacted as above.
    let actor = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../nerve-abr/tests/fixtures/tiny_actor.onnx");
    play_fit(&ladder, &format!("ppo ppo-model={}", actor.display()));
    let _ = std::fs::remove_dir_all(&ladder.dir);
}
