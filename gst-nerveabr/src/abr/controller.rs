//! The element's decision logic without gst: the stream's ladder (from its manifest) joined to a
//! quality table, the shared policies of `nerve_abr` built as `nerveabr-sim` builds them
//! (`nerve_abr::spec::stream_policy`), and one decision per downloaded fragment. `imp.rs` only feeds it
//! what the demuxer reports and applies what it returns.

use std::path::Path;
use std::time::Duration;

use super::manifest::Rung;
use nerve_abr::energy::{EnergyModel, EnergyUse, Network};
use nerve_abr::nerve::Preference;
use nerve_abr::quality::TableFile;
use nerve_abr::{Decision, Ladder, Observation, Policy, QualityTable};
use nerve_abr::learned::Rows;
use nerve_abr::spec::{stream_policy, EnhanceMode, NerveConfig, PolicySpec};

/// The shipped default table (`nerve-abr/tables/make_measured.sh`), embedded in nerve-abr.
pub use nerve_abr::DEFAULT_TABLE;

/// Recent fragment throughputs kept for the policies (RobustMPC reads the last 5).
const RECENT: usize = 8;
/// Request latency assumed when the demuxer does not report one (loopback to LAN-scale).
const LATENCY: Duration = Duration::from_millis(50);

/// What configures a controller (from the element's settings).
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `nerveabr-sim` policy name: bb, rb, bola, robustmpc, dynamic, nerve, or `X+sr`.
    pub policy: String,
    pub preference: Preference,
    /// 0..=1 while on battery, `None` on mains.
    pub battery: Option<f64>,
    /// Speed of this device relative to the table's.
    pub device_speed: f64,
    /// Display height the upscale aims at, 0 = the top rung's height.
    pub target_height: u32,
    /// The network the device streams over (the energy model's radio).
    pub network: Network,
    /// The `ppo` policy's ONNX actor; `None`: models/abr/ppo.onnx of the model directories.
    pub ppo_model: Option<std::path::PathBuf>,
    /// Shield the `ppo` policy with the planner's stall constraint (nerve_abr::learned::Ppo).
    pub ppo_shield: bool,
}

/// What the demuxer and the sinks report when a fragment has been downloaded.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    /// The demuxer's `current-bandwidth`, bit/s (0 = not measured yet).
    pub bandwidth_bps: f64,
    /// The demuxer's `current-level-time-video`.
    pub buffer: Duration,
    /// The demuxer's `max-buffering-time`.
    pub buffer_cap: Duration,
    /// Whether an enhancer is in the pipeline and keeping up (sink QoS proportion <= 1.2).
    pub enhance_available: bool,
}

/// One decision, as the element applies and posts it.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub fragment: u64,
    pub rung: usize,
    pub bandwidth: u64,
    pub height: u32,
    pub level: usize,
    /// Table name of the enhancement level, "classical" for level 0.
    pub model: String,
    /// Target height / rung height (1.0 when a height is unknown).
    pub upscale: f64,
    pub throughput_bps: f64,
    pub buffer: Duration,
    /// The session's expected device energy so far, this fragment included (nerve_abr::energy).
    pub energy: EnergyUse,
    /// The same as a share of the stated phone battery, percent.
    pub battery_pct: f64,
    /// Time the policy took for this decision (features, and the network for `ppo`), in
    /// microseconds of wall clock on the thread that decided; 0 for the fixed first fragment.
    pub decide_us: f64,
}

pub struct Controller {
    config: Config,
    policy: Box<dyn Policy>,
    greedy_sr: bool,
    ladder: Ladder,
    rungs: Vec<Rung>,
    table: QualityTable,
    level_names: Vec<String>,
    recent: Vec<f64>,
    energy_model: EnergyModel,
    energy: EnergyUse,
    fragment: u64,
    total: usize,
    last_rung: Option<usize>,
}

