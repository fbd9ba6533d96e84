//! `policy=ppo`: the element's decisions equal the simulator's on the same trace.
//!
//! The simulator (`nerveabr-sim`'s chunk scenario) plays a real 3G trace with the learned policy
//! (a tiny seeded actor, nerve-abr/tests/fixtures/tiny_actor.onnx, so the test does not depend on
//! training). Every decision it makes is then replayed through the element's `Controller`, fed
//! what the element would get from the demuxer for that fragment (the measured throughput of the
//! download just finished, the buffer level): the element must choose the same (rung, level)
//! every time. Both run the same ONNX file on nerve-engine with nerve-abr's feature function, so a
//! difference means the element sees the stream differently from the simulator the policy was
//! trained in.
//!
//! The shield (`ppo-shield`, on by default) is off here: it is the `nerve` planner, which plans
//! on what each side estimates of the link (the element: the demuxer's last measurement and a
//! fixed request latency; the simulator: the harmonic mean and the trace's latency), so the two
//! cap the same actor at different rungs by design. The shield's rule is tested in nerve-abr
//! (`learned::tests::the_shield_caps_the_actors_rung_where_the_planner_sees_a_stall`).
//!
//! `cargo test --release -p gst-nerveabr --test ppo` (needs ../shared/data and ONNX Runtime,
//! which scripts/setup.sh links into .nerve/lib).

use std::path::{Path, PathBuf};
use std::time::Duration;

use gstnerveabr::abr::manifest::Rung;
use gstnerveabr::abr::{Config, Controller, Step, DEFAULT_TABLE};
use nerve_abr::energy::{EnergyModel, Network};
use nerve_abr::nerve::{NerveParams, Preference};
use nerve_abr::quality::TableFile;
use nerve_abr::spec::{chunk_policy, NerveConfig};
use nerve_abr::{Decision, Ladder, Observation, Policy, QualityTable};
use nerveabr_sim::chunk::{self, ChunkSettings};
use nerveabr_sim::trace::read_dir;

fn actor() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../nerve-abr/tests/fixtures/tiny_actor.onnx")
}

/// The simulator's policy, with what each of its decisions saw and chose.
struct Recorder {
    inner: Box<dyn Policy>,
    log: Vec<(f64, Duration, Decision)>,
}

impl Policy for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn decide(&mut self, obs: &Observation<'_>) -> Decision {
        let d = self.inner.decide(obs);
        self.log.push((obs.recent_bps.last().copied().unwrap_or(0.0), obs.buffer, d));
        d
    }
}

#[test]
fn element_decides_as_the_simulator_with_the_same_actor() {
    let file = TableFile::parse(DEFAULT_TABLE).expect("the shipped table");
    let table = QualityTable::from_file(&file, 1.0);
    let ladder = Ladder { bitrates_bps: file.rungs.iter().map(|r| r.bitrate_kbps * 1000.0).collect(), chunk: Duration::from_secs_f64(file.chunk_s) };
    let rungs: Vec<Rung> = file.rungs.iter().map(|r| Rung { bandwidth: (r.bitrate_kbps * 1000.0) as u64, width: 0, height: 0 }).collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/traces/3g_hsdpa_norway/pensieve_test_cooked_3gp");
    let (traces, _) = read_dir(&dir).expect("the shared Norway 3G test traces");
    let settings = ChunkSettings { energy: EnergyModel::new(Network::Hspa3g), ..ChunkSettings::default() };
    let mut distinct = std::collections::BTreeSet::new();
    let mut compared = 0;
    for (pref, battery) in [(Preference::Quality, None), (Preference::BatterySaver, Some(0.4))] {
        for trace in traces.iter().take(4) {
            let nerve = NerveConfig { params: NerveParams::chunk(), preference: pref, battery, ppo_model: Some(actor()), ppo_shield: false };
            let (inner, mode) = chunk_policy(&"ppo".parse().unwrap(), &table, &nerve).expect("the tiny actor loads");
            let mut sim = Recorder { inner, log: Vec::new() };
            let result = chunk::run(&ladder, &table, trace, &mut sim, mode, &settings);
            assert_eq!(sim.log.len(), settings.chunks - 1, "one decision per chunk after the first");

            let config = Config { policy: "ppo".into(), preference: pref, battery, device_speed: 1.0, target_height: 0, network: Network::Hspa3g, ppo_model: Some(actor()), ppo_shield: false };
            let mut element = Controller::new(config, &file, rungs.clone(), file.chunk_s, Some(settings.chunks)).expect("the element builds ppo");
            // the first fragment, before any measurement: fixed, as the simulator's first chunk is
            let cap = Duration::from_secs_f64(settings.buffer_cap_s);
            element.decide(Step { bandwidth_bps: 0.0, buffer: Duration::ZERO, buffer_cap: cap, enhance_available: true });
            for (k, &(bw, buffer, d)) in sim.log.iter().enumerate() {
                let c = element.decide(Step { bandwidth_bps: bw, buffer, buffer_cap: cap, enhance_available: true });
                assert_eq!((c.rung, c.level), (d.rung, d.level), "{} chunk {}: element {:?}, simulator {d:?}", trace.name, k + 1, (c.rung, c.level));
                distinct.insert((d.rung, d.level));
                compared += 1;
            }
            eprintln!("{} {pref:?}: qoe_quality {:.2}, rebuffer {:.2} s, {} enhanced", trace.name, result.qoe_quality, result.rebuffer_s, result.enhanced_chunks);
        }
    }
    eprintln!("{compared} decisions compared, {} distinct (rung, level)", distinct.len());
    assert!(distinct.len() >= 3, "the actor must vary its choice for the comparison to mean something: {distinct:?}");
}
