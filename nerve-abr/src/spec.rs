//! Policies built from their names, as the simulator's command line and the element's `policy`
//! property give them: one place, so the element and `nerveabr-sim` cannot build a policy two
//! different ways.

use crate::bba::Bba;
use crate::bola::Bola;
use crate::bones::Bones;
use crate::dynamic::Dynamic;
use crate::mpc::{FastMpc, RobustMpc};
use crate::nerve::{Nerve, NerveParams, Preference};
use crate::rate::RateBased;
use crate::{Policy, QualityTable};

/// How a controller uses the enhancement timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnhanceMode {
    /// Bitrate only, nothing enhanced.
    None,
    /// BONES' "impatient" greedy SR: after the bitrate decision, each downloaded segment gets
    /// the best level that runs faster than real time, if it can finish before playback.
    Greedy,
    /// The policy's own `Decision::level`, pushed when the download finishes if it can still
    /// finish before playback (BONES' rule for its own controller).
    Joint,
}

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
            "ppo" => "ppo",
            other => return Err(format!("unknown policy {other:?}; known: {}", crate::POLICY_NAMES.join(", "))),
        };
        if greedy && matches!(base, "bones" | "nerve" | "ppo") {
            return Err(format!("{base} chooses its own enhancement; drop +sr"));
        }
        Ok(Self { name: s.to_string(), base: base.to_string(), greedy_sr: greedy })
    }
}

/// Settings of the `nerve` and `ppo` policies that come from the command line (the element's
/// properties).
#[derive(Clone, Debug)]
pub struct NerveConfig {
    pub params: NerveParams,
    pub preference: Preference,
    pub battery: Option<f64>,
    /// The `ppo` policy's actor (ONNX); `None`: [`crate::learned::default_model`].
    pub ppo_model: Option<std::path::PathBuf>,
    /// Shield the `ppo` policy with the `nerve` planner's stall constraint (built with
    /// `params`; [`crate::learned::Ppo`]). On by default.
    pub ppo_shield: bool,
}

impl Default for NerveConfig {
    fn default() -> Self {
        Self { params: NerveParams::default(), preference: Preference::default(), battery: None, ppo_model: None, ppo_shield: true }
    }
}

/// Build a policy for the chunk (Pensieve) scenario (Pensieve's parameters for its baselines).
/// Only `ppo` can fail (its model must load and fit the table's rungs and levels).
pub fn chunk_policy(spec: &PolicySpec, table: &QualityTable, nerve: &NerveConfig) -> Result<(Box<dyn Policy>, EnhanceMode), String> {
    let mode = if spec.greedy_sr { EnhanceMode::Greedy } else { EnhanceMode::None };
    Ok(match spec.base.as_str() {
        "bb" => (Box::new(Bba::pensieve()), mode),
        "rb" => (Box::new(RateBased::new(1.0)), mode),
        "bola" => (Box::new(Bola::new(5.0, false)), mode),
        "mpc" => (Box::new(FastMpc::new()), mode),
        "robustmpc" => (Box::new(RobustMpc::new()), mode),
        "dynamic" => (Box::new(Dynamic::new(10.0, 0.9, 5.0, false)), mode),
        "bones" => (Box::new(Bones::new(table.clone(), false)), EnhanceMode::Joint),
        "ppo" => (ppo_policy(table, None, nerve)?, EnhanceMode::Joint),
        _ => (Box::new(planner(table, nerve)), EnhanceMode::Joint),
    })
}

/// The learned policy on `table` (every row the model was trained on), at the preference's
/// weight; `rows`: the stream's rungs among them (`None`: the rungs are the table's rows).
#[cfg(feature = "onnx")]
fn ppo_policy(table: &QualityTable, rows: Option<(crate::learned::Rows, &QualityTable)>, nerve: &NerveConfig) -> Result<Box<dyn Policy>, String> {
    use crate::learned::{default_model, training_table, Features, OnnxActor, Ppo};
    let path = nerve.ppo_model.clone().or_else(default_model).ok_or("policy ppo: no model (give its path, or put one at models/abr/ppo.onnx)")?;
    // The table the policy learnt, when it ships one, is what its features read; `table` shields.
    let mut features = Features::new(table.clone(), table.rungs());
    if let Some(trained) = training_table(&path).map_err(|e| format!("policy ppo: {e}"))? {
        features = features.trained_on(&trained).map_err(|e| format!("policy ppo: its training table has {e}"))?;
    }
    features.preference = nerve.preference.weight();
    features.battery = nerve.battery;
    let actor = Box::new(OnnxActor::load(&path, &features).map_err(|e| format!("policy ppo: {e}"))?);
    // the shield plans on the stream's own rungs (`stream_table`), as the `nerve` policy would
    let (ppo, shield_table) = match rows {
        Some((rows, stream_table)) => (Ppo::on_rows(features, actor, rows), stream_table),
        None => (Ppo::new(features, actor), table),
    };
    Ok(Box::new(if nerve.ppo_shield { ppo.with_shield(planner(shield_table, nerve)) } else { ppo }))
}

/// The `nerve` planner on `table` with the configured parameters, preference and battery.
pub fn planner(table: &QualityTable, nerve: &NerveConfig) -> Nerve {
    let mut n = Nerve::new(table.clone(), nerve.params.clone());
    n.preference = nerve.preference;
    n.battery = nerve.battery;
    n
}

#[cfg(not(feature = "onnx"))]
fn ppo_policy(_: &QualityTable, _: Option<(crate::learned::Rows, &QualityTable)>, _: &NerveConfig) -> Result<Box<dyn Policy>, String> {
    Err("policy ppo: nerve-abr was built without its `onnx` feature".into())
}

/// A policy for a stream (the element's case): its rungs are `rows` of `table` (the quality
/// table's every row), and `stream_table` holds the row of each rung. The learned policy decides
/// on the whole table (its input and actions are the rows it was trained on, so a model trained
/// on a 6-row ladder plays a 4-rung stream, [`crate::learned::Rows`]); every other policy on the
/// stream's own rows, as [`chunk_policy`] builds it; the learned policy's shield too.
pub fn stream_policy(
    spec: &PolicySpec,
    table: &QualityTable,
    rows: crate::learned::Rows,
    stream_table: &QualityTable,
    nerve: &NerveConfig,
) -> Result<(Box<dyn Policy>, EnhanceMode), String> {
    if spec.base == "ppo" {
        Ok((ppo_policy(table, Some((rows, stream_table)), nerve)?, EnhanceMode::Joint))
    } else {
        chunk_policy(spec, stream_table, nerve)
    }
}

