//! Policy names -> configured policies for each scenario, and running a set of traces.

use std::path::Path;

use super::bones::{self, EnhanceMode};
use super::bones_data::BonesData;
use super::chunk::{self, ChunkSettings};
use super::trace::Trace;
use super::TraceResult;
use crate::policy::bba::Bba;
use crate::policy::bola::Bola;
use crate::policy::bones::Bones;
use crate::policy::dynamic::Dynamic;
use crate::policy::mpc::{FastMpc, RobustMpc};
use crate::policy::nerve::{Nerve, NerveParams, Preference};
use crate::policy::rate::RateBased;
use crate::policy::{Ladder, Policy, QualityTable};

/// A policy as named on the command line: `bola`, `bola+sr` (greedy SR after it), `nerve`, ...
#[derive(Clone, Debug, PartialEq)]
pub struct PolicySpec {
    pub name: String,
    pub base: String,
    pub greedy_sr: bool,
}

impl std::str::FromStr for PolicySpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (base, greedy) = match s.strip_suffix("+sr") {
            Some(b) => (b, true),
            None => (s, false),
        };
        let base = match base {
            "bb" | "bba" | "buffer" => "bb",
            "rb" | "rate" | "throughput" | "tput" => "rb",
            "bola" => "bola",
            "robustmpc" => "robustmpc",
            "mpc" | "fastmpc" => "mpc",
            "dynamic" | "bola-e" => "dynamic",
            "bones" => "bones",
            "nerve" => "nerve",
            other => return Err(format!("unknown policy {other:?}; known: {}", crate::policy::POLICY_NAMES.join(", "))),
        };
        if greedy && matches!(base, "bones" | "nerve") {
            return Err(format!("{base} chooses its own enhancement; drop +sr"));
        }
        Ok(Self { name: s.to_string(), base: base.to_string(), greedy_sr: greedy })
    }
}

/// Settings of the `nerve` policy that come from the command line.
#[derive(Clone, Debug, Default)]
pub struct NerveConfig {
    pub params: NerveParams,
    pub preference: Preference,
    pub battery: Option<f64>,
}

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

/// Build a policy for the chunk (Pensieve) scenario (Pensieve's parameters for its baselines).
pub fn chunk_policy(spec: &PolicySpec, table: &QualityTable, nerve: &NerveConfig) -> (Box<dyn Policy>, EnhanceMode) {
    let mode = if spec.greedy_sr { EnhanceMode::Greedy } else { EnhanceMode::None };
    match spec.base.as_str() {
        "bb" => (Box::new(Bba::pensieve()), mode),
        "rb" => (Box::new(RateBased::new(1.0)), mode),
        "bola" => (Box::new(Bola::new(5.0, false)), mode),
        "mpc" => (Box::new(FastMpc::new()), mode),
        "robustmpc" => (Box::new(RobustMpc::new()), mode),
        "dynamic" => (Box::new(Dynamic::new(10.0, 0.9, 5.0, false)), mode),
        "bones" => (Box::new(Bones::new(table.clone(), false)), EnhanceMode::Joint),
        _ => {
            let mut n = Nerve::new(table.clone(), nerve.params.clone());
            n.preference = nerve.preference;
            n.battery = nerve.battery;
            (Box::new(n), EnhanceMode::Joint)
        }
    }
}

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

/// Run one policy over traces in the chunk scenario.
pub fn run_chunk(spec: &PolicySpec, ladder: &Ladder, table: &QualityTable, traces: &[Trace], nerve: &NerveConfig, s: &ChunkSettings, tick: &dyn Fn()) -> Vec<TraceResult> {
    traces
        .iter()
        .map(|t| {
            let (mut p, mode) = chunk_policy(spec, table, nerve);
            let r = chunk::run(ladder, table, t, p.as_mut(), mode, s);
            tick();
            r
        })
        .collect()
}

/// The shared data directory, relative to this crate (`../shared/data` from the repo root).
pub fn default_data_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}
