//! The learned policy (PPO): what it sees, what it chooses, and what it is rewarded for.
//!
//! One feature function ([`Features`]) serves both sides: the training environment
//! (nerveabr-py, over the simulator) builds its observations with it, and the [`Ppo`] policy
//! the element and the simulator run builds its network input with it, so the actor sees in the
//! element exactly what it saw in training. Features depend only on what both the simulator and
//! the element know at a decision: the buffer, the newest throughput measurement, the ladder,
//! whether an enhancer runs, the quality table, the battery, the viewer's preference and the
//! policy's own past decisions. Not on the enhancement backlog, the request latency or the
//! stream's length, which the element does not know (nervesr reports no queue; live streams
//! have no end).
//!
//! Actions are one index over (rung, level): `rung * levels + level` ([`Action`]).
//!
//! The reward ([`Reward`]) is the chunk scenario's quality QoE per chunk (displayed quality,
//! minus its change, minus 100 points per second of stall), minus the chunk's device energy
//! priced by the preference weight: one policy serves every preference because the weight is
//! also an input.

use crate::nerve::{Nerve, Preference};
use crate::{Decision, Ladder, Observation, Policy, QualityTable};

/// Throughput and download-time samples kept, newest last.
pub const HISTORY: usize = 8;
/// Buffer, seconds, that maps to 1.0 (the chunk scenario's cap).
const BUFFER_NORM_S: f64 = 60.0;
/// Throughput and chunk size scale: Mbit/s and Mbit over this.
const MBIT_NORM: f64 = 10.0;
/// Quality (VMAF) scale.
const QUALITY_NORM: f64 = 100.0;
/// Enhancement speed (compute seconds per second of video) is clipped here: a level slower than
/// 4x real time is as unusable as an absent one.
const SPEED_CLIP: f64 = 4.0;

/// VMAF points one joule of device energy (the energy model's: radio, decoder, enhancement)
/// costs at preference weight 1. Set in November to the `nerve` planner's battery-saver price
/// for enhancement energy then (0.5); the planner's price is now chosen leave-one-family-out
/// (`NerveParams::saver_energy_price`, 0.17) and prices its own 15 W planning estimate of
/// enhancement alone, so the two no longer coincide. The shipped policy trained with 0.5.
pub const ENERGY_PRICE_PER_J: f64 = 0.5;
/// Reward = this x (QoE points - priced energy): about one per chunk.
pub const REWARD_SCALE: f64 = 0.01;

impl Preference {
    /// The preference as the learned policy's weight on energy: 0 (quality) .. 1 (battery saver).
    pub fn weight(self) -> f64 {
        match self {
            Preference::Quality => 0.0,
            Preference::Balanced => 0.5,
            Preference::BatterySaver => 1.0,
        }
    }

    /// The nearest preference to a weight.
    pub fn of_weight(w: f64) -> Self {
        if w < 0.25 {
            Preference::Quality
        } else if w < 0.75 {
            Preference::Balanced
        } else {
            Preference::BatterySaver
        }
    }
}

/// Action index <-> (rung, level) for a ladder of `rungs` and a table of `levels` (level 0 =
/// classical upscale).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action {
    pub rungs: usize,
    pub levels: usize,
}

impl Action {
    pub fn count(&self) -> usize {
        self.rungs * self.levels
    }

    pub fn decision(&self, index: usize) -> Decision {
        let levels = self.levels.max(1);
        let index = index.min(self.count().saturating_sub(1));
        Decision { rung: index / levels, level: index % levels }
    }

    pub fn index(&self, d: Decision) -> usize {
        d.rung.min(self.rungs.saturating_sub(1)) * self.levels + d.level.min(self.levels.saturating_sub(1))
    }
}

/// The policy's state for its features, and the feature function.
///
/// Layout of [`Features::vector`] (R rungs, L levels including level 0, H = [`HISTORY`]):
///
/// | offset | length | feature |
/// |---|---|---|
/// | 0 | 1 | buffer / 60 s |
/// | 1 | H | throughput of the last H downloads, Mbit/s / 10, oldest first, 0 = none yet |
/// | 1+H | H | download time of the last H downloads / chunk duration, 0 = none yet |
/// | 1+2H | 1 | quality of the last chunk this policy chose / 100 (0 before its first) |
/// | 2+2H | 1 | rung of that chunk / (R - 1) (0 before its first) |
/// | 3+2H | R | next chunk's bitrate per rung (its size / the chunk duration), Mbit/s / 10 |
/// | 3+2H+R | R·L | quality per (rung, level) / 100, rung-major; 0 where the table has none |
/// | 3+2H+R+RL | R·(L-1) | enhancement speed per (rung, level ≥ 1): compute s per video s, clipped at 4 (4 = unavailable) |
/// | 3+2H+R+RL+R(L-1) | 1 | battery level 0..1 (1 on mains) |
/// | +1 | 1 | 1 on battery, 0 on mains |
/// | +2 | 1 | preference weight 0 (quality) .. 1 (battery saver) |
/// | +3 | 1 | 1 if an enhancer runs now |
/// | +4 | 1 | buffer / the player's buffer cap, 0..1 (how full: a 4 s cap and a 60 s one differ) |
/// | +5 | 1 | buffer change since the previous decision / chunk duration, clipped to -4..1 (0 at the first): whether the buffer falls, which the planner's low-buffer fallback acts on |
#[derive(Clone, Debug)]
pub struct Features {
    table: QualityTable,
    rungs: usize,
    levels: usize,
    /// Battery level 0..=1, `None` on mains.
    pub battery: Option<f64>,
    /// Preference weight 0..=1 ([`Preference::weight`]).
    pub preference: f64,
    tput_mbps: Vec<f64>,
    download_s: Vec<f64>,
    last: Option<Decision>,
    /// Buffer at the previous decision, s, and the change since it, in chunk durations.
    last_buffer: Option<f64>,
    buffer_change: f64,
    /// Enhancement speed per (rung, level), compute s per video s, when the policy reads its
    /// training table's ([`Features::trained_on`]); `None`: the table's costs.
    speeds: Option<Vec<Vec<f64>>>,
}

