//! What a viewing session costs the phone's battery: the radio, the video decoder and the
//! enhancement, in joules and in battery percent. `nerveabr-sim` and the `nerveabr` element use
//! this one model (the element reports its running estimate in every decision).
//!
//! Sources and stated assumptions (each figure below says which it is):
//! - **Radio**: the per-network power model of Huang et al., "A Close Examination of Performance
//!   and Power Characteristics of 4G LTE Networks", MobiSys 2012: while a transfer is active the
//!   radio draws `beta + alpha_d x downlink Mbit/s`, and after it the radio stays in a high-power
//!   "tail" state for a fixed time unless the next transfer starts first. The figures are the
//!   paper's power-model table (LTE, 3G, WiFi) as transcribed here (this machine cannot reach the
//!   paper to check them again: a reader should). 5G is given LTE's figures (the
//!   paper predates 5G; a 5G radio is not cheaper per second of activity): a stated assumption.
//! - **Decoder**: a hardware H.264/HEVC decoder at ~0.3 W while a 720p-1080p stream plays: a stated
//!   assumption of the order that SoC vendors' video-playback power figures give, not a
//!   measurement of ours.
//! - **Enhancement**: what the benchmark measures here (CPU-seconds per frame of each model on
//!   this machine, in the quality tables' speeds) converted to a phone: a big phone core is taken
//!   to run this work at `phone_slowdown` x the CPU-seconds of this x86 core, drawing `core_w`
//!   watts; an NPU does the same inference for `npu_gain` times less energy. All three are stated
//!   assumptions (see docs/abr.md#energy), chosen before any policy ran.
//! - **Battery**: a 4500 mAh cell at 3.87 V nominal (17.4 Wh), a common size for 2022-2025
//!   phones: a stated assumption.

/// Battery saver's download bursts: once the player's buffer is full, the next download waits
/// until the buffer has drained to this many seconds, so the radio finishes its tail and sleeps
/// between bursts instead of waking for every fragment. On a link fast enough to fill the buffer
/// the tail is most of the radio's energy (LTE: 11.6 s of tail after each download, every 4 s
/// fragment). 15 s is what stays buffered when downloads resume: more than the 10 s a stall-free
/// start needs on the slowest family's links (a stated choice, not tuned on any family's result).
pub const BURST_RESUME_S: f64 = 15.0;

/// The buffer level below which downloads resume once the buffer is full, for a preference:
/// `Some` only for battery saver (bursts); `None` = refill as soon as there is room.
pub fn resume_below_s(preference: crate::nerve::Preference) -> Option<f64> {
    (preference == crate::nerve::Preference::BatterySaver).then_some(BURST_RESUME_S)
}

/// The radio's power model for one network type (Huang et al. 2012).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RadioPower {
    /// Power while a transfer is active at zero throughput, W (the model's beta).
    pub base_w: f64,
    /// Extra power per downlink Mbit/s, W (alpha_d).
    pub per_mbps_w: f64,
    /// Tail: the radio stays in its high-power state this long after a transfer...
    pub tail_s: f64,
    /// ... at this power, W.
    pub tail_w: f64,
}

/// The network types of the traces, as the radio model tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    Hspa3g,
    Lte,
    /// 5G (given LTE's radio figures: see the module comment).
    Nr5g,
    /// Fixed broadband at home: the phone is on WiFi.
    Wifi,
}

impl Network {
    /// The network a trace family's name says (`3g_hsdpa_norway`, `4g_lte_belgium`,
    /// `5g_lumos_sabre_json`, `broadband_fcc`, ...), if it says one.
    pub fn known(name: &str) -> Option<Self> {
        let n = name.to_ascii_lowercase();
        if n.starts_with("5g") {
            Some(Network::Nr5g)
        } else if n.starts_with("3g") || n.contains("hsdpa") || n.contains("_3gp") {
            Some(Network::Hspa3g)
        } else if n.starts_with("4g") || n.contains("lte") {
            Some(Network::Lte)
        } else if n.contains("broadband") || n.contains("fcc") || n.contains("oboe") || n.contains("wifi") {
            Some(Network::Wifi)
        } else {
            None
        }
    }

    /// The network of a family name, LTE when it says nothing known.
    pub fn of_family(name: &str) -> Self {
        Self::known(name).unwrap_or(Network::Lte)
    }

    /// The network of traces under `path`: the deepest path component that names one (an
    /// archive `4g_lumos_sabre_json.tar.gz` inside `5g_4g_lumos/` is 4G); LTE when none does.
    pub fn of_path(path: &std::path::Path) -> Self {
        path.components()
            .rev()
            .find_map(|c| Self::known(&c.as_os_str().to_string_lossy()))
            .unwrap_or(Network::Lte)
    }

    pub fn radio(self) -> RadioPower {
        match self {
            // Huang et al. 2012, power model (downlink, active state; tail state and length).
            Network::Lte | Network::Nr5g => RadioPower { base_w: 1.28804, per_mbps_w: 0.05197, tail_s: 11.576, tail_w: 1.06 },
            Network::Hspa3g => RadioPower { base_w: 0.81788, per_mbps_w: 0.12212, tail_s: 8.088, tail_w: 0.8039 },
            Network::Wifi => RadioPower { base_w: 0.13286, per_mbps_w: 0.13701, tail_s: 0.2381, tail_w: 0.1193 },
        }
    }

