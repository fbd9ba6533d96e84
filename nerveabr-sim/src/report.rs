//! Aggregation, the JSON written by `--json` and the human summary table.

use std::collections::BTreeMap;

use serde::Serialize;

use super::TraceResult;

/// One policy over one trace set.
#[derive(Clone, Debug, Serialize)]
pub struct PolicySummary {
    pub traces: usize,
    pub qoe_quality: f64,
    pub qoe_lin: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qoe_bones: Option<f64>,
    /// Mean stall per trace, s (BONES' `freeze time`).
    pub rebuffer_s: f64,
    pub freeze_s: f64,
    /// Stall time over session time.
    pub rebuffer_ratio: f64,
    pub mean_quality: f64,
    pub bits_mb: f64,
    /// Chunk scenario: the fewest megabits per session any policy could download and still
    /// show this mean quality ([`super::chunk::min_bits_mb`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bits_floor_mb: Option<f64>,
    pub switches: f64,
    pub enhanced_chunks: f64,
    pub energy_j: f64,
    pub battery_pct: f64,
    pub per_trace: Vec<TraceResult>,
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (mut s, mut n) = (0.0, 0usize);
    for x in xs {
        s += x;
        n += 1;
    }
    if n == 0 { 0.0 } else { s / n as f64 }
}

impl PolicySummary {
    pub fn from_results(per_trace: Vec<TraceResult>) -> Self {
        let r = &per_trace;
        let bones = r.iter().all(|t| t.qoe_bones.is_some()) && !r.is_empty();
        let stall: f64 = r.iter().map(|t| t.rebuffer_s).sum();
        let wall: f64 = r.iter().map(|t| t.play_s).sum();
        Self {
            traces: r.len(),
            qoe_quality: mean(r.iter().map(|t| t.qoe_quality)),
            qoe_lin: mean(r.iter().map(|t| t.qoe_lin)),
            qoe_bones: bones.then(|| mean(r.iter().filter_map(|t| t.qoe_bones))),
            rebuffer_s: mean(r.iter().map(|t| t.rebuffer_s)),
            freeze_s: mean(r.iter().map(|t| t.rebuffer_s)),
            rebuffer_ratio: if wall > 0.0 { stall / wall } else { 0.0 },
            mean_quality: mean(r.iter().map(|t| t.mean_quality)),
            bits_mb: mean(r.iter().map(|t| t.bits_mb)),
            bits_floor_mb: None,
            switches: mean(r.iter().map(|t| t.switches as f64)),
            enhanced_chunks: mean(r.iter().map(|t| t.enhanced_chunks as f64)),
            energy_j: mean(r.iter().map(|t| t.energy_j)),
            battery_pct: mean(r.iter().map(|t| t.battery_pct)),
            per_trace,
        }
    }
}

/// The whole run: `sets.<set>.policies.<name>`, plus `policies.<name>` over all traces.
#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub settings: BTreeMap<String, String>,
    pub policies: BTreeMap<String, PolicySummary>,
    /// Chunk scenario: the highest `qoe_quality` any policy can score on any trace
    /// ([`super::chunk::qoe_quality_bound`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qoe_quality_bound: Option<f64>,
    pub sets: BTreeMap<String, BTreeMap<String, PolicySummary>>,
}

/// The human summary: one block per trace set, one row per policy.
pub fn table(report: &Report, order: &[String]) -> String {
    let mut out = String::new();
    let bones = report.scenario == "bones";
    for (set, pols) in &report.sets {
        let n = pols.values().next().map_or(0, |p| p.traces);
        out.push_str(&format!("\n{set} ({n} traces)\n"));
        out.push_str(&format!(
            "{:<18} {:>9} {:>8} {:>9} {:>8} {:>9} {:>9} {:>8} {:>8}\n",
            "policy",
            if bones { "QoE_bones" } else { "QoE_vmaf" },
            "QoE_lin",
            "rebuf_s",
            "ratio%",
            "VMAF",
            "Mbit",
            "switch",
            "enh"
        ));
        for name in order {
            let Some(p) = pols.get(name) else { continue };
            out.push_str(&format!(
                "{:<18} {:>9.2} {:>8.3} {:>9.2} {:>8.2} {:>9.2} {:>9.1} {:>8.1} {:>8.1}\n",
                name,
                p.qoe_bones.unwrap_or(p.qoe_quality),
                p.qoe_lin,
                p.rebuffer_s,
                100.0 * p.rebuffer_ratio,
                p.mean_quality,
                p.bits_mb,
                p.switches,
                p.enhanced_chunks
            ));
        }
        if let Some(b) = report.qoe_quality_bound {
            out.push_str(&format!("{:<18} {:>9.2}   (no policy can score higher on any trace)\n", "upper bound", b));
        }
    }
    out
}