impl Features {
    /// `rungs` is the ladder's length; the table is the one the policy decides with (its rows
    /// beyond the ladder are ignored, missing ones count as unavailable).
    pub fn new(table: QualityTable, rungs: usize) -> Self {
        let levels = table.levels().max(1);
        Self { table, rungs, levels, battery: None, preference: 0.5, tput_mbps: Vec::new(), download_s: Vec::new(), last: None, last_buffer: None, buffer_change: 0.0, speeds: None }
    }

    /// The features of a policy trained on one table (`file`, [`training_table`]): the qualities
    /// and enhancement speeds it read in training, in place of this table's, whose rungs and
    /// levels it must have. The network met those entries as constants, and read any others as
    /// inputs it never saw (a re-measured table kept the shipped policy on the lowest rung; so
    /// did another device's speeds); the stream's own table still prices and shields.
    pub fn trained_on(mut self, file: &crate::quality::TableFile) -> Result<Self, String> {
        // chunk_s 1: the costs are compute seconds per second of video, what the feature reads
        let per_second = crate::quality::TableFile { chunk_s: 1.0, ..file.clone() };
        let trained = QualityTable::from_file(&per_second, 1.0);
        self.table = self.table.with_quality_of(&trained)?;
        self.speeds = Some(trained.compute_s);
        Ok(self)
    }

    pub fn action(&self) -> Action {
        Action { rungs: self.rungs, levels: self.levels }
    }

    /// Length of [`vector`](Self::vector).
    pub fn dim(&self) -> usize {
        let (r, l) = (self.rungs, self.levels);
        3 + 2 * HISTORY + r + r * l + r * (l - 1) + 6
    }

    /// Forget the session (a new stream).
    pub fn reset(&mut self) {
        self.tput_mbps.clear();
        self.download_s.clear();
        self.last = None;
        self.last_buffer = None;
        self.buffer_change = 0.0;
    }

    /// Take in the newest measurement of `obs` (one per decision: the download just finished)
    /// and return the network input for this decision. Call once per decision, then
    /// [`record`](Self::record) the decision made.
    pub fn observe(&mut self, obs: &Observation<'_>) -> Vec<f32> {
        if let Some(&bps) = obs.recent_bps.last() {
            let mbps = bps / 1e6;
            // the chunk just downloaded is the one this policy chose last (unknown before that)
            let dl = match self.last {
                Some(d) if bps > 0.0 => obs.next_sizes_bits.get(d.rung).map_or(0.0, |b| b / bps / obs.ladder.chunk_s().max(1e-9)),
                _ => 0.0,
            };
            push(&mut self.tput_mbps, mbps);
            push(&mut self.download_s, dl);
        }
        let buffer = buffered_s(obs);
        self.buffer_change = self.last_buffer.map_or(0.0, |b| (buffer - b) / obs.ladder.chunk_s().max(1e-9));
        self.last_buffer = Some(buffer);
        self.vector(obs)
    }

    /// The decision this policy made (after [`observe`](Self::observe)).
    pub fn record(&mut self, d: Decision) {
        self.last = Some(d);
    }

    /// The network input for `obs` from the state as it is (no measurement taken in).
    pub fn vector(&self, obs: &Observation<'_>) -> Vec<f32> {
        let (r, l) = (self.rungs, self.levels);
        let mut v: Vec<f64> = Vec::with_capacity(self.dim());
        let buffer = buffered_s(obs);
        v.push(buffer / BUFFER_NORM_S);
        padded(&mut v, &self.tput_mbps, 1.0 / MBIT_NORM);
        padded(&mut v, &self.download_s, 1.0);
        match self.last {
            Some(d) => {
                v.push(self.table.get(d.rung, d.level).unwrap_or(self.table.base(d.rung)) / QUALITY_NORM);
                v.push(d.rung as f64 / (r.max(2) - 1) as f64);
            }
            None => v.extend([0.0, 0.0]),
        }
        // per second of video: a 1 s and a 4 s segment of the same rung look the same (a policy
        // trained on 4 s chunks read a 1 s ladder's sizes as four times cheaper rungs)
        let chunk_s = obs.ladder.chunk_s().max(1e-9);
        for rung in 0..r {
            v.push(obs.next_sizes_bits.get(rung).copied().unwrap_or(0.0) / chunk_s / 1e6 / MBIT_NORM);
        }
        for rung in 0..r {
            for level in 0..l {
                v.push(self.table.get(rung, level).unwrap_or(0.0) / QUALITY_NORM);
            }
        }
        for rung in 0..r {
            for level in 1..l {
                let speed = match (&self.speeds, self.table.get(rung, level)) {
                    (_, None) => SPEED_CLIP,
                    (Some(s), Some(_)) => s.get(rung).and_then(|x| x.get(level)).copied().unwrap_or(SPEED_CLIP),
                    (None, Some(_)) => self.table.cost(rung, level) / chunk_s,
                };
                v.push(if speed.is_finite() { speed.clamp(0.0, SPEED_CLIP) } else { SPEED_CLIP });
            }
        }
        v.push(self.battery.unwrap_or(1.0));
        v.push(if self.battery.is_some() { 1.0 } else { 0.0 });
        v.push(self.preference);
        v.push(if obs.enhance_available { 1.0 } else { 0.0 });
        let cap = obs.buffer_cap.as_secs_f64();
        v.push(if cap > 0.0 { (buffer / cap).clamp(0.0, 1.0) } else { 1.0 });
        v.push(self.buffer_change.clamp(-4.0, 1.0));
        debug_assert_eq!(v.len(), self.dim());
        v.into_iter().map(|x| if x.is_finite() { x as f32 } else { 0.0 }).collect()
    }
}

/// The buffer as the features read it: at most the player's cap. The simulator never decides
/// with more buffered than its cap; a demuxer that counts a fragment still arriving can report
/// more (4.9 s under a 4 s max-buffering-time in the live DASH test), which the policy never saw
/// in training and read as a reason to stay on the lowest rung.
fn buffered_s(obs: &Observation<'_>) -> f64 {
    let (b, cap) = (obs.buffer.as_secs_f64(), obs.buffer_cap.as_secs_f64());
    if cap > 0.0 { b.min(cap) } else { b }
}

