//! The simulator as a step-wise environment, without Python: the core the pyo3 module wraps
//! (and the Rust tests drive). An episode is one [`Session`] of the chunk scenario, the same
//! per-chunk dynamics `nerveabr-sim` plays every other policy with; observations come from
//! `nerve_abr::learned::Features`, the same function the `ppo` policy runs in the element.

use nerve_abr::energy::{EnergyModel, Network};
use nerve_abr::learned::{Action, Features, Reward};
use nerve_abr::nerve::{NerveParams, Preference};
use nerve_abr::spec::{chunk_policy, EnhanceMode, NerveConfig, PolicySpec};
use nerve_abr::{Decision, Ladder, Policy, QualityTable};
use nerveabr_sim::chunk::{ChunkOutcome, ChunkSettings, Session};
use nerveabr_sim::trace::Trace;
use nerveabr_sim::TraceResult;

/// A trace and the radio it was measured on (the energy model's network).
#[derive(Clone, Debug)]
pub struct NetTrace {
    pub trace: Trace,
    pub network: Network,
}

/// Trace augmentation, drawn once per episode from the environment's seeded generator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Augment {
    /// Throughput multiplied by a factor uniform in [lo, hi].
    pub scale: (f64, f64),
    /// Each throughput sample multiplied by max(0.05, 1 + noise x N(0, 1)).
    pub noise: f64,
    /// Start the session at a random point of the trace (the trace wraps around, as the
    /// simulator's link does at its end).
    pub random_start: bool,
}

impl Default for Augment {
    fn default() -> Self {
        Self { scale: (1.0, 1.0), noise: 0.0, random_start: false }
    }
}

impl Augment {
    pub fn is_identity(&self) -> bool {
        self.scale == (1.0, 1.0) && self.noise == 0.0 && !self.random_start
    }

    pub fn apply(&self, t: &Trace, rng: &mut Rng) -> Trace {
        if self.is_identity() || t.points.len() < 2 {
            return t.clone();
        }
        let mut points = t.points.clone();
        if self.random_start {
            let k = 1 + rng.below(points.len() - 1);
            // times of points[k..] keep their gaps; points[..k] follow, shifted past the end
            let t0 = points[k - 1].0;
            let end = points[points.len() - 1].0 - t0;
            let first = points[0].0;
            let mut rotated: Vec<(f64, f64)> = vec![(0.0, points[k - 1].1)];
            rotated.extend(points[k..].iter().map(|&(t, b)| (t - t0, b)));
            rotated.extend(points[1..k].iter().map(|&(t, b)| (end + (t - first), b)));
            points = rotated;
        }
        let factor = self.scale.0 + (self.scale.1 - self.scale.0) * rng.unit();
        for p in &mut points {
            let noise = if self.noise > 0.0 { (1.0 + self.noise * rng.normal()).max(0.05) } else { 1.0 };
            p.1 *= factor * noise;
        }
        Trace { points, ..t.clone() }
    }
}

/// SplitMix64: a small generator whose stream the seed alone fixes (no crate version can change
/// an episode).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.unit() * n as f64) as usize).min(n.saturating_sub(1))
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-300);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// How episodes are drawn: a fixed value, or uniform in a range per episode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Draw {
    Fixed(f64),
    Uniform(f64, f64),
    /// ln x uniform in [ln lo, ln hi) (both > 0): for scales, where 4 -> 8 is as far as 30 -> 60.
    LogUniform(f64, f64),
}

impl Draw {
    fn draw(self, rng: &mut Rng) -> f64 {
        match self {
            Draw::Fixed(x) => x,
            Draw::Uniform(lo, hi) => lo + (hi - lo) * rng.unit(),
            Draw::LogUniform(lo, hi) => (lo.ln() + (hi.ln() - lo.ln()) * rng.unit()).exp(),
        }
    }
}

