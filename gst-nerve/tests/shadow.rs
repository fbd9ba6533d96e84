//! Shadow mode in `nervesr` at scale 1: a candidate is scored beside the champion on patches of
//! the real frames, frames pass through untouched, and a candidate that cannot run costs the
//! stream nothing.

mod common;

use common::*;
use gst_check::Harness;
use gst_video::VideoFormat;

/// Smooth detail (waves), so that a sound x2 model scores well after downscale and x264.
fn textured(x: usize, y: usize) -> u8 {
    let (x, y) = (x as f64, y as f64);
    (128.0 + 60.0 * (x / 9.0).sin() + 40.0 * (y / 7.0 + x / 23.0).cos()) as u8
}

/// Plays `n` frames at 30 fps through the harness (each must come out unchanged), then EOS, and
/// returns the stats posted after the shadow settled.
fn play(h: &mut Harness, n: u64) -> gst::Structure {
    let info = info(VideoFormat::I420, 256, 192);
    h.set_src_caps(info.to_caps().unwrap());
    for i in 0..n {
        let mut buffer = frame(&info, textured, 100, 140);
        {
            let b = buffer.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_nseconds(i * 1_000_000_000 / 30));
            b.set_duration(gst::ClockTime::from_nseconds(1_000_000_000 / 30));
        }
        let expected = buffer.map_readable().unwrap().to_vec();
        h.push(buffer).expect("pushed");
        let out = h.pull().expect("one frame out per frame in");
        assert_eq!(out.map_readable().unwrap().as_slice(), expected.as_slice(), "frame {i} changed in pass-through");
    }
    assert!(h.push_event(gst::event::Eos::new()));
    stats(h)
}

fn models() -> (String, String) {
    let dir = model_dir(&[
        Entry { name: "nearest", source: &fixture("nearest_x2.onnx"), scale: 2, frames: 1 },
        Entry { name: "offset", source: &fixture("offset_x2.onnx"), scale: 2, frames: 1 },
    ]);
    let path = |n: &str| dir.join(format!("{n}.onnx")).to_string_lossy().into_owned();
    (path("nearest"), path("offset"))
}

#[test]
fn a_worse_candidate_scores_worse_on_the_real_frames() {
    let (champion, candidate) = models();
    let mut h = harness(&[("scale", "1"), ("model", &champion), ("shadow-model", &candidate), ("shadow-budget", "600")]);
    let s = play(&mut h, 90);
    assert_eq!(s.get::<&str>("shadow-error").unwrap(), "", "{s}");
    assert_eq!(s.get::<&str>("shadow-model").unwrap(), "offset");
    assert_eq!(s.get::<&str>("shadow-champion").unwrap(), "nearest");
    assert_eq!(s.get::<&str>("shadow-codec").unwrap(), "x264");
    let samples = s.get::<u64>("shadow-samples").unwrap() + s.get::<u64>("shadow-dropped").unwrap();
    // 3 s of video at 600 samples a minute: one sample every 0.1 s, 30 in all.
    assert_eq!(samples, 30, "{s}");
    assert!(s.get::<u64>("shadow-samples").unwrap() > 0, "{s}");
    let (champ, cand) = (s.get::<f64>("shadow-champion-psnr").unwrap(), s.get::<f64>("shadow-candidate-psnr").unwrap());
    // The offset model is the nearest one plus 64 grey levels: about 12 dB PSNR at best.
    assert!(champ > 20.0 && cand < 13.0 && s.get::<f64>("shadow-gain-db").unwrap() < -8.0, "{s}");
    assert!(s.get::<f64>("shadow-candidate-ms-per-mpx").unwrap() > 0.0);
    assert_eq!(s.get::<u64>("frames-enhanced").unwrap(), 0, "scale 1 enhances nothing");
}

#[test]
fn the_champion_in_shadow_gains_exactly_nothing() {
    let (champion, _) = models();
    let mut h = harness(&[
        ("scale", "1"),
        ("model", &champion),
        ("shadow-model", &champion),
        ("shadow-budget", "600"),
        ("shadow-crf", "0"),
    ]);
    let s = play(&mut h, 30);
    assert_eq!(s.get::<&str>("shadow-codec").unwrap(), "none", "{s}");
    assert!(s.get::<u64>("shadow-samples").unwrap() > 0, "{s}");
    assert_eq!(s.get::<f64>("shadow-gain-db").unwrap(), 0.0, "{s}");
}

#[test]
fn a_candidate_that_cannot_load_costs_the_stream_nothing() {
    let (champion, _) = models();
    let mut h = harness(&[
        ("scale", "1"),
        ("model", &champion),
        ("shadow-model", "/nonexistent/candidate.onnx"),
        ("shadow-budget", "600"),
    ]);
    let s = play(&mut h, 30);
    assert!(s.get::<&str>("shadow-error").unwrap().contains("candidate"), "{s}");
    assert_eq!(s.get::<u64>("shadow-samples").unwrap(), 0);
}

#[test]
fn without_a_shadow_model_the_stats_have_no_shadow_fields() {
    let (champion, _) = models();
    let mut h = harness(&[("scale", "1"), ("model", &champion)]);
    let s = play(&mut h, 3);
    assert!(!s.has_field("shadow-samples"), "{s}");
}