fn push(h: &mut Vec<f64>, x: f64) {
    h.push(x);
    if h.len() > HISTORY {
        h.remove(0);
    }
}

/// `h` (newest last) scaled, left-padded with zeros to [`HISTORY`].
fn padded(v: &mut Vec<f64>, h: &[f64], scale: f64) {
    v.extend(std::iter::repeat_n(0.0, HISTORY - h.len().min(HISTORY)));
    v.extend(h.iter().rev().take(HISTORY).rev().map(|x| x * scale));
}

/// The multi-objective reward of one chunk, from the simulator's per-chunk terms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reward {
    /// Quality points per second of stall (the chunk scenario's `stall_penalty`).
    pub stall_penalty: f64,
    /// VMAF points per joule at weight 1.
    pub energy_price: f64,
    pub scale: f64,
}

impl Default for Reward {
    fn default() -> Self {
        Self { stall_penalty: 100.0, energy_price: ENERGY_PRICE_PER_J, scale: REWARD_SCALE }
    }
}

impl Reward {
    /// The chunk's quality QoE term: what it adds to the session's `qoe_quality` x (chunks - 1).
    pub fn qoe(&self, quality: f64, quality_change: f64, rebuffer_s: f64) -> f64 {
        quality - quality_change - self.stall_penalty * rebuffer_s
    }

    /// The reward for a chunk at preference weight `weight`.
    pub fn of(&self, weight: f64, quality: f64, quality_change: f64, rebuffer_s: f64, energy_j: f64) -> f64 {
        self.scale * (self.qoe(quality, quality_change, rebuffer_s) - weight * self.energy_price * energy_j)
    }
}

/// What turns a network input into action scores (the actor's logits).
pub trait Actor: Send {
    fn scores(&mut self, input: &[f32]) -> Result<Vec<f32>, String>;
}

/// Where a stream's rungs sit among the rows of the table the policy was trained on.
///
/// The network has one input slot and one action per (row, level) of its training table; a
/// stream offers some of those rows (each rung at the row of the nearest bitrate, as the element
/// picks its quality rows). The policy then decides in row space: rows the stream lacks are shown
/// at their nominal cost, as the training ladder had them, and are never chosen (their actions
/// are masked). On the training ladder itself the map is the identity and changes nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct Rows {
    /// The row of each rung of the stream.
    pub of_rung: Vec<usize>,
    /// The nominal bitrate of every row, bit/s.
    pub row_bps: Vec<f64>,
}

impl Rows {
    /// `of_rung` must name rows of `row_bps` (a table whose rows are not in bitrate order maps
    /// a sorted ladder out of order: allowed, as every other policy allows it).
    pub fn new(of_rung: Vec<usize>, row_bps: Vec<f64>) -> Result<Self, String> {
        if of_rung.is_empty() || of_rung.iter().any(|&r| r >= row_bps.len()) {
            return Err(format!("rung rows {of_rung:?}: not rows of a {}-row table", row_bps.len()));
        }
        Ok(Self { of_rung, row_bps })
    }

    /// The stream's rung for a row it offers (the highest rung at that row).
    fn rung_of(&self, row: usize) -> Option<usize> {
        self.of_rung.iter().rposition(|&r| r == row)
    }

    /// The offered row nearest to `row` from below (a policy that wants more than the stream
    /// offers gets the most it offers), or the lowest offered one.
    fn nearest_offered(&self, row: usize) -> usize {
        self.of_rung.iter().copied().filter(|&r| r <= row).max().unwrap_or(self.of_rung[0])
    }
}

/// The learned policy: the actor's highest-scoring (rung, level) on [`Features`], optionally
/// shielded by the `nerve` planner's hard stall constraint.
///
/// The shield (safe reinforcement learning's "shield", Alshiekh et al., AAAI 2018): a planner
/// runs beside the actor on the same observations and names the highest rung it holds safe
/// ([`Nerve::safe_rung`]: no planned download breaks the buffer floor or stalls at the guard
/// throughput, more than its own choice does, and the low-buffer fallback). The actor's rung is
/// capped there, and by default ([`Shield::PlannerClimb`]) it climbs no higher than the planner
/// would play; everything below the cap, and the enhancement level, stay the actor's. The
/// actor learnt the planner's choices by imitation, and PPO's fine-tuning on a stall price of
/// 100 points per second left it stalling 66-178 ms more per session than the planner on the
/// slow families it never saw: a price is learnt from the families trained on, the constraint
/// holds on any.
pub struct Ppo {
    pub features: Features,
    actor: Box<dyn Actor>,
    /// The stream's rungs among the training table's rows; `None`: they are the same.
    rows: Option<Rows>,
    /// The planner that caps the actor's rung, and where; `None`: unshielded.
    shield: Option<(Nerve, Shield)>,
    /// The planner's own session played beside the actor's ([`Shield::Shadow`]).
    shadow: Option<ShadowSession>,
    /// Decisions the shield lowered.
    pub shielded: u64,
    /// The last error of the actor (the policy then falls back to the lowest rung).
    pub error: Option<String>,
}

/// Where the shield caps the actor's rung.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Shield {
    /// At the highest rung the planner holds safe ([`Nerve::safe_rung`]).
    SafeSet,
    /// At the rung the planner would play itself: the actor may go lower, never higher.
    PlannerRung,
    /// Climbing needs the planner's consent: the actor may hold the rung last played or go lower,
    /// and climb only as far as the planner would play, never above the safe set. An early climb
    /// is where a policy that meets the QoE stalls more than the planner (it meets an outage with
    /// less buffer); holding a rung the planner has left stays the actor's choice. The default
    /// since 2026-12-07: chosen between the four on the families each fold's policy was trained
    /// on (`scripts/ppo_shield_choice.py`, the smallest worst stall excess over the planner).
    #[default]
    PlannerClimb,
    /// The actor may not fall behind the planner's buffer: a second planner plays its own
    /// session beside the actor's on the throughputs the actor's downloads measure, and while
    /// the actor holds less buffer than that session would, the planner's decision is played
    /// whole (rung and level); with as much or more, the actor plays, capped at the safe set.
    /// Stalls come from meeting an outage with less buffer than the planner would have had; a
    /// cap on the rung alone cannot see that, the buffer itself can.
    Shadow,
}