/// The `nerve` planner's (and shielded `ppo`'s) settings in the chunk scenario, as the
/// simulator's command line and the element build them.
pub fn chunk_nerve(preference: Preference, battery: Option<f64>) -> NerveConfig {
    NerveConfig { params: NerveParams::chunk(), preference, battery, ppo_model: None, ppo_shield: true }
}

/// Everything an environment is made of.
#[derive(Clone, Debug)]
pub struct EnvConfig {
    pub ladder: Ladder,
    pub table: QualityTable,
    /// Chunk scenario settings; the energy model's radio is each trace's.
    pub settings: ChunkSettings,
    pub reward: Reward,
    /// Preference weight per episode (0 quality .. 1 battery saver).
    pub preference: Draw,
    /// Battery level per episode; `None` = on mains.
    pub battery: Option<Draw>,
    /// The player's buffer cap per episode, seconds (the chunk scenario's is 60; a player's
    /// may be 4 or 30: the policy sees how full the buffer is).
    pub buffer_cap: Draw,
    pub augment: Augment,
    /// A named policy of the simulator (`nerve`, `bones`) that advises on every step, for
    /// imitation (DAgger): its choice at each observation, whatever is played.
    pub teacher: Option<PolicySpec>,
    /// Chunk durations (s) drawn per episode, the session keeping its length in seconds (the
    /// table's compute times rescaled, as the element rescales them to a stream's segments);
    /// empty = the table's own. Streams come in 1-6 s segments; the chunk scenario's are 4 s.
    pub chunk_choices: Vec<f64>,
    /// Other tables of the same ladder (content types: talking heads, sports, animation...),
    /// each episode playing one of `table` and these, uniformly: a policy that reads the table as
    /// features and met one table only in training reads any other (a content type, a
    /// re-measured table) as something it never saw. Empty: `table` only.
    pub alternatives: Vec<nerve_abr::quality::TableFile>,
    /// The table file and device speed, to rebuild the table at another chunk duration.
    file: nerve_abr::quality::TableFile,
    device_speed: f64,
}

impl EnvConfig {
    /// The chunk scenario's defaults with `table` (its rungs give the ladder, as `nerveabr-sim`
    /// reads a table).
    pub fn new(file: &nerve_abr::quality::TableFile, device_speed: f64) -> Self {
        let ladder = Ladder {
            bitrates_bps: file.rungs.iter().map(|r| r.bitrate_kbps * 1000.0).collect(),
            chunk: std::time::Duration::from_secs_f64(file.chunk_s),
        };
        Self {
            ladder,
            table: QualityTable::from_file(file, device_speed),
            settings: ChunkSettings::default(),
            reward: Reward::default(),
            preference: Draw::Uniform(0.0, 1.0),
            battery: None,
            buffer_cap: Draw::Fixed(ChunkSettings::default().buffer_cap_s),
            augment: Augment::default(),
            teacher: None,
            chunk_choices: Vec::new(),
            alternatives: Vec::new(),
            file: file.clone(),
            device_speed,
        }
    }

    /// Adds tables drawn per episode beside the main one; each must have the main table's rungs
    /// (the same bitrates, in order) and chunk duration, as the policy's action space and the
    /// ladder are the main table's.
    pub fn with_alternatives(mut self, files: Vec<nerve_abr::quality::TableFile>) -> Result<Self, String> {
        let rates = |f: &nerve_abr::quality::TableFile| f.rungs.iter().map(|r| r.bitrate_kbps).collect::<Vec<_>>();
        for f in &files {
            if rates(f) != rates(&self.file) || (f.chunk_s - self.file.chunk_s).abs() > 1e-9 {
                return Err(format!(
                    "table {:?}: rungs {:?} kbit/s of {} s chunks, the main table has {:?} of {} s",
                    f.name,
                    rates(f),
                    f.chunk_s,
                    rates(&self.file),
                    self.file.chunk_s
                ));
            }
        }
        self.alternatives = files;
        Ok(self)
    }

