//! Harvesting in `nervesr` at scale 1: frames pass through untouched, a bounded number of
//! detailed patches per minute lands in the episodic memory in its on-disk format, and nothing
//! is harvested when harvesting is off or when the element upscales.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use gst_check::Harness;
use gst_video::VideoFormat;

fn store() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nerve-harvest-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

fn textured(x: usize, y: usize) -> u8 {
    ((x * 37 + y * 91 + (x * y) % 53) % 256) as u8
}

fn items(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir.join("items")) else { return Vec::new() };
    let mut v: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().ends_with(ext)).collect();
    v.sort();
    v
}

/// Pushes `n` frames at 30 fps; each must come out unchanged (pass-through).
fn play(h: &mut Harness, info: &gst_video::VideoInfo, n: u64, luma: fn(usize, usize) -> u8) {
    for i in 0..n {
        let mut buffer = frame(info, luma, 100, 140);
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
}

#[test]
fn harvests_a_bounded_number_of_patches_at_scale_one_in_the_memory_format() {
    let dir = store();
    let mut h = harness(&[
        ("scale", "1"),
        ("harvest-location", dir.to_str().unwrap()),
        ("harvest-budget", "60"),
        ("harvest-patch", "32"),
    ]);
    let info = info(VideoFormat::I420, 160, 120);
    h.set_src_caps(info.to_caps().unwrap());
    play(&mut h, &info, 90, textured); // 3 s of video at 60 patches per minute: t = 0, 1, 2 s
    let s = stats(&h);
    assert_eq!(s.get::<u64>("harvested-patches").unwrap(), 3);
    assert_eq!(s.get::<u64>("harvested-bytes").unwrap(), 3 * 32 * 32);
    drop(h); // stopping waits for the writer: everything handed over is on disk
    let metas = items(&dir, ".json");
    assert_eq!(metas.len(), 3, "{metas:?}");
    assert!(items(&dir, ".tmp").is_empty());
    let mut frames = Vec::new();
    for meta in metas {
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
        let id = m["id"].as_str().unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!((m["width"].as_u64(), m["height"].as_u64(), m["patch"].as_u64()), (Some(160), Some(120), Some(32)));
        assert!(m["source"].as_str().unwrap().starts_with("harvest:"));
        frames.push(m["frame"].as_u64().unwrap());
        assert!(m["stats"]["std"].as_f64().unwrap() > 4.0 && m["stats"]["grad"].as_f64().unwrap() > 0.0);
        // The patch is the frame's luma at (x, y), stored as NPY 1.0 uint8 (32, 32).
        let npy = std::fs::read(dir.join("items").join(format!("{id}.npy"))).unwrap();
        assert_eq!(&npy[..8], b"\x93NUMPY\x01\x00");
        let header_len = u16::from_le_bytes([npy[8], npy[9]]) as usize;
        assert!(std::str::from_utf8(&npy[10..10 + header_len]).unwrap().contains("'shape': (32, 32)"));
        let pixels = &npy[10 + header_len..];
        assert_eq!(pixels.len(), 32 * 32);
        let (x, y) = (m["x"].as_u64().unwrap() as usize, m["y"].as_u64().unwrap() as usize);
        for (i, &p) in pixels.iter().enumerate() {
            assert_eq!(p, textured(x + i % 32, y + i / 32));
        }
    }
    // One patch a second at 30 fps: frames 0, 30 and 60, each patch tagged with its frame.
    frames.sort();
    assert_eq!(frames, [0, 30, 60]);
}

#[test]
fn flat_frames_give_no_patches() {
    let dir = store();
    let mut h = harness(&[("scale", "1"), ("harvest-location", dir.to_str().unwrap()), ("harvest-budget", "600")]);
    let info = info(VideoFormat::Nv12, 320, 180);
    h.set_src_caps(info.to_caps().unwrap());
    play(&mut h, &info, 30, |_, _| 77);
    assert_eq!(stats(&h).get::<u64>("harvested-patches").unwrap(), 0);
    drop(h);
    assert!(items(&dir, ".npy").is_empty());
}

#[test]
fn nothing_is_harvested_when_off_or_when_upscaling() {
    // Off: scale 1 without a location passes frames through and stores nothing.
    let mut h = harness(&[("scale", "1")]);
    let info = info(VideoFormat::I420, 64, 64);
    h.set_src_caps(info.to_caps().unwrap());
    play(&mut h, &info, 10, textured);
    assert_eq!(stats(&h).get::<u64>("harvested-patches").unwrap(), 0);
    drop(h);
    // Upscaling: a low rung is no ground truth; the location stays empty.
    let dir = store();
    let model = nearest_model();
    let mut h = harness(&[("model", model.to_str().unwrap()), ("harvest-location", dir.to_str().unwrap())]);
    h.set_src_caps(info.to_caps().unwrap());
    for i in 0..10 {
        push_frame(&mut h, &info, i * 33, textured);
    }
    drop(h);
    assert!(items(&dir, ".npy").is_empty() && items(&dir, ".json").is_empty());
}

#[test]
fn an_unwritable_harvest_location_fails_the_start_with_a_clear_error() {
    let file = store().join("not-a-directory");
    std::fs::write(&file, b"x").unwrap();
    let msg = start_error(&[("scale", "1"), ("harvest-location", file.to_str().unwrap())]);
    assert!(msg.contains("harvest store"), "{msg}");
}