/// Row of `file` whose bitrate is nearest (in log bitrate) to `bps`.
fn nearest_row(file: &TableFile, bps: f64) -> usize {
    let target = (bps.max(1.0) / 1000.0).ln();
    let mut best = (0, f64::INFINITY);
    for (i, r) in file.rungs.iter().enumerate() {
        let d = (r.bitrate_kbps.max(1e-3).ln() - target).abs();
        if d < best.1 {
            best = (i, d);
        }
    }
    best.0
}

/// The table for this stream: each rung takes the row of the nearest bitrate; compute times are
/// rescaled to the stream's segment duration and the device's speed.
pub fn table_for(file: &TableFile, rungs: &[Rung], segment_s: f64, device_speed: f64) -> QualityTable {
    let mut sub = file.clone();
    sub.rungs = rungs.iter().filter_map(|r| file.rungs.get(nearest_row(file, r.bandwidth as f64)).cloned()).collect();
    if segment_s > 0.0 {
        sub.chunk_s = segment_s;
    }
    QualityTable::from_file(&sub, device_speed.max(1e-3))
}

/// Every row of the table, at the stream's segment duration and the device's speed.
fn table_for_rows(file: &TableFile, segment_s: f64, device_speed: f64) -> QualityTable {
    let mut all = file.clone();
    if segment_s > 0.0 {
        all.chunk_s = segment_s;
    }
    QualityTable::from_file(&all, device_speed.max(1e-3))
}