    /// The ladder, the table and the chunk count of a session of `chunk_s` chunks, as long in
    /// seconds as the configured one; `which` 0 is the main table, k the k-th alternative.
    fn at_chunk(&self, which: usize, chunk_s: f64) -> (Ladder, QualityTable, usize) {
        let base = self.ladder.chunk_s();
        if which == 0 && (chunk_s - base).abs() < 1e-9 {
            return (self.ladder.clone(), self.table.clone(), self.settings.chunks);
        }
        let mut file = if which == 0 { self.file.clone() } else { self.alternatives[which - 1].clone() };
        file.chunk_s = chunk_s;
        let ladder = Ladder { bitrates_bps: self.ladder.bitrates_bps.clone(), chunk: std::time::Duration::from_secs_f64(chunk_s) };
        let chunks = ((self.settings.chunks as f64 * base / chunk_s).round() as usize).max(2);
        (ladder, QualityTable::from_file(&file, self.device_speed), chunks)
    }

    /// The session settings for a trace's network and the episode's preference (battery saver
    /// downloads in bursts, as the simulator and the element do it).
    fn settings_for(&self, network: Network, preference: Preference) -> ChunkSettings {
        ChunkSettings { energy: EnergyModel::new(network), resume_below_s: nerve_abr::energy::resume_below_s(preference), ..self.settings.clone() }
    }
}

/// One step's result.
#[derive(Clone, Debug)]
pub struct StepOut {
    pub obs: Vec<f32>,
    pub reward: f64,
    pub terminated: bool,
    pub outcome: ChunkOutcome,
    /// The chunk's quality-QoE term (the session's `qoe_quality` is their sum / (chunks - 1)).
    pub qoe: f64,
}

struct Episode {
    session: Session,
    features: Features,
    trace: usize,
    /// The teacher, built per episode at its preference and battery. It decides on every
    /// observation in turn (its own state, such as a throughput error history, follows the
    /// session whatever the learner plays), and `advice` is its choice for the next chunk.
    /// In a mutex only so the environment is `Sync`, as a Python class must be.
    teacher: Option<std::sync::Mutex<Box<dyn Policy>>>,
    advice: Option<Decision>,
}

impl Episode {
    fn advise(&mut self) {
        self.advice = match (&mut self.teacher, self.session.done()) {
            (Some(t), false) => {
                let t = t.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
                Some(t.decide(&self.session.observation()))
            }
            _ => None,
        };
    }
}

/// The environment.
pub struct Env {
    pub config: EnvConfig,
    pub traces: Vec<NetTrace>,
    rng: Rng,
    next_trace: usize,
    episode: Option<Episode>,
}

impl Env {
    pub fn new(config: EnvConfig, traces: Vec<NetTrace>, seed: u64) -> Result<Self, String> {
        if traces.is_empty() {
            return Err("no traces".into());
        }
        if config.ladder.rungs() == 0 {
            return Err("the quality table has no rung".into());
        }
        if let Some(spec) = &config.teacher {
            // only a policy that chooses (rung, level) together can be imitated action for
            // action; `ppo` would imitate itself
            match chunk_policy(spec, &config.table, &NerveConfig::default()) {
                Ok((_, EnhanceMode::Joint)) if spec.base != "ppo" => {}
                Ok(_) => return Err(format!("teacher {:?}: not a policy that picks the enhancement with the rung (nerve, bones)", spec.base)),
                Err(e) => return Err(format!("teacher: {e}")),
            }
        }
        Ok(Self { config, traces, rng: Rng::new(seed), next_trace: 0, episode: None })
    }

    fn features(&self) -> Features {
        Features::new(self.config.table.clone(), self.config.ladder.rungs())
    }

    pub fn obs_dim(&self) -> usize {
        self.features().dim()
    }

    pub fn action(&self) -> Action {
        self.features().action()
    }

    pub fn seed(&mut self, seed: u64) {
        self.rng = Rng::new(seed);
    }