/// Seconds of buffer below which the two sessions count as level (sums of floating-point
/// download times: the same chunk at the same measured throughput takes the same time).
const SHADOW_EPS_S: f64 = 1e-6;

/// The planner's session as it would have gone had it decided every chunk: its buffer, moved by
/// the download time its own choice would have taken at the throughput the actor's last download
/// measured (the same link, as near as the session knows it).
struct ShadowSession {
    planner: Nerve,
    buffer_s: Option<f64>,
    /// Size of the chunk the shadow planner chose last, bits (downloaded before the next decision).
    pending_bits: Option<f64>,
}

impl ShadowSession {
    /// The shadow's buffer at this decision (the actor's at the first one).
    fn advance(&mut self, obs: &Observation<'_>) -> f64 {
        let actual = obs.buffer.as_secs_f64();
        let b = match (self.buffer_s, self.pending_bits, obs.recent_bps.last()) {
            (Some(b), Some(bits), Some(&bps)) if bps > 0.0 && bps.is_finite() => {
                let dt = obs.latency.as_secs_f64() + bits / bps;
                ((b - dt).max(0.0) + obs.ladder.chunk_s()).min(obs.buffer_cap.as_secs_f64())
            }
            _ => actual,
        };
        // A player waits with a full buffer and resumes a little below its cap (in steps the
        // policy does not know): within a chunk of the cap, both sessions count as full.
        let full = obs.buffer_cap.as_secs_f64() - obs.ladder.chunk_s();
        let b = if actual >= full { b.min(actual) } else { b };
        self.buffer_s = Some(b);
        let at = Observation { buffer: std::time::Duration::from_secs_f64(b), ..*obs };
        let d = self.planner.decide(&at);
        self.pending_bits = obs.next_sizes_bits.get(d.rung).copied();
        b
    }
}

impl Shield {
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "safe-set" => Ok(Self::SafeSet),
            "planner-rung" => Ok(Self::PlannerRung),
            "planner-climb" => Ok(Self::PlannerClimb),
            "shadow" => Ok(Self::Shadow),
            _ => Err(format!("unknown shield {name:?} (safe-set, planner-rung, planner-climb, shadow)")),
        }
    }
}

impl Ppo {
    pub fn new(features: Features, actor: Box<dyn Actor>) -> Self {
        Self { features, actor, rows: None, shield: None, shadow: None, shielded: 0, error: None }
    }

    /// The policy on a stream whose rungs are `rows` of the table `features` was built on.
    pub fn on_rows(features: Features, actor: Box<dyn Actor>, rows: Rows) -> Self {
        Self { rows: Some(rows), ..Self::new(features, actor) }
    }

    /// Shielded by `planner`, built on the table of the stream it plays: the features' table
    /// for [`Ppo::new`], the stream's own rungs for [`Ppo::on_rows`] (it decides on the stream's
    /// observations; its rungs are mapped to the rows).
    pub fn with_shield(self, planner: Nerve) -> Self {
        self.with_shield_at(planner, Shield::default())
    }

    /// Shielded by `planner`, capped where `at` says.
    pub fn with_shield_at(mut self, planner: Nerve, at: Shield) -> Self {
        self.shadow = (at == Shield::Shadow).then(|| ShadowSession { planner: planner.clone(), buffer_s: None, pending_bits: None });
        self.shield = Some((planner, at));
        self
    }

    /// The actor's best action, capped by the shield, placed where it can be played (`place`:
    /// the row decision the stream can play for the one wanted), remembered as played. The
    /// shield's planner decides on `shield_obs` (the stream as it is, when the actor decides in
    /// its training table's rows) and `to_actor` takes its rungs to the actor's.
    fn choose(&mut self, obs: &Observation<'_>, shield_obs: &Observation<'_>, to_actor: impl Fn(usize) -> usize, place: impl Fn(Decision) -> Decision) -> Decision {
        let x = self.features.observe(obs);
        let action = self.features.action();
        // the planner takes in every observation, whatever is played, so its estimators follow
        // the session as they would if it decided
        // behind the shadow session's buffer: the planner's decision, whole
        let behind = self.shadow.as_mut().is_some_and(|s| shield_obs.buffer.as_secs_f64() < s.advance(shield_obs) - SHADOW_EPS_S);
        let mut planner_whole = None;
        let cap = self.shield.as_mut().and_then(|(n, at)| {
            let own = n.decide(shield_obs);
            let own = Decision { rung: to_actor(own.rung), level: own.level };
            if behind {
                planner_whole = Some(own);
            }
            let safe_rung = n.safe_rung().map(&to_actor);
            match at {
                Shield::SafeSet | Shield::Shadow => safe_rung,
                Shield::PlannerRung => Some(own.rung),
                Shield::PlannerClimb => {
                    // the rung last played, as the features remember it (reset with them)
                    let climb = own.rung.max(self.features.last.map_or(0, |d| d.rung));
                    Some(safe_rung.map_or(climb, |safe| safe.min(climb)))
                }
            }
        });
        let d = match self.actor.scores(&x) {
            Ok(s) if s.len() == action.count() => {
                let mut d = action.decision(argmax(&s));
                if let Some(own) = planner_whole {
                    self.shielded += u64::from(own != d);
                    d = own;
                } else if let Some(cap) = cap
                    && d.rung > cap
                {
                    self.shielded += 1;
                    // the actor's level where the table has it on the safe rung, else none
                    let level = if self.features.table.get(cap, d.level).is_some() { d.level } else { 0 };
                    d = Decision { rung: cap, level };
                }
                place(d)
            }
            Ok(s) => {
                self.error = Some(format!("the actor gave {} scores for {} actions", s.len(), action.count()));
                Decision::default()
            }
            Err(e) => {
                self.error = Some(e);
                Decision::default()
            }
        };
        if let Some((n, _)) = self.shield.as_mut() {
            n.played(d);
        }
        self.features.record(d);
        d
    }
}

