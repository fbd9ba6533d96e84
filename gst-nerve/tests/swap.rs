//! Live model swaps in `nervesr` (`cargo test hot_swap`): by the `model` property and by following
//! a `model-location` manifest; refusals keep the running model.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use gst_check::Harness;
use gst_video::VideoFormat;
use gst_video::prelude::*;

/// Input luma stays below 192 so that the offset model's +64 never clips.
fn pattern(x: usize, y: usize) -> u8 {
    ((x * 5 + y * 11) % 180) as u8
}

/// Which fixture made a frame: Some(0) nearest, Some(64) offset, None for a frame that is
/// neither (part one model, part the other, or anything else).
fn made_by(out: &gst_video::VideoFrame<gst_video::video_frame::Readable>) -> Option<u8> {
    let w = out.width() as usize;
    let luma = luma_of(out);
    let diff = |i: usize| luma[i].wrapping_sub(pattern((i % w) / 2, (i / w) / 2));
    let first = diff(0);
    ((first == 0 || first == 64) && (0..luma.len()).all(|i| diff(i) == first)).then_some(first)
}

/// Both fixtures in one directory: (dir, nearest path, offset path).
fn two_models() -> (std::path::PathBuf, String, String) {
    let dir = model_dir(&[
        Entry { name: "nearest", source: &fixture("nearest_x2.onnx"), scale: 2, frames: 1 },
        Entry { name: "offset", source: &fixture("offset_x2.onnx"), scale: 2, frames: 1 },
    ]);
    let path = |n: &str| dir.join(format!("{n}.onnx")).to_string_lossy().into_owned();
    let (a, b) = (path("nearest"), path("offset"));
    (dir, a, b)
}

/// Pushes frames (each one must come out) until `done` holds for the output; returns how many.
fn push_until(
    h: &mut Harness,
    info: &gst_video::VideoInfo,
    pts: &mut u64,
    done: impl Fn(&gst_video::VideoFrame<gst_video::video_frame::Readable>) -> bool,
) -> usize {
    let started = Instant::now();
    let mut pushed = 0;
    loop {
        let out = push_frame(h, info, *pts, pattern);
        *pts += 33;
        pushed += 1;
        assert!(made_by(&out).is_some(), "frame {pts} ms is not wholly made by one model");
        if done(&out) {
            return pushed;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no swap within 20 s");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn warnings(bus: &gst::Bus) -> Vec<String> {
    std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Warning]))
        .filter_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some(format!("{} ({})", w.error(), w.debug().unwrap_or_default())),
            _ => None,
        })
        .collect()
}

#[test]
fn hot_swap_100_times_by_the_model_property_loses_no_frame_and_mixes_none() {
    let (_dir, nearest, offset) = two_models();
    let mut h = harness(&[("model", &nearest)]);
    let info = info(VideoFormat::I420, 48, 32);
    h.set_src_caps(info.to_caps().unwrap());
    let mut pts = 0;
    let mut pushed = push_until(&mut h, &info, &mut pts, |f| made_by(f) == Some(0));
    let element = h.element().expect("element");
    for swap in 0..100 {
        let (path, want) = if swap % 2 == 0 { (&offset, 64) } else { (&nearest, 0) };
        element.set_property("model", path);
        pushed += push_until(&mut h, &info, &mut pts, |f| made_by(f) == Some(want));
    }
    let s = stats(&h);
    assert_eq!(s.get::<u64>("model-swaps").unwrap(), 100);
    assert_eq!(s.get::<u64>("swaps-refused").unwrap(), 0);
    // Every pushed frame came out (push_frame pulls one per push) and was enhanced by a model.
    assert_eq!(s.get::<u64>("frames-enhanced").unwrap(), pushed as u64);
    assert_eq!(s.get::<u64>("frames-classical").unwrap(), 0);
    assert_eq!(s.get::<String>("model").unwrap(), "nearest");
}

#[test]
fn hot_swap_refuses_a_model_failing_its_sha256_and_keeps_the_running_one() {
    let (dir, nearest, offset) = two_models();
    // Corrupt the offset model after its manifest entry was written: its sha256 no longer matches.
    let mut bytes = std::fs::read(&offset).unwrap();
    bytes.push(0);
    std::fs::write(&offset, bytes).unwrap();
    let mut h = harness(&[("model", &nearest)]);
    let bus = gst::Bus::new();
    h.element().unwrap().set_bus(Some(&bus));
    let info = info(VideoFormat::Nv12, 40, 24);
    h.set_src_caps(info.to_caps().unwrap());
    let mut pts = 0;
    h.element().unwrap().set_property("model", &offset);
    let el = h.element().unwrap();
    push_until(&mut h, &info, &mut pts, |_| refused(&el) == 1);
    // Still the old model, frame after frame.
    for _ in 0..5 {
        let out = push_frame(&mut h, &info, pts, pattern);
        pts += 33;
        assert_eq!(made_by(&out), Some(0));
    }
    let w = warnings(&bus);
    assert!(w.iter().any(|m| m.contains("refused") && m.contains("sha256")), "{w:?} in {}", dir.display());
    assert_eq!(stats(&h).get::<u64>("model-swaps").unwrap(), 0);
}

