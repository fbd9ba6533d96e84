//! What one decision costs inside the element: `Controller::decide` (the policy, its features,
//! and for `ppo` the network through ONNX Runtime on nerve-engine), for `nerve` and the shipped
//! `ppo` model (models/abr/ppo.onnx), on the shipped table's 6-rung ladder and on a 4-rung stream
//! (where `ppo` decides on the rows the stream offers), fed a real Norway 3G trace's throughputs.
//! Prints median, p90 and p99 wall-clock microseconds per decision; asserts nothing.
//!
//! `cargo bench -p gst-nerveabr --bench decide_cost`

use std::path::Path;
use std::time::{Duration, Instant};

use gstnerveabr::abr::manifest::Rung;
use gstnerveabr::abr::{Config, Controller, Step, DEFAULT_TABLE};
use nerve_abr::energy::Network;
use nerve_abr::nerve::Preference;
use nerve_abr::quality::TableFile;

const DECISIONS: usize = 2000;

fn throughputs() -> Vec<f64> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/traces/3g_hsdpa_norway/pensieve_test_cooked_3gp/norway_tram_52");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let v: Vec<f64> = text.lines().filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()).map(|mbps| mbps * 1e6).filter(|b| *b > 0.0).collect();
    if v.is_empty() { vec![1.5e6, 0.6e6, 3e6, 0.9e6] } else { v }
}

fn main() {
    let file = TableFile::parse(DEFAULT_TABLE).expect("the shipped table");
    let all: Vec<Rung> = file.rungs.iter().map(|r| Rung { bandwidth: (r.bitrate_kbps * 1000.0) as u64, width: 0, height: 0 }).collect();
    let four: Vec<Rung> = all.iter().take(4).cloned().collect();
    let tput = throughputs();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/abr/ppo.onnx");
    println!("time per decision in nerveabr's controller, {DECISIONS} decisions, wall clock, one thread");
    println!("{:<8} {:>6} {:>10} {:>10} {:>10}", "policy", "rungs", "median us", "p90 us", "p99 us");
    for policy in ["nerve", "ppo"] {
        for rungs in [&all, &four] {
            let config = Config { policy: policy.into(), preference: Preference::Balanced, battery: None, device_speed: 1.0, target_height: 0, network: Network::Lte, ppo_model: Some(model.clone()), ppo_shield: true };
            let mut c = match Controller::new(config, &file, rungs.clone(), file.chunk_s, None) {
                Ok(c) => c,
                Err(e) => {
                    println!("{policy:<8} {:>6} cannot build: {e}", rungs.len());
                    continue;
                }
            };
            let mut took = Vec::with_capacity(DECISIONS);
            let mut buffer = 10.0f64;
            for k in 0..DECISIONS {
                let bw = tput[k % tput.len()];
                let t0 = Instant::now();
                let choice = c.decide(Step { bandwidth_bps: bw, buffer: Duration::from_secs_f64(buffer), buffer_cap: Duration::from_secs(30), enhance_available: true });
                took.push(t0.elapsed().as_secs_f64() * 1e6);
                // a rough buffer: the chunk's download at this throughput against its 4 s
                buffer = (buffer + file.chunk_s - choice.bandwidth as f64 * file.chunk_s / bw).clamp(0.0, 30.0);
            }
            took.sort_by(f64::total_cmp);
            let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize];
            println!("{policy:<8} {:>6} {:>10.1} {:>10.1} {:>10.1}", rungs.len(), at(0.5), at(0.9), at(0.99));
        }
    }
}
