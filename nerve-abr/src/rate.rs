//! Rate-based: the highest rung the estimated throughput sustains.

use super::{highest_sustainable, Decision, Observation, Policy, Progress};

#[derive(Clone, Debug)]
pub struct RateBased {
    /// Fraction of the estimate trusted (0.9 in dash.js and BONES, 1.0 in Pensieve's RB).
    pub safety: f64,
    /// Abandon a chunk that will take too long (dash.js' rule, BONES' `--monitor`).
    pub abandon: bool,
}

impl RateBased {
    pub fn new(safety: f64) -> Self {
        Self { safety, abandon: false }
    }
}

impl Policy for RateBased {
    fn name(&self) -> &'static str {
        "rb"
    }

    fn decide(&mut self, obs: &Observation<'_>) -> Decision {
        let rung = match obs.throughput_bps {
            Some(t) => highest_sustainable(obs.ladder, t * self.safety, obs.latency.as_secs_f64()),
            None => 0,
        };
        Decision { rung, level: 0 }
    }

    fn abandon(&mut self, p: &Progress<'_>) -> Option<usize> {
        if self.abandon { throughput_abandon(p, self.safety) } else { None }
    }
}

/// dash.js' abandonment rule as BONES' `Throughput.monitor_hook` has it: after a 0.5 s grace
/// time, if the chunk will take more than 1.8 chunk durations, switch to the rung the measured
/// throughput sustains when that is lower and its chunk smaller than what is left.
pub fn throughput_abandon(p: &Progress<'_>, safety: f64) -> Option<usize> {
    let chunk = p.ladder.chunk_s();
    let elapsed = p.elapsed.as_secs_f64();
    if elapsed <= 0.5 || p.throughput_bps <= 0.0 {
        return None;
    }
    let left = p.remaining_bits / p.throughput_bps;
    if elapsed + left <= 1.8 * chunk {
        return None;
    }
    let new = highest_sustainable(p.ladder, p.throughput_bps * safety, p.latency.as_secs_f64());
    let size = p.sizes_bits.get(new).copied().unwrap_or(f64::INFINITY);
    (new < p.rung && size < p.remaining_bits).then_some(new)
}