impl Controller {
    /// `segment_s` and `total` come from the manifest (0 = unknown: 2 s and a long stream).
    pub fn new(config: Config, file: &TableFile, rungs: Vec<Rung>, segment_s: f64, total: Option<usize>) -> Result<Self, String> {
        if rungs.is_empty() {
            return Err("the stream has no video rung".into());
        }
        let spec: PolicySpec = config.policy.parse()?;
        let segment = if segment_s > 0.0 { segment_s } else { 2.0 };
        let table = table_for(file, &rungs, segment, config.device_speed);
        // the chunk-scenario tuning: segments of seconds, buffers of tens of seconds
        let nerve = NerveConfig {
            params: nerve_abr::nerve::NerveParams::chunk(),
            preference: config.preference,
            battery: config.battery,
            ppo_model: config.ppo_model.clone(),
            ppo_shield: config.ppo_shield,
        };
        let rows = Rows::new(
            rungs.iter().map(|r| nearest_row(file, r.bandwidth as f64)).collect(),
            file.rungs.iter().map(|r| r.bitrate_kbps * 1000.0).collect(),
        )?;
        let (policy, mode) = stream_policy(&spec, &table_for_rows(file, segment, config.device_speed), rows, &table, &nerve)?;
        let level_names = std::iter::once("classical".to_string())
            .chain((0..table.levels().saturating_sub(1)).map(|l| file.rungs.iter().find_map(|r| r.levels.get(l)).map_or(format!("level-{}", l + 1), |x| x.name.clone())))
            .collect();
        let energy_model = EnergyModel::new(config.network);
        Ok(Self {
            greedy_sr: mode == EnhanceMode::Greedy,
            config,
            policy,
            ladder: Ladder { bitrates_bps: rungs.iter().map(|r| r.bandwidth as f64).collect(), chunk: Duration::from_secs_f64(segment) },
            rungs,
            table,
            level_names,
            recent: Vec::new(),
            energy_model,
            energy: EnergyUse::default(),
            fragment: 0,
            total: total.unwrap_or(100_000),
            last_rung: None,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A controller rebuilt mid-stream (a setting changed) goes on where `previous` was: the
    /// fragment count, the throughput history and the last rung are the stream's, not the
    /// settings'.
    pub fn carry_over(&mut self, previous: &Controller) {
        self.fragment = previous.fragment;
        self.energy = previous.energy;
        self.recent = previous.recent.clone();
        self.last_rung = previous.last_rung.map(|r| r.min(self.ladder.top()));
    }

    pub fn rungs(&self) -> &[Rung] {
        &self.rungs
    }

    /// The decision for the next fragment. `step.bandwidth_bps > 0` records a new measurement.
    pub fn decide(&mut self, step: Step) -> Choice {
        if step.bandwidth_bps > 0.0 {
            self.recent.push(step.bandwidth_bps);
            if self.recent.len() > RECENT {
                self.recent.remove(0);
            }
        }
        let sizes: Vec<f64> = self.ladder.bitrates_bps.iter().map(|b| b * self.ladder.chunk_s()).collect();
        let obs = Observation {
            chunk_index: self.fragment as usize,
            total_chunks: self.total.max(self.fragment as usize + 1),
            buffer: step.buffer,
            buffer_cap: step.buffer_cap,
            enhance_backlog: Duration::ZERO,
            throughput_bps: self.recent.last().copied(),
            latency: LATENCY,
            recent_bps: &self.recent,
            last_rung: self.last_rung,
            next_sizes_bits: &sizes,
            ladder: &self.ladder,
            enhance_available: step.enhance_available,
        };
        // Before any measurement, start at the lowest rung (the simulators fix the first chunk too).
        let started = std::time::Instant::now();
        let Decision { rung, level } = if self.recent.is_empty() { Decision::default() } else { self.policy.decide(&obs) };
        let decide_us = if self.recent.is_empty() { 0.0 } else { started.elapsed().as_secs_f64() * 1e6 };
        let rung = rung.min(self.ladder.top());
        let chunk = self.ladder.chunk_s();
        let level = if !step.enhance_available {
            0
        } else if self.greedy_sr {
            // greedy SR: the best real-time level that finishes before the fragment plays
            self.table.best_level_within(rung, step.buffer.as_secs_f64(), chunk)
        } else {
            level
        };
        self.last_rung = Some(rung);
        let r = &self.rungs[rung.min(self.rungs.len() - 1)]; // ok: rungs is non-empty (checked in new)
        let top_h = self.rungs.iter().map(|r| r.height).max().unwrap_or(0);
        let target = if self.config.target_height > 0 { self.config.target_height } else { top_h };
        let upscale = if r.height > 0 && target > 0 { target as f64 / r.height as f64 } else { 1.0 };
        // What this fragment will cost the battery: its download at the measured throughput
        // (the radio's active power for that long), its decoding, and its enhancement (the table's
        // compute for the level, as CPU-seconds of the benchmark machine).
        let bits = r.bandwidth as f64 * chunk;
        let throughput = self.recent.last().copied().filter(|t| *t > 0.0).unwrap_or(r.bandwidth as f64 * 2.0);
        self.energy.radio_j += self.energy_model.download_j(bits, bits / throughput);
        self.energy.decode_j += self.energy_model.decode_j(chunk);
        if level > 0 {
            self.energy.enhance_j += self.energy_model.enhance_j(self.table.cost(rung, level));
        }
        let choice = Choice {
            energy: self.energy,
            battery_pct: self.energy_model.battery_pct(self.energy.total_j()),
            fragment: self.fragment,
            rung,
            bandwidth: r.bandwidth,
            height: r.height,
            level,
            model: self.level_names.get(level).cloned().unwrap_or_else(|| format!("level-{level}")),
            upscale,
            throughput_bps: self.recent.last().copied().unwrap_or(0.0),
            buffer: step.buffer,
            decide_us,
        };
        self.fragment += 1;
        choice
    }
}

/// Battery level from `root` (normally `/sys/class/power_supply`): `Some(0..=1)` when a battery
/// is discharging, `None` on mains power or when there is no battery.
pub fn read_battery(root: &Path) -> Option<f64> {
    let entries = std::fs::read_dir(root).ok()?;
    for e in entries.flatten() {
        let p = e.path();
        let kind = std::fs::read_to_string(p.join("type")).unwrap_or_default();
        if kind.trim() != "Battery" {
            continue;
        }
        let status = std::fs::read_to_string(p.join("status")).unwrap_or_default();
        if status.trim() != "Discharging" {
            return None;
        }
        let cap: f64 = std::fs::read_to_string(p.join("capacity")).ok()?.trim().parse().ok()?;
        return Some((cap / 100.0).clamp(0.0, 1.0));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rungs() -> Vec<Rung> {
        [(300_000, 240), (750_000, 360), (1_200_000, 480), (1_850_000, 720)].iter().map(|&(b, h)| Rung { bandwidth: b, width: 0, height: h }).collect()
    }

    fn file() -> TableFile {
        serde_json::from_str(DEFAULT_TABLE).unwrap() // ok: test code
    }

    fn config(policy: &str) -> Config {
        Config { policy: policy.into(), preference: Preference::Balanced, battery: None, device_speed: 1.0, target_height: 0, network: Network::Lte, ppo_model: None, ppo_shield: true }
    }

    fn step(bw: f64, buffer_s: f64) -> Step {
        Step { bandwidth_bps: bw, buffer: Duration::from_secs_f64(buffer_s), buffer_cap: Duration::from_secs(30), enhance_available: true }
    }

    #[test]
    fn table_rows_follow_the_nearest_bitrate() {
        let t = table_for(&file(), &rungs(), 4.0, 1.0);
        assert_eq!(t.rungs(), 4);
        // Pensieve's ladder rows: 300 -> row 0, 1850 -> row 3
        assert!(t.base(0) < t.base(1) && t.base(1) < t.base(3));
    }

    #[test]
    fn every_policy_builds_and_follows_bandwidth() {
        for p in ["bb", "rb", "bola", "robustmpc", "dynamic", "nerve", "robustmpc+sr"] {
            let mut c = Controller::new(config(p), &file(), rungs(), 2.0, Some(30)).unwrap(); // ok: test code
            let mut high = 0;
            for _ in 0..8 {
                high = c.decide(step(20e6, 20.0)).rung;
            }
            let mut low = high;
            for _ in 0..8 {
                low = c.decide(step(0.35e6, 4.0)).rung;
            }
            assert!(high > low, "{p}: high {high} low {low}");
            assert_eq!(low, 0, "{p}");
        }
    }

    #[test]
    fn upscale_follows_the_rung() {
        let mut c = Controller::new(config("nerve"), &file(), rungs(), 2.0, Some(30)).unwrap(); // ok: test code
        let low = c.decide(step(0.3e6, 2.0));
        assert_eq!(low.rung, 0);
        assert_eq!(low.upscale, 3.0);
        // without an enhancer and with plenty of bandwidth: the top rung, no upscale
        let no_sr = Step { enhance_available: false, ..step(20e6, 25.0) };
        for _ in 0..6 {
            c.decide(no_sr);
        }
        let high = c.decide(no_sr);
        assert_eq!(high.rung, 3);
        assert_eq!(high.upscale, 1.0);
        assert_eq!(high.model, "classical");
    }

    #[test]
    fn unknown_policy_and_empty_ladder_are_errors() {
        assert!(Controller::new(config("magic"), &file(), rungs(), 2.0, None).is_err());
        assert!(Controller::new(config("nerve"), &file(), vec![], 2.0, None).is_err());
    }

    #[test]
    fn battery_from_sysfs() {
        let dir = std::env::temp_dir().join(format!("nerveabr-battery-{}", std::process::id()));
        let bat = dir.join("BAT0");
        std::fs::create_dir_all(&bat).unwrap(); // ok: test code
        std::fs::write(bat.join("type"), "Battery\n").unwrap(); // ok: test code
        std::fs::write(bat.join("capacity"), "42\n").unwrap(); // ok: test code
        std::fs::write(bat.join("status"), "Discharging\n").unwrap(); // ok: test code
        assert_eq!(read_battery(&dir), Some(0.42));
        std::fs::write(bat.join("status"), "Charging\n").unwrap(); // ok: test code
        assert_eq!(read_battery(&dir), None);
        std::fs::remove_dir_all(&dir).unwrap(); // ok: test code
        assert_eq!(read_battery(Path::new("/nonexistent/power_supply")), None);
    }
}
