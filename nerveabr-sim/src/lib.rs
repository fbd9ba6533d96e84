//! nerveabr-sim: the trace-driven simulators of the `nerve_abr` policies, and their CLI
//! (`src/bin/nerveabr-sim.rs`). Both are deterministic: no randomness, so a trace and a policy give
//! one answer.
//!
//! - [`chunk`]: Pensieve's chunk-level simulator semantics (`fixed_env.py`), with an
//!   enhancement queue and a quality table added, for the issue-5 evaluation.
//! - [`bones`]: BONES' simulator semantics, for comparison with its published figures.

pub mod bones;
pub mod bones_data;
pub mod chunk;
pub mod lofo;
pub mod plot;
pub mod report;
pub mod run;
pub mod trace;

use serde::Serialize;

/// One policy on one trace.
#[derive(Clone, Debug, Serialize)]
pub struct TraceResult {
    pub trace: String,
    /// Quality-based QoE (see the crate README for its definition per scenario).
    pub qoe_quality: f64,
    /// Pensieve's QoE_lin, mean per chunk: bitrate (Mbit/s) - 4.3 x rebuffer (s) - |bitrate
    /// change| (Mbit/s).
    pub qoe_lin: f64,
    /// BONES' QoE (BONES scenario only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qoe_bones: Option<f64>,
    /// Mean displayed VMAF.
    pub mean_quality: f64,
    /// Stall after start-up, seconds.
    pub rebuffer_s: f64,
    pub startup_s: f64,
    /// Wall time of the session (start-up + playback + stalls), seconds.
    pub play_s: f64,
    /// Bits downloaded, megabits (abandoned partial downloads included).
    pub bits_mb: f64,
    /// Rung changes between consecutive chunks.
    pub switches: usize,
    pub enhanced_chunks: usize,
    /// Device time spent enhancing, seconds.
    pub compute_s: f64,
    /// Device energy of the session from nerve_abr::energy (radio, decode, enhancement), joules
    /// (chunk scenario only; 0 in the BONES scenario).
    pub energy_j: f64,
    /// The same as a share of the stated phone battery, percent.
    pub battery_pct: f64,
}

/// Pensieve's QoE_lin averaged over chunks 1.. (Pensieve's test scripts drop the first chunk's
/// reward), with the rebuffer total spread over those chunks.
pub fn qoe_lin(bitrate_mbps: &[f64], rebuffer_s: f64, n: usize) -> f64 {
    if bitrate_mbps.len() < 2 || n < 2 {
        return 0.0;
    }
    let sum: f64 = bitrate_mbps[1..].iter().sum();
    let smooth: f64 = bitrate_mbps.windows(2).map(|w| (w[1] - w[0]).abs()).sum();
    (sum - nerve_abr::mpc::REBUF_PENALTY * rebuffer_s - nerve_abr::mpc::SMOOTH_PENALTY * smooth) / (n - 1) as f64
}
