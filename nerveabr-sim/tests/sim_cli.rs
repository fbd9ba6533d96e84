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

/// A tiny made-up trace root: three families, one with train/test splits (merged into one
/// family), one of SABRE JSON files, one of loose two-column files, plus a non-trace file.
fn tiny_families(name: &str) -> PathBuf {
    let root = tmp(name);
    let _ = std::fs::remove_dir_all(&root);
    let write = |p: PathBuf, text: String| {
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(p, text).unwrap_or_else(|e| panic!("{e}"));
    };
    // slow and bursty: 0.4-2.2 Mbit/s, with a deep fade in the second trace
    for (split, k) in [("train", 0), ("train", 1), ("test", 2)] {
        let text: String = (0..300)
            .map(|t| {
                let fade = k == 1 && (120..170).contains(&t);
                let mbps = if fade { 0.15 } else { 0.4 + 0.6 * ((t / 7 + k) % 4) as f64 };
                format!("{t}.0 {mbps}\n")
            })
            .collect();
        write(root.join(format!("slow/{split}/trace_{k}")), text);
    }
    // fast: SABRE JSON at 15-25 Mbit/s
    for k in 0..2 {
        let slots: Vec<String> = (0..300).map(|i| format!(r#"{{"duration_ms": 1000, "bandwidth_kbps": {}, "latency_ms": 20}}"#, 15000 + 2500 * ((i + k) % 5))).collect();
        write(root.join(format!("fast/report_{k}.json")), format!("[{}]", slots.join(",")));
    }
    // mid: loose files around 3 Mbit/s
    for k in 0..2 {
        let text: String = (0..300).map(|t| format!("{t}.0 {}\n", 2.5 + 0.5 * ((t + k) % 3) as f64)).collect();
        write(root.join(format!("mid/trace_{k}.txt")), text);
    }
    write(root.join("mid/LICENSE.txt"), "not a trace\n".into());
    write(root.join("README.md"), "# traces\n".into());
    root
}

fn lofo(root: &Path, jobs: &str, out: &Path) -> (String, serde_json::Value) {
    let json = out.join(format!("lofo_{jobs}.json"));
    let o = Command::new(env!("CARGO_BIN_EXE_nerveabr-sim"))
        .args(["--leave-one-family-out", root.to_str().unwrap_or_default(), "--lofo-grid", "safety=0.55,0.7;floor=4,8", "--jobs", jobs, "--quiet"])
        .arg("--json")
        .arg(&json)
        .arg("--plots")
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("{e}"));
    (stdout, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}")))
}

#[test]
fn leave_one_family_out_chooses_on_the_other_families_only() {
    let root = tiny_families("lofo-root");
    let out = tmp("lofo-out");
    let (stdout, v) = lofo(&root, "2", &out);
    let names: Vec<&str> = v["families"].as_array().map(|a| a.iter().filter_map(|f| f["name"].as_str()).collect()).unwrap_or_default();
    assert_eq!(names, ["fast", "mid", "slow"], "train and test of `slow` are one family");
    assert_eq!(v["family_traces"], serde_json::json!([2, 2, 3]));
    let folds = v["folds"].as_array().cloned().unwrap_or_default();
    assert_eq!(folds.len(), 3);
    let grid = v["grid_scores"].as_array().cloned().unwrap_or_default();
    assert_eq!(grid.len(), 4, "2 x 2 cells");
    let least = v["tune_least_stall_s"].as_array().cloned().unwrap_or_default();
    for (held, fold) in folds.iter().enumerate() {
        let fam = names[held];
        assert_eq!(fold["family"], fam);
        assert!(stdout.contains(&format!("left out: {fam}")), "{stdout}");
        let training: Vec<&str> = fold["training_families"].as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default();
        assert!(!training.contains(&fam) && training.len() == 2, "{training:?}");
        // The selection table is made of the other families' scores only: each cell's mean
        // QoE and worst stall excess, recomputed here without the left-out family.
        let sel = fold["selection"].as_array().cloned().unwrap_or_default();
        assert_eq!(sel.len(), 4);
        let others: Vec<usize> = (0..3).filter(|&f| f != held).collect();
        let mut best: Option<(bool, f64, f64, usize)> = None;
        for (c, row) in sel.iter().enumerate() {
            let q = |f: usize| grid[c][f]["qoe_quality"].as_f64().unwrap_or(f64::NAN);
            let stall = |f: usize| grid[c][f]["rebuffer_s"].as_f64().unwrap_or(f64::NAN) - least[f].as_f64().unwrap_or(f64::NAN) - 0.1;
            let mean = others.iter().map(|&f| q(f)).sum::<f64>() / 2.0;
            let worst = others.iter().map(|&f| stall(f)).fold(f64::NEG_INFINITY, f64::max);
            assert!((row["mean_qoe"].as_f64().unwrap_or(f64::NAN) - mean).abs() < 1e-9, "fold {fam} cell {c}: {row}");
            assert!((row["worst_excess_s"].as_f64().unwrap_or(f64::NAN) - worst).abs() < 1e-9, "fold {fam} cell {c}: {row}");
            let feasible = worst <= 1e-12;
            let better = match best {
                None => true,
                Some((bf, bq, bw, _)) => (feasible && !bf) || (feasible == bf && if feasible { mean > bq } else { worst < bw || (worst == bw && mean > bq) }),
            };
            if better {
                best = Some((feasible, mean, worst, c));
            }
        }
        assert_eq!(fold["chosen_cell"].as_u64(), best.map(|b| b.3 as u64), "fold {fam}");
        // every policy reported, nerve last, with the fields of the table
        let pols = fold["policies"].as_array().cloned().unwrap_or_default();
        let pnames: Vec<&str> = pols.iter().filter_map(|p| p[0].as_str()).collect();
        for p in ["bb", "rb", "bola", "robustmpc", "dynamic", "bones", "bola+sr", "robustmpc+sr", "nerve"] {
            assert!(pnames.contains(&p), "{p} missing in {pnames:?}");
        }
        assert_eq!(pnames.last(), Some(&"nerve"));
        for p in &pols {
            for k in ["qoe_quality", "rebuffer_s", "mean_quality", "bits_mb"] {
                assert!(p[1][k].is_number(), "{fam} {p}: {k}");
            }
        }
        for k in ["quality_met", "stall_met", "enhancement_helps"] {
            assert!(fold["targets"][k].is_boolean(), "{fam}: {k}");
        }
    }
    // the fast family cannot use enhancement (the top rung is the best picture), the slow one can
    assert_eq!(folds[0]["targets"]["enhancement_helps"], false);
    assert_eq!(folds[2]["targets"]["enhancement_helps"], true);
    assert!(out.join("leave_one_family_out.png").is_file());
    // deterministic whatever the number of threads
    let (_, one) = lofo(&root, "1", &out);
    assert_eq!(one, v);
}

/// `--policies ppo` runs the learned policy's ONNX actor (a tiny seeded one: nerve-abr's test
/// fixture), and a model that does not fit the table's ladder is refused with a clear error.
#[test]
fn ppo_runs_its_onnx_actor_and_a_model_for_another_ladder_is_refused() {
    let traces = data().join("traces/3g_hsdpa_norway/pensieve_test_cooked_3gp");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nerve-abr/tests/fixtures");
    let actor = fixtures.join("tiny_actor.onnx");
    let (_, v) = sim(&["--traces", traces.to_str().unwrap_or_default(), "--policies", "bb,ppo", "--ppo-model", actor.to_str().unwrap_or_default(), "--limit", "3"]);
    let s = &v["policies"]["ppo"];
    assert_eq!(s["per_trace"].as_array().map(Vec::len), Some(3), "{s}");
    assert!(s["qoe_quality"].is_number() && s["energy_j"].as_f64().unwrap_or(0.0) > 0.0, "{s}");
    assert_ne!(s["bits_mb"], v["policies"]["bb"]["bits_mb"], "the actor's choices are its own");

    let other = fixtures.join("tiny_actor_3rungs.onnx");
    let out = Command::new(env!("CARGO_BIN_EXE_nerveabr-sim"))
        .args(["--traces", traces.to_str().unwrap_or_default(), "--policies", "ppo", "--ppo-model", other.to_str().unwrap_or_default(), "--limit", "1", "--quiet"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("37 features") && err.contains("6 rungs x 2 levels"), "{err}");
}