/// Index of the largest score; ties keep the first (the lowest rung).
pub fn argmax(scores: &[f32]) -> usize {
    let mut best = 0;
    for (i, s) in scores.iter().enumerate() {
        if *s > scores[best] {
            best = i;
        }
    }
    best
}

impl Policy for Ppo {
    fn name(&self) -> &'static str {
        "ppo"
    }

    fn decide(&mut self, obs: &Observation<'_>) -> Decision {
        // taken out for the decision (`choose` borrows self), put back after: no copy per decision
        let Some(rows) = self.rows.take() else {
            return self.choose(obs, obs, |r| r, |d| d);
        };
        // the observation in row space: offered rows at the stream's sizes, the others at
        // their nominal cost
        let chunk_s = obs.ladder.chunk_s();
        let mut sizes: Vec<f64> = rows.row_bps.iter().map(|b| b * chunk_s).collect();
        let mut row_bps = rows.row_bps.clone();
        for (rung, &row) in rows.of_rung.iter().enumerate() {
            if let Some(&bits) = obs.next_sizes_bits.get(rung) {
                sizes[row] = bits;
            }
            if let Some(&bps) = obs.ladder.bitrates_bps.get(rung) {
                row_bps[row] = bps;
            }
        }
        let ladder = Ladder { bitrates_bps: row_bps, chunk: obs.ladder.chunk };
        let row_obs = Observation {
            last_rung: obs.last_rung.and_then(|r| rows.of_rung.get(r).copied()),
            next_sizes_bits: &sizes,
            ladder: &ladder,
            ..*obs
        };
        // The network's first choice, moved to the nearest row the stream offers: only its
        // first choice was trained (on a ladder with every row), not its order of the others.
        // The shield plans on the stream's own rungs (its planner is built on the stream's
        // table): over every row it would weigh rungs the stream lacks, and let the actor climb
        // to a rung the planner on this stream never takes (a battery-saver viewer of screen
        // content got the top rung where the planner holds the one below).
        let d = self.choose(&row_obs, obs, |r| rows.of_rung.get(r).copied().unwrap_or(r), |d| Decision { rung: rows.nearest_offered(d.rung), level: d.level });
        let played = Decision { rung: rows.rung_of(d.rung).unwrap_or(0), level: d.level };
        self.rows = Some(rows);
        played
    }
}

/// The file `models/abr/ppo.onnx` of the first model directory that has one
/// (`NERVE_MODEL_PATH`, the installed models, the source tree's `models/`: where the SR models
/// are looked for).
#[cfg(feature = "onnx")]
pub fn default_model() -> Option<std::path::PathBuf> {
    nerve_engine::manifest::manifest_dirs().into_iter().map(|d| d.join("abr").join("ppo.onnx")).find(|p| p.is_file())
}

