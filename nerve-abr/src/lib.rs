//! nerve-abr: the ABR policies (BBA-0, rate-based, BOLA, RobustMPC, Dynamic, BONES, `nerve`),
//! their construction from a name (`spec`), the quality tables and the device energy model.
//! The `nerveabr` element (gst-nerveabr), the simulator (nerveabr-sim) and the Python bindings
//! (nerveabr-py) all build on this crate and nothing here knows about any of them.
//!
//! Policies are plain structs, observations in, decision out.
//!
//! Time is passed in (buffer levels, download times), never read from a clock, and no `gst`
//! type appears here, so the element and `nerveabr-sim` run the same code (the framework /
//! simulator split of maybenot-io/maybenot, and the estimator trait of gst-plugins-rs
//! `net/rtp/src/gcc/`).

pub mod bba;
pub mod bola;
pub mod bones;
pub mod dynamic;
pub mod energy;
pub mod learned;
pub mod mpc;
pub mod nerve;
pub mod quality;
pub mod rate;
pub mod spec;
pub mod throughput;

use std::time::Duration;

pub use quality::{QualityTable, DEFAULT_TABLE};

/// The bitrate ladder of one stream.
#[derive(Clone, Debug)]
pub struct Ladder {
    /// Nominal bitrate of each rung, lowest first, bit/s.
    pub bitrates_bps: Vec<f64>,
    /// Duration of one chunk (segment).
    pub chunk: Duration,
}

impl Ladder {
    pub fn rungs(&self) -> usize {
        self.bitrates_bps.len()
    }
    pub fn top(&self) -> usize {
        self.bitrates_bps.len().saturating_sub(1)
    }
    pub fn chunk_s(&self) -> f64 {
        self.chunk.as_secs_f64()
    }
    /// BOLA's and MPC's utility: ln(bitrate / lowest bitrate).
    pub fn log_utility(&self, rung: usize) -> f64 {
        match (self.bitrates_bps.get(rung), self.bitrates_bps.first()) {
            (Some(b), Some(b0)) if *b0 > 0.0 => (b / b0).ln(),
            _ => 0.0,
        }
    }
}

/// What a policy sees before it picks the next chunk.
#[derive(Clone, Debug)]
pub struct Observation<'a> {
    /// Index of the chunk to fetch next.
    pub chunk_index: usize,
    /// Number of chunks in the stream.
    pub total_chunks: usize,
    /// Downloaded, not yet played media.
    pub buffer: Duration,
    /// Most media the player keeps.
    pub buffer_cap: Duration,
    /// Enhancement work queued and not yet done (compute time).
    pub enhance_backlog: Duration,
    /// Shared throughput estimate, bit/s (`None` before the first download).
    pub throughput_bps: Option<f64>,
    /// Estimated request latency.
    pub latency: Duration,
    /// Recent measured throughputs, oldest first, bit/s.
    pub recent_bps: &'a [f64],
    /// Rung of the previous chunk.
    pub last_rung: Option<usize>,
    /// Size of the next chunk at each rung, bits (nominal bitrate x duration if unknown).
    pub next_sizes_bits: &'a [f64],
    pub ladder: &'a Ladder,
    /// Whether enhancement can run at all now (false while the model is still being fetched).
    pub enhance_available: bool,
}

/// A download in progress, for policies that abandon a chunk (BOLA, dash.js throughput rule).
#[derive(Clone, Debug)]
pub struct Progress<'a> {
    pub buffer: Duration,
    pub enhance_backlog: Duration,
    /// Throughput measured since the first bit of this download, bit/s.
    pub throughput_bps: f64,
    pub latency: Duration,
    pub remaining_bits: f64,
    /// Since the request was sent.
    pub elapsed: Duration,
    /// Rung being downloaded.
    pub rung: usize,
    /// Size of this chunk at each rung, bits.
    pub sizes_bits: &'a [f64],
    pub ladder: &'a Ladder,
}

/// A decision: which rung to fetch and which enhancement level to run on it (0 = none: the
/// classical upscale).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Decision {
    pub rung: usize,
    pub level: usize,
}

/// Every ABR policy.
pub trait Policy: Send {
    fn name(&self) -> &'static str;
    /// Pick the next chunk's rung (and enhancement level, for enhancement-aware policies).
    fn decide(&mut self, obs: &Observation<'_>) -> Decision;
    /// Called while a chunk downloads; `Some(rung)` abandons it for a smaller rung.
    fn abandon(&mut self, _p: &Progress<'_>) -> Option<usize> {
        None
    }
}

/// Policy names the simulator and the element accept.
pub const POLICY_NAMES: &[&str] = &["bb", "rb", "bola", "robustmpc", "mpc", "dynamic", "bones", "nerve", "ppo"];

/// Index of the highest rung whose chunk downloads in one chunk duration at `tput_bps`
/// (after `latency_s`); rung 0 if none does. The throughput rule of dash.js and BONES.
pub fn highest_sustainable(ladder: &Ladder, tput_bps: f64, latency_s: f64) -> usize {
    let chunk = ladder.chunk_s();
    let mut rung = 0;
    while rung + 1 < ladder.rungs()
        && tput_bps > 0.0
        && latency_s + chunk * ladder.bitrates_bps[rung + 1] / tput_bps <= chunk
    {
        rung += 1;
    }
    rung
}