fn refused(element: &gst::Element) -> u64 {
    element.property::<gst::Structure>("stats").get::<u64>("swaps-refused").unwrap()
}

#[test]
fn hot_swap_refuses_a_model_of_another_scale() {
    let dir = model_dir(&[
        Entry { name: "nearest", source: &fixture("nearest_x2.onnx"), scale: 2, frames: 1 },
        Entry { name: "claims-x3", source: &fixture("nearest_x2.onnx"), scale: 3, frames: 1 },
    ]);
    let mut h = harness(&[("model", dir.join("nearest.onnx").to_str().unwrap())]);
    let bus = gst::Bus::new();
    h.element().unwrap().set_bus(Some(&bus));
    let info = info(VideoFormat::I420, 16, 16);
    h.set_src_caps(info.to_caps().unwrap());
    h.element().unwrap().set_property("model", dir.join("claims-x3.onnx").to_str().unwrap());
    let mut pts = 0;
    let el = h.element().unwrap();
    push_until(&mut h, &info, &mut pts, |_| refused(&el) == 1);
    assert!(warnings(&bus).iter().any(|m| m.contains("scale")));
}

/// Rewrites the manifest so that `default_name` is the default x2 model, atomically (as the
/// registry's materialisation does: temporary file, then rename).
fn set_default(dir: &std::path::Path, default_name: &str) {
    let path = dir.join("manifest.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    for table in text.split("[[model]]").filter(|t| !t.trim().is_empty()) {
        let body: String = table.lines().filter(|l| !l.starts_with("default")).map(|l| format!("{l}\n")).collect();
        let is_default = body.contains(&format!("name = \"{default_name}\""));
        out.push_str(&format!("[[model]]\ndefault = {is_default}{body}"));
    }
    let tmp = dir.join("manifest.toml.tmp");
    std::fs::write(&tmp, out).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

#[test]
fn hot_swap_follows_the_manifest_of_model_location() {
    let (dir, _, _) = two_models();
    set_default(&dir, "nearest");
    let location = dir.to_str().unwrap();
    let mut h = harness(&[("model-location", location), ("watch-interval", "20")]);
    let info = info(VideoFormat::I420, 32, 24);
    h.set_src_caps(info.to_caps().unwrap());
    let mut pts = 0;
    push_until(&mut h, &info, &mut pts, |f| made_by(f) == Some(0));
    for (round, (name, want)) in [("offset", 64), ("nearest", 0), ("offset", 64)].into_iter().enumerate() {
        set_default(&dir, name);
        push_until(&mut h, &info, &mut pts, |f| made_by(f) == Some(want));
        assert_eq!(stats(&h).get::<u64>("model-swaps").unwrap(), round as u64 + 1);
        assert_eq!(stats(&h).get::<String>("model").unwrap(), name);
    }
}

/// A manifest may name a faster default for large inputs (`default_from_rows`): with no model
/// named, a fixed-scale element takes it when the caps bring that many rows, and the default
/// again when they shrink, without losing or mixing a frame; both stay loaded.
#[test]
fn default_follows_the_input_rows_when_the_manifest_names_one_for_large_inputs() {
    let (dir, _, _) = two_models();
    set_default(&dir, "nearest");
    let path = dir.join("manifest.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let marked = text.replace("name = \"offset\"", "name = \"offset\"\ndefault_from_rows = 24");
    assert_ne!(marked, text, "the offset entry was not found");
    std::fs::write(&path, marked).unwrap();
    let mut h = harness(&[("model-location", dir.to_str().unwrap())]);
    let mut pts = 0;
    for (rows, want, name) in [(16, 0, "nearest"), (24, 64, "offset"), (16, 0, "nearest"), (40, 64, "offset")] {
        let info = info(VideoFormat::I420, 32, rows);
        h.set_src_caps(info.to_caps().unwrap());
        for _ in 0..3 {
            let out = push_frame(&mut h, &info, pts, pattern);
            pts += 33;
            assert_eq!(made_by(&out), Some(want), "{rows} rows: frame {pts} ms not made by {name}");
        }
        assert_eq!(stats(&h).get::<String>("model").unwrap(), name, "{rows} rows");
    }
    assert_eq!(stat(&h, "frames-enhanced"), 12);
    assert_eq!(stat(&h, "frames-classical"), 0);
}
