//! Model-predictive control over a 5-chunk horizon, in two published forms:
//! - [`RobustMpc`]: Pensieve's `robust_mpc` (Yin et al., SIGCOMM 2015): harmonic-mean throughput
//!   divided by (1 + the largest recent relative prediction error), QoE_lin objective.
//! - [`FastMpc`]: BONES' `MPC`: log utility, the dual-EWMA estimate, and the decision taken
//!   from a table over 100 buffer bins x 100 throughput bins (as fastMPC does), so its
//!   coarse throughput bins (300 kbit/s) are part of its behaviour.

use super::throughput::harmonic_mean;
use super::{Decision, Ladder, Observation, Policy};

const HORIZON: usize = 5;

/// Pensieve's RobustMPC.
#[derive(Clone, Debug, Default)]
pub struct RobustMpc {
    /// Prediction made at the previous decision, bit/s.
    last_prediction: Option<f64>,
    errors: Vec<f64>,
    last_rung: usize,
}

/// QoE_lin weights (Pensieve): rebuffer penalty in Mbit/s per second (the top bitrate of its
/// ladder) and smoothness penalty per Mbit/s of change.
pub const REBUF_PENALTY: f64 = 4.3;
pub const SMOOTH_PENALTY: f64 = 1.0;

impl RobustMpc {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Policy for RobustMpc {
    fn name(&self) -> &'static str {
        "robustmpc"
    }

    fn decide(&mut self, obs: &Observation<'_>) -> Decision {
        let recent = obs.recent_bps;
        let Some(&actual) = recent.last() else {
            return Decision::default();
        };
        // Score the previous prediction against the chunk it predicted (called once per chunk).
        if let Some(pred) = self.last_prediction
            && actual > 0.0 {
                self.errors.push((pred - actual).abs() / actual);
                if self.errors.len() > 5 {
                    self.errors.remove(0);
                }
            }
        let hm = harmonic_mean(recent);
        self.last_prediction = Some(hm);
        let max_err = self.errors.iter().copied().fold(0.0, f64::max);
        let future = hm / (1.0 + max_err);
        let horizon = HORIZON.min(obs.total_chunks.saturating_sub(obs.chunk_index)).max(1);
        let last = obs.last_rung.unwrap_or(self.last_rung);
        let rung = best_first_rung(obs.ladder, horizon, |seq| {
            let mut buf = obs.buffer.as_secs_f64();
            let mut rebuf = 0.0;
            let mut sum = 0.0;
            let mut smooth = 0.0;
            let mut prev = obs.ladder.bitrates_bps[last];
            for (k, &r) in seq.iter().enumerate() {
                let size = if k == 0 {
                    obs.next_sizes_bits.get(r).copied().unwrap_or(0.0)
                } else {
                    obs.ladder.bitrates_bps[r] * obs.ladder.chunk_s()
                };
                let dt = if future > 0.0 { size / future } else { f64::INFINITY };
                rebuf += (dt - buf).max(0.0);
                buf = (buf - dt).max(0.0) + obs.ladder.chunk_s();
                let br = obs.ladder.bitrates_bps[r];
                sum += br;
                smooth += (br - prev).abs();
                prev = br;
            }
            sum / 1e6 - REBUF_PENALTY * rebuf - SMOOTH_PENALTY * smooth / 1e6
        });
        self.last_rung = rung;
        Decision { rung, level: 0 }
    }
}

/// BONES' table-driven MPC.
#[derive(Clone, Debug)]
pub struct FastMpc {
    pub quality_factor: f64,
    pub variation_factor: f64,
    /// Per millisecond of predicted rebuffering (BONES uses 1).
    pub rebuffer_factor: f64,
    table: Vec<Option<u8>>,
}

const BINS: usize = 100;
const MIN_TPUT_KBPS: f64 = 0.1;
const MAX_TPUT_KBPS: f64 = 30000.0;

impl FastMpc {
    pub fn new() -> Self {
        Self { quality_factor: 10.0, variation_factor: 10.0, rebuffer_factor: 1.0, table: vec![None; BINS * BINS] }
    }

    fn solve(&self, ladder: &Ladder, buffer_ms: f64, tput_kbps: f64) -> usize {
        let seg_ms = ladder.chunk_s() * 1000.0;
        best_first_rung(ladder, HORIZON, |seq| {
            let (mut q, mut var, mut reb) = (0.0, 0.0, 0.0);
            let mut buf = buffer_ms;
            let mut last: Option<usize> = None;
            for &r in seq {
                let u = ladder.log_utility(r);
                q += u;
                // As in BONES: the first step carries no variation term.
                if let Some(l) = last {
                    var += (u - ladder.log_utility(l)).abs();
                }
                let dt = seg_ms * (ladder.bitrates_bps[r] / 1000.0) / tput_kbps;
                if dt > buf {
                    reb += dt - buf;
                }
                let rest = buf - dt;
                buf = if rest > 0.0 { rest + seg_ms } else { seg_ms };
                last = Some(r);
            }
            let n = seq.len() as f64;
            self.quality_factor * q / n - self.variation_factor * var / (n - 1.0) - self.rebuffer_factor * reb / n
        })
    }
}

