//! Policy names -> configured policies for the BONES scenario (the chunk scenario's are
//! `nerve_abr::spec::chunk_policy`), and running a set of traces.

use std::path::Path;

use super::bones;
use super::bones_data::BonesData;
use super::chunk::{self, ChunkSettings};
use super::trace::Trace;
use super::TraceResult;
use nerve_abr::bba::Bba;
use nerve_abr::bola::Bola;
use nerve_abr::bones::Bones;
use nerve_abr::dynamic::Dynamic;
use nerve_abr::mpc::{FastMpc, RobustMpc};
use nerve_abr::nerve::Nerve;
use nerve_abr::rate::RateBased;
use nerve_abr::{Ladder, Policy, QualityTable};
// Policy construction lives in the library (the element builds its policy the same way); the
// simulator's names for it stay reachable here.
pub use nerve_abr::spec::{chunk_policy, EnhanceMode, NerveConfig, PolicySpec};

/// Build a policy for the BONES scenario (BONES' parameters for its baselines). Returns the
/// policy, its enhancement mode and whether downloads are monitored for abandonment.
pub fn bones_policy(spec: &PolicySpec, data: &BonesData, nerve: &NerveConfig) -> (Box<dyn Policy>, EnhanceMode, bool) {
    let mode = if spec.greedy_sr { EnhanceMode::Greedy } else { EnhanceMode::None };
    match spec.base.as_str() {
        "bb" => (Box::new(Bba::bones(60.0)), mode, false),
        "rb" => (Box::new(RateBased::new(0.9)), mode, false),
        // BONES' experiment script runs BOLA with `-m` (abandonment)
        "bola" => (Box::new(Bola::new(5.0, true)), mode, true),
        "mpc" => (Box::new(FastMpc::new()), mode, false),
        "robustmpc" => (Box::new(RobustMpc::new()), mode, false),
        "dynamic" => (Box::new(Dynamic::new(10.0, 0.9, 5.0, true)), mode, true),
        "bones" => (
            Box::new({
                let mut b = Bones::new(data.quality_table(), data.enhance_name.contains("imdn"));
                if quick_start(data) {
                    b.max_level = 2;
                }
                b
            }),
            EnhanceMode::Joint,
            false,
        ),
        _ => {
            let mut n = Nerve::new(data.quality_table(), nerve.params.clone());
            n.preference = nerve.preference;
            n.battery = nerve.battery;
            (Box::new(n), EnhanceMode::Joint, false)
        }
    }
}

/// BONES runs its content-aware IMDN setup with quick start: the model (310 kB) is fetched
/// during the session, so nothing is enhanced before it arrives.
pub fn quick_start(data: &BonesData) -> bool {
    data.enhance_name.contains("imdn_bbb")
}

/// Model size fetched under quick start, bits (BONES' `model_size`).
pub const QUICK_START_MODEL_BITS: f64 = 310.0 * 1000.0 * 8.0;

/// Run one policy over traces in the BONES scenario.
pub fn run_bones(spec: &PolicySpec, data: &BonesData, traces: &[Trace], nerve: &NerveConfig, s: &bones::Settings, tick: &dyn Fn()) -> Vec<TraceResult> {
    traces
        .iter()
        .map(|t| {
            let (mut p, mode, monitor) = bones_policy(spec, data, nerve);
            let model_bits = if quick_start(data) { QUICK_START_MODEL_BITS } else { 0.0 };
            let s = bones::Settings { model_bits, ..*s };
            let r = bones::run(data, t, p.as_mut(), mode, monitor, &s);
            tick();
            r
        })
        .collect()
}

/// Run one policy over traces in the chunk scenario (a fresh policy per trace).
pub fn run_chunk(spec: &PolicySpec, ladder: &Ladder, table: &QualityTable, traces: &[Trace], nerve: &NerveConfig, s: &ChunkSettings, tick: &dyn Fn()) -> Result<Vec<TraceResult>, String> {
    traces
        .iter()
        .map(|t| {
            let (mut p, mode) = chunk_policy(spec, table, nerve)?;
            let r = chunk::run(ladder, table, t, p.as_mut(), mode, s);
            tick();
            Ok(r)
        })
        .collect()
}

/// The shared data directory, relative to this crate (`../shared/data` from the repo root).
pub fn default_data_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}
