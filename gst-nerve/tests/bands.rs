//! Frames run as horizontal bands, each by its own ONNX Runtime session at once: the output must
//! be the whole frame's, for every shipped x2 model (float and int8, one frame and two), at the
//! sizes the element meets (even and odd, one band's worth and several).

mod common;

use std::path::PathBuf;

use common::*;
use gstnerve::engine::manifest::{Task, resolve_in};
use gstnerve::engine::model::MIN_AUTO_ROWS;
use gstnerve::engine::{Model, SessionConfig};

fn models() -> Vec<PathBuf> {
    vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")]
}

fn load(name: &str, bands: u32) -> Model {
    let resolved = resolve_in(name, Task::SuperResolution, 2, &models()).expect("a shipped model resolves");
    Model::load(resolved, &SessionConfig { threads: 2, bands, ..SessionConfig::default() }).expect("loads")
}

fn noise(frames: usize, w: usize, h: usize, seed: u32) -> Vec<f32> {
    // smooth picture plus grain: what a decoded frame looks like to the network
    (0..frames * w * h)
        .map(|i| {
            let (x, y) = ((i % w) as f32, ((i / w) % h) as f32);
            let grain = ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 24) as f32 / 255.0;
            (0.5 + 0.3 * (x * 0.07 + y * 0.05).sin() + 0.2 * (grain - 0.5)).clamp(0.0, 1.0)
        })
        .collect()
}

fn output(model: &mut Model, input: &[f32], w: usize, h: usize) -> Vec<f32> {
    let mut out = Vec::new();
    model.run(input, w, h, |o| out.extend_from_slice(o)).expect("runs");
    out
}

#[test]
fn banded_frames_give_the_whole_frames_output() {
    init();
    for name in ["", "nerve-sr-x2-s2d-temporal-d4-filmed-mix", "nerve-sr-x2-s2d-temporal-edge-int8", "nerve-sr-x2", "nerve-sr-x2-s2d-int8"] {
        let mut whole = load(name, 1);
        let mut banded = load(name, 3);
        assert_eq!(whole.bands(), 1, "{name}");
        assert_eq!(banded.bands(), 3, "{name}: three sessions");
        let halo = banded.halo();
        assert!(halo >= 4 && halo % 4 == 0, "{name}: a margin of {halo} rows");
        // tall enough for three bands, for two, and too short for any: all the whole frame's output
        for (w, h) in [(64, 12 * halo + 6), (37, 8 * halo + 3), (40, 3 * halo)] {
            let input = noise(whole.frames(), w, h, 7);
            let a = output(&mut whole, &input, w, h);
            let b = output(&mut banded, &input, w, h);
            assert_eq!(a.len(), 4 * w * h);
            let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
            assert!(worst == 0.0, "{name} {w}x{h}: bands differ from the whole frame by {worst}");
        }
    }
}

#[test]
fn automatic_banding_tries_both_ways_then_keeps_one_with_the_same_output() {
    init();
    let mut whole = load("", 1);
    let mut auto = load("", 0);
    assert_eq!(auto.bands(), 2, "two threads: two sessions");
    let (w, h) = (64, (12 * auto.halo()).max(MIN_AUTO_ROWS));
    let input = noise(auto.frames(), w, h, 11);
    let expected = output(&mut whole, &input, w, h);
    let mut used = Vec::new();
    for _ in 0..16 {
        assert!(output(&mut auto, &input, w, h) == expected, "every frame is the whole frame's output");
        used.push(auto.bands_in_use());
    }
    assert!(used[..10].contains(&1) && used[..10].contains(&2), "the trial runs both ways: {used:?}");
    assert!(used[10..].iter().all(|&b| b == used[10]), "after the trial one way is kept: {used:?}");
    // a new size is tried again; one below the automatic minimum runs whole
    let (w3, h3) = (40, MIN_AUTO_ROWS - 8);
    let input3 = noise(auto.frames(), w3, h3, 9);
    for _ in 0..3 {
        assert!(output(&mut auto, &input3, w3, h3) == output(&mut whole, &input3, w3, h3));
        assert_eq!(auto.bands_in_use(), 1, "{h3} rows run whole");
    }
    let (w2, h2) = (40, MIN_AUTO_ROWS + 8);
    let input2 = noise(auto.frames(), w2, h2, 5);
    let first: Vec<usize> = (0..4).map(|_| { output(&mut auto, &input2, w2, h2); auto.bands_in_use() }).collect();
    assert!(first.contains(&1) && first.contains(&2), "a new size goes on trial: {first:?}");
}

#[test]
fn bands_write_their_rows_into_a_strided_plane_as_the_whole_frame_does() {
    init();
    let mut whole = load("", 1);
    let mut banded = load("", 3);
    let (w, h) = (37, 12 * banded.halo() + 6);
    let input = noise(whole.frames(), w, h, 3);
    let expected = output(&mut whole, &input, w, h);
    let (ow, oh, stride) = (2 * w, 2 * h, 2 * w + 5);
    for model in [&mut whole, &mut banded] {
        // the padding after each row's pixels must stay as it was: 9 marks it
        let mut plane = vec![9.0f32; (oh - 1) * stride + ow];
        let (_, rows) = model
            .run_into(&input, w, h, &mut plane, stride, |band: &[f32], dst: &mut [f32]| {
                let n = band.len() / ow;
                for (y, row) in band.chunks_exact(ow).enumerate() {
                    dst[y * stride..y * stride + ow].copy_from_slice(row);
                }
                n
            })
            .expect("runs");
        assert_eq!(rows.iter().sum::<usize>(), oh, "every output row goes to a band once: {rows:?}");
        assert_eq!(rows.len(), model.bands_in_use(), "one part per band");
        for y in 0..oh {
            assert!(plane[y * stride..y * stride + ow] == expected[y * ow..(y + 1) * ow], "row {y} differs");
            if y + 1 < oh {
                assert!(plane[y * stride + ow..(y + 1) * stride].iter().all(|&v| v == 9.0), "row {y}'s padding was written");
            }
        }
    }
    assert_eq!(banded.bands_in_use(), 3);
    // a plane too small for the output is refused, not written past
    let mut small = vec![0.0f32; (oh - 1) * stride];
    assert!(banded.run_into(&input, w, h, &mut small, stride, |_: &[f32], _: &mut [f32]| ()).is_err());
}
