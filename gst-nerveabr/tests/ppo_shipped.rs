//! The shipped learned policy (models/abr/ppo.onnx) in the element's controller, on streams
//! unlike its training sessions: 4 rungs of its 6 rows, 1 s and 4 s segments, buffer caps of 4,
//! 30 and 60 s. On a link that carries every rung with room to spare and a full buffer it must
//! leave the lowest rung and reach the top one; on a link below the lowest rung it must stay
//! at the lowest rung. (A policy trained on 4 s chunks and 60 s buffers only once stayed on the
//! lowest rung of a 1 s, 4 s-cap live stream: the live DASH test caught it, in 30 s; this
//! catches it in milliseconds.)

use std::path::Path;
use std::time::Duration;

use gstnerveabr::abr::manifest::Rung;
use gstnerveabr::abr::{Config, Controller, Step, DEFAULT_TABLE};
use nerve_abr::energy::Network;
use nerve_abr::nerve::Preference;
use nerve_abr::quality::TableFile;

fn rungs_decided(segment_s: f64, cap_s: f64, bandwidth_bps: f64, preference: Preference) -> Vec<usize> {
    decided("ppo", segment_s, cap_s, bandwidth_bps, preference)
}

/// The rungs `policy` picks over 12 fragments on a steady link (its first pick included).
fn decided(policy: &str, segment_s: f64, cap_s: f64, bandwidth_bps: f64, preference: Preference) -> Vec<usize> {
    let file = TableFile::parse(DEFAULT_TABLE).expect("the shipped table");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/abr/ppo.onnx");
    let rungs: Vec<Rung> = [300_000u64, 750_000, 1_200_000, 1_850_000].iter().map(|&b| Rung { bandwidth: b, width: 0, height: 0 }).collect();
    let config = Config { policy: policy.into(), preference, battery: None, device_speed: 1.0, target_height: 0, network: Network::Lte, ppo_model: Some(model) };
    let mut c = Controller::new(config, &file, rungs, segment_s, None).expect("the shipped model loads");
    // a buffer that fills to the cap as fragments arrive faster than they play
    let mut buffer = 0.0f64;
    (0..12)
        .map(|_| {
            let choice = c.decide(Step { bandwidth_bps, buffer: Duration::from_secs_f64(buffer), buffer_cap: Duration::from_secs_f64(cap_s), enhance_available: true });
            let download = choice.bandwidth as f64 * segment_s / bandwidth_bps;
            buffer = (buffer - download).max(0.0) + segment_s;
            buffer = buffer.min(cap_s);
            choice.rung
        })
        .collect()
}

/// An open finding (2026-12-06): the shipped policy fails this. On an 8 Mbit/s link that never
/// varies it takes the top rung and then falls back to the lowest (with enhancement) after a few
/// fragments: at once with a 4 s cap, after 7 fragments with 1 s segments and a 30 s cap. The
/// planner it imitates takes the top rung in every case. Those states (a throughput history
/// without noise, a buffer cap near one chunk, a stream with fewer rungs than the table) are
/// rare or absent in training. Run it with `--ignored` when the policy is retrained.
#[test]
#[ignore = "open finding: the shipped ppo policy falls to the lowest rung on a steady fast link with small buffers or fewer rungs"]
fn the_shipped_policy_climbs_on_a_fast_link_whatever_the_segments_and_the_buffer() {
    for segment_s in [1.0, 4.0] {
        for cap_s in [4.0, 30.0, 60.0] {
            for preference in [Preference::Quality, Preference::BatterySaver] {
                let fast = rungs_decided(segment_s, cap_s, 8e6, preference);
                assert_eq!(fast.last(), Some(&3), "{segment_s} s segments, {cap_s} s cap, {preference:?}, 8 Mbit/s: {fast:?}");
                let slow = rungs_decided(segment_s, cap_s, 0.2e6, preference);
                assert!(slow[1..].iter().all(|&r| r == 0), "{segment_s} s segments, {cap_s} s cap, {preference:?}, 0.2 Mbit/s: {slow:?}");
            }
        }
    }
}


/// The planner the policy imitates, through the same harness: it climbs in every case, so the
/// harness itself is not what the ignored test above trips on.
#[test]
fn the_planner_climbs_on_the_same_streams() {
    for segment_s in [1.0, 4.0] {
        for cap_s in [4.0, 30.0, 60.0] {
            let fast = decided("nerve", segment_s, cap_s, 8e6, Preference::Quality);
            assert_eq!(fast.last(), Some(&3), "{segment_s} s segments, {cap_s} s cap: {fast:?}");
        }
    }
}
