//! End-to-end tests of `nerveabr-sim` on a few real traces from `../shared/data` (kept to a few
//! traces so they run in seconds).

use std::path::{Path, PathBuf};
use std::process::Command;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nerveabr-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
    d
}

fn sim(args: &[&str]) -> (String, serde_json::Value) {
    let dir = tmp(&args.join("_").replace(['/', ',', '+'], "_").chars().take(40).collect::<String>());
    let json = dir.join("out.json");
    let out = Command::new(env!("CARGO_BIN_EXE_nerveabr-sim"))
        .args(args)
        .arg("--quiet")
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("{e}"));
    (stdout, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}")))
}

#[test]
fn chunk_scenario_writes_the_interface_fields() {
    let traces = data().join("traces/broadband_fcc/pensieve_test_traces_fcc");
    let (stdout, v) = sim(&["--traces", traces.to_str().unwrap_or_default(), "--policies", "bb,rb,bola,robustmpc,nerve", "--limit", "4"]);
    for p in ["bb", "rb", "bola", "robustmpc", "nerve"] {
        let s = &v["policies"][p];
        for k in ["qoe_quality", "qoe_lin", "rebuffer_s", "bits_mb", "switches"] {
            assert!(s[k].is_number(), "{p}.{k} missing: {s}");
        }
        assert_eq!(s["per_trace"].as_array().map(Vec::len), Some(4));
        assert!(stdout.contains(p));
    }
    // nerve enhances, the baselines do not
    assert!(v["policies"]["nerve"]["enhanced_chunks"].as_f64().unwrap_or(0.0) > 0.0);
    assert_eq!(v["policies"]["bb"]["enhanced_chunks"].as_f64(), Some(0.0));
}

#[test]
fn bones_scenario_runs_on_a_few_traces_and_nerve_beats_greedy_sr() {
    let traces = data().join("traces/3g_hsdpa_norway/pensieve_test_cooked_3gp");
    let (_, v) = sim(&[
        "--scenario",
        "bones",
        "--traces",
        traces.to_str().unwrap_or_default(),
        "--policies",
        "bola,mpc,dynamic,bba,bola+sr,nerve",
        "--limit",
        "5",
    ]);
    let q = |p: &str| v["policies"][p]["qoe_bones"].as_f64().unwrap_or(f64::NAN);
    for p in ["bola", "mpc", "dynamic", "bba", "nerve"] {
        assert!(q(p).is_finite(), "{p}");
        assert!(v["policies"][p]["freeze_s"].is_number());
    }
    // Greedy SR after BOLA keeps BOLA's rungs and only adds enhancement: never lower.
    assert!(q("bola+sr") >= q("bola"), "{} vs {}", q("bola+sr"), q("bola"));
    // Choosing rung and enhancement together should do better still.
    assert!(q("nerve") > q("bola+sr"), "{} vs {}", q("nerve"), q("bola+sr"));
}

#[test]
fn mixed_formats_in_one_directory_are_detected() {
    let dir = tmp("formats");
    let two: String = (0..200).map(|t| format!("{t}.0 {}\n", 1.0 + (t % 3) as f64)).collect();
    std::fs::write(dir.join("two_column.log"), two).unwrap_or_else(|e| panic!("{e}"));
    let sabre: Vec<String> = (0..200).map(|i| format!(r#"{{"duration_ms": 1000, "bandwidth_kbps": {}, "latency_ms": 20}}"#, 2000 + 100 * (i % 5))).collect();
    std::fs::write(dir.join("sabre.json"), format!("[{}]", sabre.join(","))).unwrap_or_else(|e| panic!("{e}"));
    // mahimahi: ~2.4 Mbit/s = one 1500-byte packet every 5 ms
    let mm: String = (0..200_000).step_by(5).map(|t| format!("{t}\n")).collect();
    std::fs::write(dir.join("trace.mahi"), mm).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("README.md"), "# not a trace\nsome words here\n").unwrap_or_else(|e| panic!("{e}"));
    let (_, v) = sim(&["--traces", dir.to_str().unwrap_or_default(), "--policies", "rb"]);
    let per = v["policies"]["rb"]["per_trace"].as_array().cloned().unwrap_or_default();
    assert_eq!(per.len(), 3, "{per:?}");
    // every trace is around 2-2.4 Mbit/s, so RB settles on 1850 kbit/s: QoE_lin between 1 and 2.4
    for t in per {
        let q = t["qoe_lin"].as_f64().unwrap_or(f64::NAN);
        assert!(q > 1.0 && q < 2.4, "{t}");
    }
}
