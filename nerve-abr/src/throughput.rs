//! Throughput estimators shared by every policy.
//!
//! The simulator (and later the element) feeds each finished download in; policies read the
//! estimate from their `Observation`. Units: bit/s and seconds.

/// One finished download: what the estimators learn from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DownloadSample {
    /// Bits received.
    pub bits: f64,
    /// Seconds from the first to the last bit (latency excluded).
    pub transfer_s: f64,
    /// Seconds from the request to the first bit.
    pub latency_s: f64,
}

impl DownloadSample {
    /// Throughput during the transfer, bit/s.
    pub fn throughput_bps(&self) -> f64 {
        if self.transfer_s > 0.0 {
            self.bits / self.transfer_s
        } else {
            f64::INFINITY
        }
    }
}

/// Which estimator the simulator or element keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EstimatorKind {
    /// Harmonic mean of the last 5 samples (Pensieve's MPC, FESTIVE).
    HarmonicMean,
    /// dash.js-style dual EWMA (half-lives 3 s and 8 s of download time), minimum of the two:
    /// the estimator BONES' simulator uses by default.
    DualEwma,
}

/// A throughput + latency estimator.
#[derive(Clone, Debug)]
pub struct Estimator {
    kind: EstimatorKind,
    window: Vec<f64>,
    lat_window: Vec<f64>,
    // dual EWMA state: [fast, slow] for throughput (weights by transfer seconds) and latency
    // (weights by downloads, as BONES' `ExponentialWindow` does).
    ewma_tput: [f64; 2],
    ewma_lat: [f64; 2],
    weight_s: f64,
    weight_n: f64,
    chunk_s: f64,
}

const HM_WINDOW: usize = 5;
const HALF_LIFE_S: [f64; 2] = [3.0, 8.0];

impl Estimator {
    /// `chunk_s` is the chunk duration (it turns the latency half-life into downloads).
    pub fn new(kind: EstimatorKind, chunk_s: f64) -> Self {
        Self {
            kind,
            window: Vec::with_capacity(HM_WINDOW + 1),
            lat_window: Vec::with_capacity(HM_WINDOW + 1),
            ewma_tput: [0.0; 2],
            ewma_lat: [0.0; 2],
            weight_s: 0.0,
            weight_n: 0.0,
            chunk_s,
        }
    }

    pub fn kind(&self) -> EstimatorKind {
        self.kind
    }

    pub fn push(&mut self, s: DownloadSample) {
        let tput = s.throughput_bps();
        if !tput.is_finite() {
            return;
        }
        self.window.push(tput);
        if self.window.len() > HM_WINDOW {
            self.window.remove(0);
        }
        self.lat_window.push(s.latency_s);
        if self.lat_window.len() > HM_WINDOW {
            self.lat_window.remove(0);
        }
        for (i, hl) in HALF_LIFE_S.iter().enumerate() {
            let a = 0.5f64.powf(s.transfer_s / hl);
            self.ewma_tput[i] = a * self.ewma_tput[i] + (1.0 - a) * tput;
            let hl_n = hl / self.chunk_s;
            let b = 0.5f64.powf(1.0 / hl_n);
            self.ewma_lat[i] = b * self.ewma_lat[i] + (1.0 - b) * s.latency_s;
        }
        self.weight_s += s.transfer_s;
        self.weight_n += 1.0;
    }

    /// Estimated throughput in bit/s, `None` before the first sample.
    pub fn throughput_bps(&self) -> Option<f64> {
        if self.window.is_empty() {
            return None;
        }
        Some(match self.kind {
            EstimatorKind::HarmonicMean => harmonic_mean(&self.window),
            EstimatorKind::DualEwma => {
                let mut est = f64::INFINITY;
                for (i, hl) in HALF_LIFE_S.iter().enumerate() {
                    // Zero-bias correction, as dash.js and BONES do.
                    let d = 1.0 - 0.5f64.powf(self.weight_s / hl);
                    if d > 0.0 {
                        est = est.min(self.ewma_tput[i] / d);
                    }
                }
                est
            }
        })
    }

    /// Estimated request latency in seconds (0 before the first sample).
    pub fn latency_s(&self) -> f64 {
        if self.lat_window.is_empty() {
            return 0.0;
        }
        match self.kind {
            EstimatorKind::HarmonicMean => harmonic_mean(&self.lat_window),
            EstimatorKind::DualEwma => {
                let mut est: f64 = 0.0;
                for (i, hl) in HALF_LIFE_S.iter().enumerate() {
                    let d = 1.0 - 0.5f64.powf(self.weight_n / (hl / self.chunk_s));
                    if d > 0.0 {
                        est = est.max(self.ewma_lat[i] / d);
                    }
                }
                est
            }
        }
    }

    /// The last few throughput samples, oldest first (bit/s).
    pub fn recent(&self) -> &[f64] {
        &self.window
    }
}

/// Harmonic mean; zero or negative entries make it 0.
pub fn harmonic_mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut inv = 0.0;
    for &x in xs {
        if x <= 0.0 {
            return 0.0;
        }
        inv += 1.0 / x;
    }
    xs.len() as f64 / inv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(mbps: f64, secs: f64) -> DownloadSample {
        DownloadSample { bits: mbps * 1e6 * secs, transfer_s: secs, latency_s: 0.1 }
    }

    #[test]
    fn harmonic_mean_by_hand() {
        // 2 / (1/1 + 1/4) = 1.6
        assert!((harmonic_mean(&[1.0, 4.0]) - 1.6).abs() < 1e-12);
        assert_eq!(harmonic_mean(&[]), 0.0);
    }

    #[test]
    fn harmonic_window_keeps_last_five() {
        let mut e = Estimator::new(EstimatorKind::HarmonicMean, 4.0);
        for m in [100.0, 1.0, 1.0, 1.0, 1.0, 1.0] {
            e.push(sample(m, 1.0));
        }
        // the 100 Mbit/s sample fell out of the window
        assert!((e.throughput_bps().unwrap() - 1e6).abs() < 1.0); // ok: test code
    }

    #[test]
    fn dual_ewma_is_unbiased_on_a_constant_rate_and_takes_the_lower_side() {
        let mut e = Estimator::new(EstimatorKind::DualEwma, 4.0);
        e.push(sample(2.0, 1.5));
        assert!((e.throughput_bps().unwrap() - 2e6).abs() < 1.0); // ok: test code
        assert!((e.latency_s() - 0.1).abs() < 1e-9);
        // a drop pulls the fast average down first; the estimate is the minimum
        e.push(sample(0.5, 1.5));
        let est = e.throughput_bps().unwrap(); // ok: test code
        assert!(est < 1.5e6 && est > 0.5e6, "{est}");
    }
}
