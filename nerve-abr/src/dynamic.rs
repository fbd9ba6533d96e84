//! DYNAMIC (Spiteri et al., MMSys 2018; dash.js' default): throughput rule while the buffer is
//! short, BOLA once it is long, with BONES' switching thresholds.

use super::bola::{Bola, BOLA_CAP_S};
use super::rate::throughput_abandon;
use super::{highest_sustainable, Decision, Observation, Policy, Progress};

#[derive(Clone, Debug)]
pub struct Dynamic {
    /// Buffer level (s) at which the two rules hand over (10 s in BONES).
    pub switch_s: f64,
    pub safety: f64,
    pub abandon: bool,
    bola: Bola,
    use_tput: bool,
}

impl Dynamic {
    pub fn new(switch_s: f64, safety: f64, gamma_p: f64, abandon: bool) -> Self {
        Self { switch_s, safety, abandon, bola: Bola::new(gamma_p, false), use_tput: true }
    }
}

impl Policy for Dynamic {
    fn name(&self) -> &'static str {
        "dynamic"
    }

    fn decide(&mut self, obs: &Observation<'_>) -> Decision {
        let lat = obs.latency.as_secs_f64();
        let tput_rung = match obs.throughput_bps {
            Some(t) => highest_sustainable(obs.ladder, t * self.safety, lat),
            None => 0,
        };
        let bola_rung = self.bola.choose(obs, tput_rung);
        let b = obs.buffer.as_secs_f64();
        let (ut, ub) = (obs.ladder.log_utility(tput_rung), obs.ladder.log_utility(bola_rung));
        if self.use_tput && b >= self.switch_s && ub >= ut {
            self.use_tput = false;
        } else if !self.use_tput && b < self.switch_s && ub < ut {
            self.use_tput = true;
        }
        let rung = if self.use_tput { tput_rung } else { bola_rung };
        self.bola.set_last(rung);
        Decision { rung, level: 0 }
    }

    fn abandon(&mut self, p: &Progress<'_>) -> Option<usize> {
        if !self.abandon {
            return None;
        }
        let r = if self.use_tput {
            throughput_abandon(p, self.safety)
        } else {
            self.bola.abandon_rule(p, BOLA_CAP_S)
        };
        if let Some(n) = r {
            self.bola.set_last(n);
        }
        r
    }
}