    /// The names `name()` gives, for properties and flags.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name.to_ascii_lowercase().as_str() {
            "3g" => Ok(Network::Hspa3g),
            "lte" | "4g" => Ok(Network::Lte),
            "5g" => Ok(Network::Nr5g),
            "wifi" => Ok(Network::Wifi),
            other => Err(format!("unknown network {other:?} (3g, lte, 5g, wifi)")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Network::Hspa3g => "3g",
            Network::Lte => "lte",
            Network::Nr5g => "5g",
            Network::Wifi => "wifi",
        }
    }
}

/// Where the enhancement runs on the phone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accelerator {
    Cpu,
    Npu,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EnergyModel {
    pub radio: RadioPower,
    /// Hardware video decoder while playing, W (assumption).
    pub decode_w: f64,
    /// Phone big core's CPU-seconds per CPU-second of this machine for the same inference.
    pub phone_slowdown: f64,
    /// Power of one busy big phone core, W.
    pub core_w: f64,
    /// Energy advantage of the phone's NPU over its CPU for the same inference.
    pub npu_gain: f64,
    pub accelerator: Accelerator,
    /// Battery capacity, Wh.
    pub battery_wh: f64,
}

impl EnergyModel {
    pub fn new(network: Network) -> Self {
        Self {
            radio: network.radio(),
            decode_w: 0.3,
            phone_slowdown: 2.0,
            core_w: 2.0,
            npu_gain: 10.0,
            accelerator: Accelerator::Cpu,
            battery_wh: 4.5 * 3.87,
        }
    }

    /// A transfer of `bits` that took `seconds` of active radio time.
    pub fn download_j(&self, bits: f64, seconds: f64) -> f64 {
        if seconds <= 0.0 {
            return 0.0;
        }
        let mbps = bits / 1e6 / seconds;
        (self.radio.base_w + self.radio.per_mbps_w * mbps) * seconds
    }

    /// An idle gap of `seconds` between two transfers: the tail while it lasts.
    pub fn idle_j(&self, seconds: f64) -> f64 {
        self.radio.tail_w * seconds.clamp(0.0, self.radio.tail_s)
    }

    /// Decoding `seconds` of video.
    pub fn decode_j(&self, seconds: f64) -> f64 {
        self.decode_w * seconds.max(0.0)
    }

    /// Enhancement that took `cpu_s` CPU-seconds on this machine.
    pub fn enhance_j(&self, cpu_s: f64) -> f64 {
        let cpu_j = cpu_s.max(0.0) * self.phone_slowdown * self.core_w;
        match self.accelerator {
            Accelerator::Cpu => cpu_j,
            Accelerator::Npu => cpu_j / self.npu_gain,
        }
    }

    /// `joules` as a percentage of a full battery.
    pub fn battery_pct(&self, joules: f64) -> f64 {
        joules / (self.battery_wh * 3600.0) * 100.0
    }
}

impl Default for EnergyModel {
    fn default() -> Self {
        Self::new(Network::Lte)
    }
}

/// A session's energy, by where it went.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EnergyUse {
    pub radio_j: f64,
    pub decode_j: f64,
    pub enhance_j: f64,
}

impl EnergyUse {
    pub fn total_j(&self) -> f64 {
        self.radio_j + self.decode_j + self.enhance_j
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_map_to_their_radios() {
        assert_eq!(Network::of_family("3g_hsdpa_norway"), Network::Hspa3g);
        assert_eq!(Network::of_family("4g_lte_belgium"), Network::Lte);
        assert_eq!(Network::of_family("5g_lumos_sabre_json"), Network::Nr5g);
        assert_eq!(Network::of_family("4g_lumos_sabre_json"), Network::Lte);
        assert_eq!(Network::of_family("broadband_fcc"), Network::Wifi);
        assert_eq!(Network::of_family("broadband_oboe"), Network::Wifi);
        assert_eq!(Network::of_family("norway_tram_52"), Network::Lte, "a file name says nothing");
        let p = std::path::Path::new;
        assert_eq!(Network::of_path(p("/d/traces/3g_hsdpa_norway/pensieve_test_cooked_3gp")), Network::Hspa3g);
        assert_eq!(Network::of_path(p("/d/traces/5g_4g_lumos/4g_lumos_sabre_json.tar.gz")), Network::Lte);
        assert_eq!(Network::of_path(p("/d/traces/5g_4g_lumos/5g_lumos_sabre_json.tar.gz")), Network::Nr5g);
        assert_eq!(Network::of_path(p("/d/traces/broadband_fcc/cooked")), Network::Wifi);
    }

    #[test]
    fn radio_energy_follows_the_power_model() {
        let e = EnergyModel::new(Network::Lte);
        // 10 Mbit in 1 s on LTE: 1.288 W + 10 x 0.052 W for one second.
        assert!((e.download_j(10e6, 1.0) - (1.28804 + 0.5197)).abs() < 1e-9);
        // the same bits fetched twice as fast cost less (the base power runs half as long)
        assert!(e.download_j(10e6, 0.5) < e.download_j(10e6, 1.0));
        // the tail stops at its length
        assert_eq!(e.idle_j(100.0), e.idle_j(e.radio.tail_s));
        assert!(EnergyModel::new(Network::Wifi).idle_j(5.0) < e.idle_j(5.0));
    }

    #[test]
    fn enhancement_energy_scales_with_compute_and_the_accelerator() {
        let mut e = EnergyModel::default();
        assert_eq!(e.enhance_j(1.0), 4.0);
        e.accelerator = Accelerator::Npu;
        assert!((e.enhance_j(1.0) - 0.4).abs() < 1e-12);
        // a full battery is 100%
        assert!((e.battery_pct(e.battery_wh * 3600.0) - 100.0).abs() < 1e-9);
    }
}