    /// Start an episode: on `trace` (an index) or one drawn at random, with the preference and
    /// battery given or drawn. Plays the session's fixed first chunk and returns the first
    /// observation.
    pub fn reset(&mut self, trace: Option<usize>, preference: Option<f64>, battery: Option<Option<f64>>) -> Vec<f32> {
        let idx = trace.unwrap_or_else(|| self.rng.below(self.traces.len())) % self.traces.len();
        self.next_trace = idx + 1;
        let preference = preference.unwrap_or_else(|| self.config.preference.draw(&mut self.rng)).clamp(0.0, 1.0);
        let battery = battery.unwrap_or_else(|| self.config.battery.map(|d| d.draw(&mut self.rng).clamp(0.0, 1.0)));
        let nt = &self.traces[idx];
        let trace = self.config.augment.apply(&nt.trace, &mut self.rng);
        let mut settings = self.config.settings_for(nt.network, Preference::of_weight(preference));
        settings.buffer_cap_s = self.config.buffer_cap.draw(&mut self.rng).max(1.0);
        let chunk_s = match self.config.chunk_choices.len() {
            0 => self.config.ladder.chunk_s(),
            n => self.config.chunk_choices[self.rng.below(n)],
        };
        // the table is drawn last, so a configuration without alternatives draws what it drew
        // before they existed
        let which = match self.config.alternatives.len() {
            0 => 0,
            n => self.rng.below(n + 1),
        };
        let (ladder, table, chunks) = self.config.at_chunk(which, chunk_s);
        settings.chunks = chunks;
        let mut session = Session::new(&ladder, &table, &trace, EnhanceMode::Joint, &settings);
        let first = session.first_decision();
        session.step(first);
        let mut features = Features::new(table.clone(), ladder.rungs());
        features.battery = battery;
        features.preference = preference;
        let obs = features.observe(&session.observation());
        let teacher = self.config.teacher.as_ref().map(|spec| {
            let nerve = chunk_nerve(Preference::of_weight(preference), battery);
            // checked in `new`: a joint policy that builds without a model
            chunk_policy(spec, &table, &nerve).map(|(p, _)| std::sync::Mutex::new(p))
        });
        let teacher = teacher.transpose().unwrap_or(None);
        let mut ep = Episode { session, features, trace: idx, teacher, advice: None };
        ep.advise();
        self.episode = Some(ep);
        obs
    }

    /// The teacher's choice for the next chunk, as an action index (`None` without a teacher
    /// or after the episode's end).
    pub fn advice(&self) -> Option<usize> {
        let d = self.episode.as_ref()?.advice?;
        Some(self.action().index(d))
    }

    pub fn preference(&self) -> Option<f64> {
        self.episode.as_ref().map(|e| e.features.preference)
    }

    pub fn battery(&self) -> Option<f64> {
        self.episode.as_ref().and_then(|e| e.features.battery)
    }

    pub fn trace_index(&self) -> Option<usize> {
        self.episode.as_ref().map(|e| e.trace)
    }

    /// Play one chunk at `action` (an index over (rung, level)).
    pub fn step(&mut self, action: usize) -> Result<StepOut, String> {
        let d = self.action().decision(action);
        self.step_decision(d)
    }

    /// Play one chunk at `decision`.
    pub fn step_decision(&mut self, d: Decision) -> Result<StepOut, String> {
        let reward = self.config.reward;
        let ep = self.episode.as_mut().ok_or("step before reset")?;
        if ep.session.done() {
            return Err("step after the episode ended; call reset".into());
        }
        ep.features.record(d);
        let outcome = ep.session.step(d);
        ep.advise();
        let terminated = ep.session.done();
        let obs = if terminated { ep.features.vector(&ep.session.observation()) } else { ep.features.observe(&ep.session.observation()) };
        let qoe = reward.qoe(outcome.quality, outcome.quality_change, outcome.rebuffer_s);
        let r = reward.of(ep.features.preference, outcome.quality, outcome.quality_change, outcome.rebuffer_s, outcome.energy_j);
        Ok(StepOut { obs, reward: r, terminated, outcome, qoe })
    }