/// The quality table a policy was trained with, when it ships one: `<model>.table.json` beside
/// the actor (`ppo.onnx` -> `ppo.table.json`), a table file as in `nerve-abr/tables`. A policy
/// trained on one table reads its entries as fixed inputs, and meets any other table as inputs it
/// never saw (docs/research/2026-12-07-abr-tables-active.md): it then reads this one, while the
/// shield and the session score with the table the stream plays. `None`: no file (the policy
/// reads the table it is given).
pub fn training_table(model: &std::path::Path) -> Result<Option<crate::quality::TableFile>, String> {
    let path = model.with_extension("table.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    crate::quality::TableFile::parse(&text).map(Some).map_err(|e| format!("{}: {e}", path.display()))
}

/// The actor as an ONNX model (input: the features, `[1, dim]`; output: one score per action,
/// `[1, actions]`) on nerve-engine.
#[cfg(feature = "onnx")]
pub struct OnnxActor {
    model: nerve_engine::VectorModel,
    /// Time spent inside ONNX Runtime, all decisions.
    pub inference: std::time::Duration,
    pub calls: u64,
}

#[cfg(feature = "onnx")]
impl OnnxActor {
    /// Loads `path` and checks it fits `features` (input length, one output per action).
    pub fn load(path: &std::path::Path, features: &Features) -> Result<Self, String> {
        let model = nerve_engine::VectorModel::load(path, &nerve_engine::SessionConfig::default()).map_err(|e| e.to_string())?;
        if model.inputs != features.dim() || model.outputs != features.action().count() {
            return Err(format!(
                "{} takes {} features and gives {} scores; this ladder and table need {} and {} ({} rungs x {} levels)",
                path.display(),
                model.inputs,
                model.outputs,
                features.dim(),
                features.action().count(),
                features.action().rungs,
                features.action().levels
            ));
        }
        Ok(Self { model, inference: std::time::Duration::ZERO, calls: 0 })
    }
}

#[cfg(feature = "onnx")]
impl Actor for OnnxActor {
    fn scores(&mut self, input: &[f32]) -> Result<Vec<f32>, String> {
        let (out, took) = self.model.run(input).map_err(|e| e.to_string())?;
        self.inference += took;
        self.calls += 1;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_policy_reads_the_training_table_shipped_beside_it() {
        let dir = std::env::temp_dir().join(format!("nerve-abr-training-table-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap(); // ok: test code
        let model = dir.join("p.onnx");
        assert!(training_table(&model).unwrap().is_none(), "no file: the policy reads the table it is given"); // ok: test code
        let sidecar = dir.join("p.table.json");
        assert_eq!(model.with_extension("table.json"), sidecar);
        std::fs::write(&sidecar, crate::DEFAULT_TABLE).unwrap(); // ok: test code
        let file = training_table(&model).unwrap().unwrap(); // ok: test code
        assert_eq!(file.name, crate::quality::TableFile::parse(crate::DEFAULT_TABLE).unwrap().name); // ok: test code

        // The stream's table: other qualities, a device three times as fast, 1 s segments.
        let mut stream = file.clone();
        stream.chunk_s = 1.0;
        for r in &mut stream.rungs {
            r.vmaf = (r.vmaf - 7.0).max(1.0);
            r.levels.iter_mut().for_each(|l| l.fps *= 3.0);
        }
        let rungs = file.rungs.len();
        let bps: Vec<f64> = file.rungs.iter().map(|r| r.bitrate_kbps * 1e3).collect();
        let features = |t: &crate::quality::TableFile, chunk_s: u64| {
            let ladder = Ladder { bitrates_bps: bps.clone(), chunk: Duration::from_secs(chunk_s) };
            let sizes: Vec<f64> = bps.iter().map(|b| b * chunk_s as f64).collect();
            let o = Observation {
                chunk_index: 1,
                total_chunks: 10,
                buffer: Duration::from_secs(10),
                buffer_cap: Duration::from_secs(60),
                enhance_backlog: Duration::ZERO,
                throughput_bps: Some(3e6),
                latency: Duration::ZERO,
                recent_bps: &[3e6],
                last_rung: Some(0),
                next_sizes_bits: &sizes,
                ladder: &ladder,
                enhance_available: true,
            };
            let plain = Features::new(QualityTable::from_file(t, 1.0), rungs);
            (plain.clone().trained_on(&file).unwrap().vector(&o), plain.vector(&o)) // ok: test code
        };
        let (on_stream, stream_alone) = features(&stream, 1);
        let (_, as_trained) = features(&file, 4);
        assert_eq!(on_stream, as_trained, "the training table's qualities and speeds, whatever the stream's table and segments");
        assert_ne!(stream_alone, as_trained, "the stream's table alone reads otherwise");

        let mut shape = file.clone();
        shape.rungs[0].levels.clear();
        let err = Features::new(QualityTable::from_file(&file, 1.0), rungs).trained_on(&shape).unwrap_err(); // ok: test code
        assert!(err.contains("rung 0"), "a table of other levels is refused: {err}");
        std::fs::write(&sidecar, "{ not a table").unwrap(); // ok: test code
        assert!(training_table(&model).unwrap_err().contains("p.table.json"), "a broken file is an error, not a silent fallback"); // ok: test code
        std::fs::remove_dir_all(&dir).ok();
    }
    use crate::Ladder;

    fn table() -> QualityTable {
        QualityTable { quality: vec![vec![Some(40.0), Some(60.0)], vec![Some(70.0), None]], compute_s: vec![vec![0.0, 2.0], vec![0.0, f64::INFINITY]] }
    }

    #[test]
    fn layout_and_history() {
        let ladder = Ladder { bitrates_bps: vec![1e6, 3e6], chunk: Duration::from_secs(4) };
        let sizes = [4e6, 12e6];
        let mut f = Features::new(table(), 2);
        f.battery = Some(0.5);
        f.preference = 1.0;
        assert_eq!(f.dim(), 3 + 2 * HISTORY + 2 + 4 + 2 + 6);
        let obs = |recent: &'static [f64]| Observation {
            chunk_index: 1,
            total_chunks: 10,
            buffer: Duration::from_secs(30),
            buffer_cap: Duration::from_secs(60),
            enhance_backlog: Duration::ZERO,
            throughput_bps: recent.last().copied(),
            latency: Duration::ZERO,
            recent_bps: recent,
            last_rung: Some(0),
            next_sizes_bits: &sizes,
            ladder: &ladder,
            enhance_available: true,
        };
        let v = f.observe(&obs(&[2e6]));
        assert_eq!(v.len(), f.dim());
        assert_eq!(v[0], 0.5);
        assert_eq!(v[HISTORY], 0.2, "newest throughput last: 2 Mbit/s / 10");
        assert_eq!(v[2 * HISTORY], 0.0, "no download time before the policy's first chunk");
        f.record(Decision { rung: 1, level: 0 });
        let v = f.observe(&obs(&[2e6, 6e6]));
        assert_eq!(v[2 * HISTORY], 0.5, "12 Mbit at 6 Mbit/s = 2 s of a 4 s chunk");
        assert!((v[1 + 2 * HISTORY] - 0.7).abs() < 1e-6, "last quality 70");
        assert_eq!(v[2 + 2 * HISTORY], 1.0);
        let speed = 3 + 2 * HISTORY + 2 + 4;
        assert_eq!(&v[speed..speed + 2], &[0.5, 4.0], "2 s per 4 s chunk; unavailable = 4");
        assert_eq!(&v[speed + 2..], &[0.5, 1.0, 1.0, 1.0, 0.5, 0.0], "battery, on battery, preference, enhancer, buffer 30 s of a 60 s cap, no change since the last decision");
        let v = f.observe(&Observation { buffer: Duration::from_secs(24), ..obs(&[2e6, 6e6, 1e6]) });
        assert_eq!(v[v.len() - 1], -1.5, "6 s less buffer than at the last decision: 1.5 chunks of 4 s");
        // a buffer reported above the cap (a fragment still arriving) reads as a full one
        let over = f.vector(&Observation { buffer: Duration::from_secs(70), ..obs(&[1e6]) });
        assert_eq!((over[0], over[over.len() - 2]), (1.0, 1.0));
    }

    #[test]
    fn actions_round_trip() {
        let a = Action { rungs: 6, levels: 2 };
        for i in 0..a.count() {
            assert_eq!(a.index(a.decision(i)), i);
        }
        assert_eq!(a.decision(5), Decision { rung: 2, level: 1 });
        assert_eq!(argmax(&[0.0, 3.0, 3.0, -1.0]), 1);
    }

    /// Fixed scores; keeps every input it was given.
    struct Scripted {
        scores: Vec<f32>,
        seen: std::sync::Arc<std::sync::Mutex<Vec<Vec<f32>>>>,
    }

    impl Actor for Scripted {
        fn scores(&mut self, input: &[f32]) -> Result<Vec<f32>, String> {
            self.seen.lock().map_err(|e| e.to_string())?.push(input.to_vec());
            Ok(self.scores.clone())
        }
    }

    #[test]
    fn a_stream_with_fewer_rungs_plays_on_the_rows_it_offers() {
        // a 3-row table; the stream offers rows 0 and 1 (its rungs 0 and 1)
        let table = QualityTable {
            quality: vec![vec![Some(40.0), Some(60.0)], vec![Some(70.0), Some(80.0)], vec![Some(90.0), None]],
            compute_s: vec![vec![0.0, 1.0], vec![0.0, 2.0], vec![0.0, f64::INFINITY]],
        };
        let rows = Rows::new(vec![0, 1], vec![1e6, 2e6, 4e6]).unwrap(); // ok: test code
        // the network likes (row 2, level 0) best: row 2 is absent, so row 1, the most offered
        let scores = vec![5.0, 0.0, 1.0, 7.0, 9.0, 3.0];
        let seen = std::sync::Arc::default();
        let mut p = Ppo::on_rows(Features::new(table.clone(), 3), Box::new(Scripted { scores: scores.clone(), seen: std::sync::Arc::clone(&seen) }), rows);
        let ladder = Ladder { bitrates_bps: vec![1.1e6, 2.2e6], chunk: Duration::from_secs(4) };
        let sizes = [4.4e6, 8.8e6];
        let recent = [3e6];
        let obs = Observation {
            chunk_index: 1,
            total_chunks: 10,
            buffer: Duration::from_secs(20),
            buffer_cap: Duration::from_secs(60),
            enhance_backlog: Duration::ZERO,
            throughput_bps: Some(3e6),
            latency: Duration::ZERO,
            recent_bps: &recent,
            last_rung: Some(1),
            next_sizes_bits: &sizes,
            ladder: &ladder,
            enhance_available: true,
        };
        assert_eq!(p.decide(&obs), Decision { rung: 1, level: 0 }, "the wanted row 2 played at the nearest offered row, as the stream's rung");
        let input = seen.lock().unwrap()[0].clone(); // ok: test code
        let sizes_at = 3 + 2 * HISTORY;
        assert_eq!(input.len(), 3 + 2 * HISTORY + 3 + 6 + 3 + 6, "the model's input has the table's 3 rows");
        assert_eq!(&input[sizes_at..sizes_at + 3], &[0.11, 0.22, 0.4], "offered rows at the stream's sizes, row 2 at its nominal 4 Mbit/s (per second of video)");
        // the decision is remembered as played, in row space: row 1 of 0..2, with (row 1, level 0)'s quality
        let input = {
            p.decide(&obs);
            seen.lock().unwrap()[1].clone() // ok: test code
        };
        assert_eq!(input[sizes_at - 1], 0.5, "last rung: the stream's rung 1 is row 1 of 0..2");
        assert!((input[sizes_at - 2] - 0.7).abs() < 1e-6, "{}", input[sizes_at - 2]);

        // a stream that offers every row: the map changes nothing
        let full = Rows::new(vec![0, 1, 2], vec![1e6, 2e6, 4e6]).unwrap(); // ok: test code
        let ladder3 = Ladder { bitrates_bps: vec![1e6, 2e6, 4e6], chunk: Duration::from_secs(4) };
        let sizes3 = [4e6, 8e6, 16e6];
        let obs3 = Observation { next_sizes_bits: &sizes3, ladder: &ladder3, ..obs };
        let (a, b) = (std::sync::Arc::default(), std::sync::Arc::default());
        let mut mapped = Ppo::on_rows(Features::new(table.clone(), 3), Box::new(Scripted { scores: scores.clone(), seen: std::sync::Arc::clone(&a) }), full);
        let mut plain = Ppo::new(Features::new(table, 3), Box::new(Scripted { scores, seen: std::sync::Arc::clone(&b) }));
        for _ in 0..3 {
            assert_eq!(mapped.decide(&obs3), plain.decide(&obs3));
        }
        assert_eq!(*a.lock().unwrap(), *b.lock().unwrap()); // ok: test code
        assert_eq!(plain.decide(&obs3), Decision { rung: 2, level: 0 });
        assert!(Rows::new(vec![3], vec![1e6]).is_err() && Rows::new(vec![], vec![1e6]).is_err());
        // a stream whose rungs are rows 1 and 2: a wanted row 0 is played at its lowest rung
        let rows = Rows::new(vec![1, 2], vec![1e6, 2e6, 4e6]).unwrap(); // ok: test code
        assert_eq!((rows.nearest_offered(0), rows.nearest_offered(1), rows.nearest_offered(2)), (1, 1, 2));
    }

    #[test]
    fn the_shield_caps_the_actors_rung_where_the_planner_sees_a_stall() {
        use crate::nerve::NerveParams;
        // 3 rows at 1, 2, 4 Mbit/s, 4 s chunks; an actor that always wants the top row, enhanced
        let table = QualityTable {
            quality: vec![vec![Some(40.0), Some(60.0)], vec![Some(70.0), Some(80.0)], vec![Some(90.0), Some(95.0)]],
            compute_s: vec![vec![0.0, 1.0], vec![0.0, 2.0], vec![0.0, 3.0]],
        };
        let ladder = Ladder { bitrates_bps: vec![1e6, 2e6, 4e6], chunk: Duration::from_secs(4) };
        let sizes = [4e6, 8e6, 16e6];
        let top = vec![0.0, 0.0, 0.0, 0.0, 0.0, 9.0];
        let actor = || Box::new(Scripted { scores: top.clone(), seen: std::sync::Arc::default() });
        let shielded = |t: &QualityTable| Ppo::new(Features::new(t.clone(), 3), actor()).with_shield_at(Nerve::new(t.clone(), NerveParams::chunk()), Shield::SafeSet);
        let obs = |buffer_s: u64, recent: &'static [f64]| Observation {
            chunk_index: 5,
            total_chunks: 48,
            buffer: Duration::from_secs(buffer_s),
            buffer_cap: Duration::from_secs(60),
            enhance_backlog: Duration::ZERO,
            throughput_bps: recent.last().copied(),
            latency: Duration::ZERO,
            recent_bps: recent,
            last_rung: Some(2),
            next_sizes_bits: &sizes,
            ladder: &ladder,
            enhance_available: true,
        };
        // a 1.5 Mbit/s link and 6 s of buffer: a 16 Mbit chunk takes 10.7 s and would stall
        let mut p = shielded(&table);
        let d = p.decide(&obs(6, &[1.5e6]));
        assert!(d.rung < 2, "the top row would stall: {d:?}");
        assert_eq!(d.level, 1, "below the cap the actor's level stays");
        assert_eq!(p.shielded, 1);
        // the unshielded actor plays what it wants
        let mut raw = Ppo::new(Features::new(table.clone(), 3), actor());
        assert_eq!(raw.decide(&obs(6, &[1.5e6])), Decision { rung: 2, level: 1 });
        // a 40 Mbit/s link and a full buffer: the top row is safe, the shield stays out
        let mut p = shielded(&table);
        for _ in 0..3 {
            assert_eq!(p.decide(&obs(40, &[40e6])), Decision { rung: 2, level: 1 });
        }
        assert_eq!(p.shielded, 0);
        // the level is dropped where the capped row has none
        let mut bare = table.clone();
        bare.quality[0][1] = None;
        bare.quality[1][1] = None;
        let mut p = shielded(&bare);
        assert_eq!(p.decide(&obs(6, &[1.5e6])).level, 0);
        // capped at the planner's own rung: an actor that wants the top row plays the planner's
        // rung, at or below the safe set's cap, on every link, and below it on some
        let mut lower = 0;
        for (buffer_s, recent) in [(6, &[1.5e6][..]), (14, &[2.5e6][..]), (20, &[3.0e6][..]), (40, &[40e6][..])] {
            let own = Nerve::new(table.clone(), NerveParams::chunk()).decide(&obs(buffer_s, recent));
            let mut at_planner = Ppo::new(Features::new(table.clone(), 3), actor())
                .with_shield_at(Nerve::new(table.clone(), NerveParams::chunk()), Shield::PlannerRung);
            let mut at_safe = shielded(&table);
            let (a, b) = (at_planner.decide(&obs(buffer_s, recent)), at_safe.decide(&obs(buffer_s, recent)));
            assert_eq!(a.rung, own.rung, "{buffer_s} s, {recent:?}");
            assert!(a.rung <= b.rung, "{buffer_s} s, {recent:?}: {a:?} vs {b:?}");
            lower += usize::from(a.rung < b.rung);
        }
        assert!(lower > 0, "no case where the planner plays below its safe set");
        // climbing with the planner's consent: from the lowest rung it climbs no higher than the
        // planner; after the top row was played it holds what the safe set allows
        let climb = |table: &QualityTable| {
            Ppo::new(Features::new(table.clone(), 3), actor())
                .with_shield_at(Nerve::new(table.clone(), NerveParams::chunk()), Shield::PlannerClimb)
        };
        let mut held = 0;
        for (buffer_s, recent) in [(6, &[1.5e6][..]), (14, &[2.5e6][..]), (20, &[3.0e6][..]), (40, &[40e6][..])] {
            let own = Nerve::new(table.clone(), NerveParams::chunk()).decide(&obs(buffer_s, recent));
            assert_eq!(climb(&table).decide(&obs(buffer_s, recent)).rung, own.rung, "{buffer_s} s, {recent:?}");
            let mut after_top = climb(&table);
            assert_eq!(after_top.decide(&obs(40, &[40e6])).rung, 2);
            let safe_cap = shielded(&table).decide(&obs(buffer_s, recent)).rung;
            let d = after_top.decide(&obs(buffer_s, recent));
            assert!(d.rung >= own.rung.min(safe_cap) && d.rung <= safe_cap, "{buffer_s} s, {recent:?}: {d:?}");
            held += usize::from(d.rung > own.rung);
        }
        assert!(held > 0, "no case where the actor holds a rung the planner left");
        // the shadow session: level at the first decision (the actor plays, capped at the safe
        // set); behind the planner's own session, the planner's decision whole; ahead of it, the
        // actor again
        let shadow = || {
            Ppo::new(Features::new(table.clone(), 3), actor())
                .with_shield_at(Nerve::new(table.clone(), NerveParams::chunk()), Shield::Shadow)
        };
        let first = obs(40, &[3e6]);
        let mut p = shadow();
        assert_eq!(p.decide(&first), shielded(&table).decide(&first), "level: the safe set's cap");
        // whatever the shadow planner chose (16 Mbit at most, 10.7 s at 1.5 Mbit/s), its
        // session holds >= 33.3 s; the actor's 8 s is behind, on a link where the top row stalls
        let behind = obs(8, &[3e6, 1.5e6]);
        let mut reference = Nerve::new(table.clone(), NerveParams::chunk());
        reference.decide(&first);
        let own = reference.decide(&behind);
        let before = p.shielded;
        assert_eq!(p.decide(&behind), own, "behind the planner's session: its decision, level and all");
        assert_eq!(p.shielded, before + u64::from(own != Decision { rung: 2, level: 1 }));
        assert_ne!(own, Decision { rung: 2, level: 1 }, "the case must differ from the actor's wish");
        // a session ahead of the shadow's (<= 44 s) is the actor's, capped at the safe set
        let mut p = shadow();
        p.decide(&first);
        let ahead = obs(50, &[3e6, 3e6]);
        let mut safe = shielded(&table);
        safe.decide(&first);
        assert_eq!(p.decide(&ahead), safe.decide(&ahead));
        assert_eq!(Shield::parse("shadow"), Ok(Shield::Shadow));
        assert_eq!(Shield::parse("planner-climb"), Ok(Shield::PlannerClimb));
        assert_eq!(Shield::parse("planner-rung"), Ok(Shield::PlannerRung));
        assert!(Shield::parse("none").is_err());
    }

    #[test]
    fn reward_prices_energy_by_the_weight() {
        let r = Reward::default();
        assert_eq!(r.of(0.0, 80.0, 5.0, 0.0, 10.0), 0.75);
        assert!((r.of(1.0, 80.0, 5.0, 0.0, 10.0) - 0.70).abs() < 1e-12);
        assert!((r.of(0.0, 80.0, 0.0, 1.0, 0.0) + 0.2).abs() < 1e-12);
        assert_eq!(Preference::of_weight(Preference::BatterySaver.weight()), Preference::BatterySaver);
        assert_eq!(Preference::of_weight(Preference::Balanced.weight()), Preference::Balanced);
    }
}