impl Default for FastMpc {
    fn default() -> Self {
        Self::new()
    }
}

impl Policy for FastMpc {
    fn name(&self) -> &'static str {
        "mpc"
    }

    fn decide(&mut self, obs: &Observation<'_>) -> Decision {
        let cap_ms = obs.buffer_cap.as_secs_f64() * 1000.0;
        let bin_buf = cap_ms / BINS as f64;
        let bin_tput = (MAX_TPUT_KBPS - MIN_TPUT_KBPS) / BINS as f64;
        let b = (obs.buffer.as_secs_f64() * 1000.0).min(cap_ms);
        let i = ((b / bin_buf).floor() as usize).min(BINS - 1);
        let t = obs.throughput_bps.unwrap_or(0.0) / 1000.0;
        let t = t.min(MAX_TPUT_KBPS);
        let j = (((t - MIN_TPUT_KBPS) / bin_tput).floor().max(0.0) as usize).min(BINS - 1);
        let key = i * BINS + j;
        let rung = match self.table.get(key).copied().flatten() {
            Some(r) => r as usize,
            None => {
                let r = self.solve(obs.ladder, i as f64 * bin_buf, MIN_TPUT_KBPS + j as f64 * bin_tput);
                if let Some(slot) = self.table.get_mut(key) {
                    *slot = Some(r as u8);
                }
                r
            }
        };
        Decision { rung, level: 0 }
    }
}

/// Most rung sequences a look-ahead scores per decision: ten rungs over the published five
/// chunks. A ladder of more rungs looks fewer chunks ahead (20 rungs: 3, 50: 2), so a manifest
/// of many renditions costs a decision about what ten do, not rungs^5 (fuzzing `abr_manifest`
/// found an HLS playlist of about 20 bandwidths that took 2.6 s of CPU in `robustmpc`).
pub const MAX_PLANS: usize = 100_000;

/// `horizon`, shortened until `rungs`^horizon is at most [`MAX_PLANS`] (at least 1).
pub fn bounded_horizon(rungs: usize, horizon: usize) -> usize {
    let mut h = horizon.max(1);
    while h > 1 && rungs.checked_pow(h as u32).is_none_or(|plans| plans > MAX_PLANS) {
        h -= 1;
    }
    h
}

/// Enumerate every rung sequence of `len` chunks (shortened by [`bounded_horizon`]) and return
/// the first rung of the best one (ties keep the earliest sequence, as a strict `>` does in both
/// reference implementations).
pub fn best_first_rung(ladder: &Ladder, len: usize, mut score: impl FnMut(&[usize]) -> f64) -> usize {
    let n = ladder.rungs();
    if n == 0 || len == 0 {
        return 0;
    }
    let len = bounded_horizon(n, len);
    let mut seq = vec![0usize; len];
    let mut best = f64::NEG_INFINITY;
    let mut best_rung = 0;
    loop {
        let s = score(&seq);
        if s > best {
            best = s;
            best_rung = seq[0];
        }
        // odometer increment, last position fastest
        let mut k = len;
        loop {
            if k == 0 {
                return best_rung;
            }
            k -= 1;
            seq[k] += 1;
            if seq[k] < n {
                break;
            }
            seq[k] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_long_ladder_looks_fewer_chunks_ahead() {
        // (rungs, horizon asked) -> horizon searched
        for (rungs, asked, want) in [(6, 5, 5), (10, 5, 5), (11, 5, 4), (20, 5, 3), (50, 5, 2), (400, 5, 1), (usize::MAX, 5, 1), (3, 0, 1)] {
            assert_eq!(bounded_horizon(rungs, asked), want, "{rungs} rungs");
        }
        // a 20-rung ladder scores 20^3 sequences, not 20^5
        let ladder = Ladder { bitrates_bps: (1..=20).map(|i| i as f64 * 1e5).collect(), chunk: Duration::from_secs(4) };
        let mut scored = 0usize;
        let best = best_first_rung(&ladder, 5, |seq| {
            scored += 1;
            -(seq[0] as f64 - 7.0).abs()
        });
        assert_eq!((best, scored), (7, 8000));
    }
}