    /// The episode's scores so far (the whole session's once it ended): the same
    /// [`TraceResult`] `nerveabr-sim` reports.
    pub fn result(&self) -> Option<TraceResult> {
        self.episode.as_ref().map(|e| e.session.result())
    }

    /// Play a whole episode on trace `trace` with a named policy (`nerve`, `bola`, `rb+sr`, ...)
    /// built as the simulator and the element build it, at this environment's table and
    /// settings (no augmentation): the comparison for the learned policy.
    pub fn run_policy(&self, name: &str, trace: usize, preference: Preference, battery: Option<f64>) -> Result<TraceResult, String> {
        let spec: PolicySpec = name.parse()?;
        let nerve = chunk_nerve(preference, battery);
        let (mut policy, mode) = chunk_policy(&spec, &self.config.table, &nerve)?;
        Ok(self.run_with(policy.as_mut(), mode, trace, preference))
    }

    /// Play a whole episode on trace `trace` with `policy`, at `preference`'s session settings.
    pub fn run_with(&self, policy: &mut dyn Policy, mode: EnhanceMode, trace: usize, preference: Preference) -> TraceResult {
        let nt = &self.traces[trace % self.traces.len()];
        let settings = self.config.settings_for(nt.network, preference);
        nerveabr_sim::chunk::run(&self.config.ladder, &self.config.table, &nt.trace, policy, mode, &settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nerve_abr::learned::HISTORY;
    use nerve_abr::quality::TableFile;
    use nerve_abr::DEFAULT_TABLE;
    use std::path::Path;

    fn traces() -> Vec<NetTrace> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/traces/3g_hsdpa_norway/pensieve_test_cooked_3gp");
        let (t, _) = nerveabr_sim::trace::read_dir(&dir).expect("the shared Norway 3G test traces");
        t.into_iter().take(6).map(|trace| NetTrace { trace, network: Network::Hspa3g }).collect()
    }

    fn env() -> Env {
        let file = TableFile::parse(DEFAULT_TABLE).unwrap(); // ok: test code
        Env::new(EnvConfig::new(&file, 1.0), traces(), 7).unwrap() // ok: test code
    }

    /// The "not a copy" guarantee: stepping the environment with the `nerve` planner's own
    /// choices reproduces `nerveabr-sim`'s session for that planner exactly: every score of the
    /// TraceResult, and the per-step QoE terms add up to its qoe_quality.
    #[test]
    fn stepping_with_the_planners_choices_reproduces_the_simulator() {
        let mut env = env();
        for pref in [Preference::Quality, Preference::BatterySaver] {
            for k in 0..env.traces.len() {
                let expected = env.run_policy("nerve", k, pref, None).unwrap(); // ok: test code
                // the same planner, deciding on the environment's session
                let nerve = chunk_nerve(pref, None);
                let (mut planner, _) = chunk_policy(&"nerve".parse().unwrap(), &env.config.table, &nerve).unwrap(); // ok: test code
                env.reset(Some(k), Some(pref.weight()), Some(None));
                let mut qoe = 0.0;
                let mut energy = 0.0;
                let mut steps = 0;
                loop {
                    let d = {
                        let ep = env.episode.as_ref().unwrap(); // ok: test code
                        planner.decide(&ep.session.observation())
                    };
                    let out = env.step_decision(d).unwrap(); // ok: test code
                    qoe += out.qoe;
                    energy += out.outcome.energy_j;
                    steps += 1;
                    if out.terminated {
                        break;
                    }
                }
                let got = env.result().unwrap(); // ok: test code
                assert_eq!(steps, env.config.settings.chunks - 1);
                assert_eq!(format!("{got:?}"), format!("{expected:?}"), "trace {k}, {pref:?}");
                assert!((qoe / steps as f64 - expected.qoe_quality).abs() < 1e-9, "per-step QoE {} vs {}", qoe / steps as f64, expected.qoe_quality);
                // per-chunk energy adds up to the session's, but for the first (unscored) chunk's
                assert!(energy < expected.energy_j && energy > 0.8 * expected.energy_j, "{energy} of {}", expected.energy_j);
            }
        }
    }

    /// Following the teacher's advice at every step plays the teacher's own session; and it
    /// keeps advising, on the session it sees, when the learner plays something else.
    #[test]
    fn the_teachers_advice_followed_is_the_teachers_session() {
        let mut env = env();
        env.config.teacher = Some("nerve".parse().unwrap()); // ok: test code
        for (k, pref) in [(0, Preference::Quality), (3, Preference::BatterySaver)] {
            let expected = env.run_policy("nerve", k, pref, None).unwrap(); // ok: test code
            env.reset(Some(k), Some(pref.weight()), Some(None));
            while let Some(a) = env.advice() {
                env.step(a).unwrap(); // ok: test code
            }
            assert_eq!(format!("{:?}", env.result().unwrap()), format!("{expected:?}"), "trace {k}, {pref:?}"); // ok: test code
        }
        // always the lowest rung: the teacher still advises each step, and asks for more
        env.reset(Some(1), Some(0.0), Some(None));
        let (mut advised, mut higher) = (0, 0);
        while let Some(a) = env.advice() {
            advised += 1;
            higher += usize::from(env.action().decision(a).rung > 0);
            env.step(0).unwrap(); // ok: test code
        }
        assert_eq!(advised, env.config.settings.chunks - 1);
        assert!(higher > 0, "the planner never asked for more than the lowest rung on a buffer that fills");
        // a teacher that cannot be imitated action for action is refused
        let file = TableFile::parse(DEFAULT_TABLE).unwrap(); // ok: test code
        let mut config = EnvConfig::new(&file, 1.0);
        config.teacher = Some("bola".parse().unwrap()); // ok: test code
        assert!(Env::new(config, traces(), 1).is_err());
    }

    #[test]
    fn observations_have_the_layout_and_rewards_follow_the_preference() {
        let mut env = env();
        let obs = env.reset(Some(0), Some(0.0), Some(Some(0.5)));
        assert_eq!(obs.len(), env.obs_dim());
        let n = obs.len();
        assert_eq!(&obs[n - 6..n - 3], &[0.5, 1.0, 0.0], "battery level, on battery, preference weight");
        // the same chunk choices at weight 0 and 1: rewards differ by exactly the priced energy
        let top = env.action().index(Decision { rung: 0, level: 1 });
        let a = env.step(top).unwrap(); // ok: test code
        env.reset(Some(0), Some(1.0), Some(Some(0.5)));
        let b = env.step(top).unwrap(); // ok: test code
        assert_eq!(a.outcome, b.outcome);
        assert!(a.outcome.level == 1 && a.outcome.energy_j > 0.0, "{:?}", a.outcome);
        let priced = env.config.reward.scale * env.config.reward.energy_price * a.outcome.energy_j;
        assert!((a.reward - b.reward - priced).abs() < 1e-12);
        // the next-to-last feature is how full the buffer is: the same buffer reads fuller under
        // a 4 s cap; the last, its change since the previous decision (none at the first)
        let buffer_s = |o: &[f32]| o[0] as f64 * 60.0;
        let at_60 = env.reset(Some(2), Some(0.0), Some(None));
        env.config.buffer_cap = Draw::Fixed(4.0);
        let at_4 = env.reset(Some(2), Some(0.0), Some(None));
        assert_eq!(at_60[0], at_4[0], "the same first chunk, the same buffer");
        assert!((at_60[n - 2] as f64 - buffer_s(&at_60) / 60.0).abs() < 1e-6, "{at_60:?}");
        assert!((at_4[n - 2] as f64 - (buffer_s(&at_4) / 4.0).min(1.0)).abs() < 1e-6 && at_4[n - 2] > at_60[n - 2], "{at_4:?}");
        assert_eq!(at_4[n - 1], 0.0);
        let next = env.step(0).unwrap().obs; // ok: test code
        let change = (buffer_s(&next) - buffer_s(&at_4)) / env.config.ladder.chunk_s();
        assert!((next[n - 1] as f64 - change.clamp(-4.0, 1.0)).abs() < 1e-5, "{} vs {change}", next[n - 1]);

        // 1 s chunks: a session as long in seconds (4 x the chunks), the same rung read as the
        // same bitrate, and the teacher follows along
        env.config.chunk_choices = vec![1.0];
        env.config.teacher = Some("nerve".parse().unwrap()); // ok: test code
        let one = env.reset(Some(2), Some(0.0), Some(None));
        let rates = 3 + 2 * HISTORY;
        assert_eq!(&one[rates..rates + 6], &at_60[rates..rates + 6], "sizes per second of video do not depend on the chunk");
        let mut steps = 0;
        while let Some(a) = env.advice() {
            env.step(a).unwrap(); // ok: test code
            steps += 1;
        }
        assert_eq!(steps, 4 * env.config.settings.chunks - 1);
        assert_eq!(env.result().map(|r| r.rebuffer_s), Some(0.0), "the planner does not stall on 1 s chunks of this trace");
    }

    /// With alternative tables each episode reads one of them in its features (the table block),
    /// and sees every one over a few episodes; a table of another ladder is refused.
    #[test]
    fn episodes_draw_their_table_among_the_alternatives() {
        let read = |name: &str| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nerve-abr/tables").join(name);
            TableFile::parse(&std::fs::read_to_string(&path).unwrap()).unwrap() // ok: test code
        };
        let generic = TableFile::parse(DEFAULT_TABLE).unwrap(); // ok: test code
        let animation = read("pensieve_animation_nervesr.json");
        let at = 3 + 2 * HISTORY + 6; // the table block: quality per (rung, level) / 100
        // what an environment of that one table shows
        let block = |t: &TableFile| {
            let mut one = Env::new(EnvConfig::new(t, 1.0), traces(), 1).unwrap(); // ok: test code
            one.reset(Some(0), Some(0.5), Some(None))[at..at + 12].to_vec()
        };
        let (g, a) = (block(&generic), block(&animation));
        let config = EnvConfig::new(&generic, 1.0).with_alternatives(vec![animation]).unwrap(); // ok: test code
        let mut env = Env::new(config, traces(), 11).unwrap(); // ok: test code
        assert_ne!(g, a, "the two tables differ in the features");
        let seen: Vec<bool> = (0..12).map(|_| env.reset(None, Some(0.5), Some(None))[at..at + 12].to_vec()).map(|b| {
            assert!(b == g || b == a, "a table block that is neither table's: {b:?}");
            b == g
        }).collect();
        assert!(seen.iter().any(|&x| x) && seen.iter().any(|&x| !x), "12 episodes read one table only: {seen:?}");
        // another ladder (a rung dropped) is refused with the reason
        let mut short = read("pensieve_sports_nervesr.json");
        short.rungs.pop();
        let err = EnvConfig::new(&generic, 1.0).with_alternatives(vec![short]).unwrap_err(); // ok: test code
        assert!(err.contains("rungs"), "{err}");
    }

    #[test]
    fn augmentation_is_seeded_and_changes_the_link() {
        let t = traces().remove(0);
        let aug = Augment { scale: (0.5, 1.5), noise: 0.2, random_start: true };
        let a = aug.apply(&t.trace, &mut Rng::new(1));
        let b = aug.apply(&t.trace, &mut Rng::new(1));
        let c = aug.apply(&t.trace, &mut Rng::new(2));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.points.len(), t.trace.points.len());
        assert!(a.points.windows(2).all(|w| w[0].0 <= w[1].0), "time never goes back");
        assert!(a.points.iter().all(|p| p.1 > 0.0 || t.trace.points.iter().any(|q| q.1 == 0.0)));
        assert_eq!(Augment::default().apply(&t.trace, &mut Rng::new(3)), t.trace);
    }
}
