//! BBA-0 (Huang et al., SIGCOMM 2014): the rung is a function of the buffer level alone.

use super::{Decision, Observation, Policy};

/// How the cushion between the reservoirs maps onto the ladder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CushionMap {
    /// Linear in rung index (Pensieve's `bb.py`: reservoir 5 s, cushion 10 s).
    Index,
    /// Linear in bitrate, with thresholds as fractions of the buffer cap (BONES' `Buffer`:
    /// 0.375 and 0.9 of 60 s).
    Bitrate,
}

#[derive(Clone, Debug)]
pub struct Bba {
    /// Below this buffer level (s): lowest rung.
    pub reservoir_s: f64,
    /// At or above this level (s): top rung.
    pub upper_s: f64,
    pub map: CushionMap,
}

impl Bba {
    /// Pensieve's BB: reservoir 5 s, cushion 10 s, linear in rung index.
    pub fn pensieve() -> Self {
        Self { reservoir_s: 5.0, upper_s: 15.0, map: CushionMap::Index }
    }
    /// BONES' buffer-based controller for a buffer cap of `cap_s`.
    pub fn bones(cap_s: f64) -> Self {
        Self { reservoir_s: 0.375 * cap_s, upper_s: 0.9 * cap_s, map: CushionMap::Bitrate }
    }
}

impl Policy for Bba {
    fn name(&self) -> &'static str {
        "bb"
    }

    fn decide(&mut self, obs: &Observation<'_>) -> Decision {
        let b = obs.buffer.as_secs_f64();
        let l = obs.ladder;
        let top = l.top();
        let rung = match self.map {
            CushionMap::Index => {
                if b < self.reservoir_s {
                    0
                } else if b >= self.upper_s {
                    top
                } else {
                    let f = (b - self.reservoir_s) / (self.upper_s - self.reservoir_s);
                    ((top as f64) * f).floor() as usize
                }
            }
            CushionMap::Bitrate => {
                // threshold_i = reservoir + (br_i - br_0) / (br_top - br_0) * (upper - reservoir);
                // the rung is the first whose threshold is above the buffer.
                let b0 = l.bitrates_bps[0];
                let span = l.bitrates_bps[top] - b0;
                if b > self.upper_s {
                    top
                } else {
                    (0..=top)
                        .find(|&i| {
                            let f = if span > 0.0 { (l.bitrates_bps[i] - b0) / span } else { 0.0 };
                            b < self.reservoir_s + f * (self.upper_s - self.reservoir_s)
                        })
                        .unwrap_or(0)
                }
            }
        };
        Decision { rung: rung.min(top), level: 0 }
    }
}
