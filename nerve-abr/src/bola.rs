//! BOLA (Spiteri et al., INFOCOM 2016) in the form BONES' simulator uses: log utility,
//! V from the buffer cap, the BOLA-U rule against upward oscillation, and optional
//! abandonment of a chunk whose score drops below a smaller rung's.

use super::{highest_sustainable, Decision, Ladder, Observation, Policy, Progress};

#[derive(Clone, Debug)]
pub struct Bola {
    /// gamma * p, in seconds (5 s in BONES).
    pub gamma_p: f64,
    pub abandon: bool,
    last_rung: usize,
}

impl Bola {
    pub fn new(gamma_p: f64, abandon: bool) -> Self {
        Self { gamma_p, abandon, last_rung: 0 }
    }

    fn v(&self, ladder: &Ladder, cap_s: f64) -> f64 {
        (cap_s - ladder.chunk_s()) / (ladder.log_utility(ladder.top()) + self.gamma_p)
    }

    /// The rung maximising (V (u + gamma p) - Q) / size, before the BOLA-U correction.
    pub fn raw_choice(&self, ladder: &Ladder, buffer_s: f64, cap_s: f64) -> usize {
        let v = self.v(ladder, cap_s);
        let mut best = 0;
        let mut best_score = f64::NEG_INFINITY;
        for (i, br) in ladder.bitrates_bps.iter().enumerate() {
            let score = (v * (ladder.log_utility(i) + self.gamma_p) - buffer_s) / br;
            if score > best_score {
                best = i;
                best_score = score;
            }
        }
        best
    }

    /// BOLA-U: never step up past what the throughput sustains by more than one rung.
    pub fn choose(&self, obs: &Observation<'_>, tput_rung: usize) -> usize {
        let cap = obs.buffer_cap.as_secs_f64();
        let mut best = self.raw_choice(obs.ladder, obs.buffer.as_secs_f64(), cap);
        if best > self.last_rung && best > tput_rung {
            best = if self.last_rung > tput_rung { self.last_rung } else { self.last_rung + 1 };
        }
        best
    }

    pub fn set_last(&mut self, rung: usize) {
        self.last_rung = rung;
    }

    /// BONES' `BOLA.monitor_hook`: switch to any smaller rung whose score (with the chunk's real
    /// size) beats the score of what is left of the current download.
    pub fn abandon_rule(&mut self, p: &Progress<'_>, cap_s: f64) -> Option<usize> {
        let l = p.ladder;
        let v = self.v(l, cap_s);
        let q = p.buffer.as_secs_f64();
        let now = (v * (l.log_utility(p.rung) + self.gamma_p) - q) / p.remaining_bits;
        let mut new = None;
        for i in 0..l.rungs() {
            if i == p.rung {
                continue;
            }
            let size = p.sizes_bits.get(i).copied().unwrap_or(f64::INFINITY);
            let other = (v * (l.log_utility(i) + self.gamma_p) - q) / size;
            if size < p.remaining_bits && other > now {
                new = Some(i);
            }
        }
        if let Some(n) = new {
            self.last_rung = n;
        }
        new
    }
}

impl Policy for Bola {
    fn name(&self) -> &'static str {
        "bola"
    }

    fn decide(&mut self, obs: &Observation<'_>) -> Decision {
        let tput_rung = match obs.throughput_bps {
            Some(t) => highest_sustainable(obs.ladder, t, obs.latency.as_secs_f64()),
            None => 0,
        };
        let rung = self.choose(obs, tput_rung);
        self.last_rung = rung;
        Decision { rung, level: 0 }
    }

    fn abandon(&mut self, p: &Progress<'_>) -> Option<usize> {
        if !self.abandon {
            return None;
        }
        // The cap is not part of Progress; BOLA's V only needs it through `v`, which the
        // simulator fixes at 60 s in both scenarios. Keep it explicit here.
        self.abandon_rule(p, BOLA_CAP_S)
    }
}

/// Buffer cap BOLA's V is computed from when abandoning (both scenarios use 60 s).
pub const BOLA_CAP_S: f64 = 60.0;
