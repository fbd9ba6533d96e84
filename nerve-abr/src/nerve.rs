//! `nerve`: the enhancement-aware policy. It chooses (rung, enhancement level) together by
//! looking a few chunks ahead, scoring each plan in displayed quality (from a
//! [`QualityTable`]) minus switch, stall and energy costs, with the device's enhancement time
//! as a second queue that must finish each chunk before it plays.

use super::{Decision, Observation, Policy, QualityTable};

/// What the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Preference {
    /// Best picture; energy is not counted.
    Quality,
    #[default]
    Balanced,
    /// Enhance only where the gain is large for its energy, price bits, download in bursts.
    BatterySaver,
}

impl std::str::FromStr for Preference {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "quality" => Ok(Self::Quality),
            "balanced" => Ok(Self::Balanced),
            "battery-saver" | "battery" => Ok(Self::BatterySaver),
            _ => Err(format!("unknown preference {s:?} (quality, balanced, battery-saver)")),
        }
    }
}

/// Tunables. `Default` is the BONES-scenario set (the hard stall constraint off), and
/// [`NerveParams::chunk`] the chunk-scenario set (also the element's); see docs/abr.md and the
/// research notes for how each was chosen.
#[derive(Clone, Debug)]
pub struct NerveParams {
    /// Chunks looked ahead.
    pub horizon: usize,
    /// Fraction of the throughput estimate trusted.
    pub safety: f64,
    /// Quality points lost per second of predicted stall (the QoE itself charges 100).
    pub stall_weight: f64,
    /// Weight of |quality change| between consecutive chunks.
    pub switch_weight: f64,
    /// Quality points charged per second of enhancement compute: the value of keeping the
    /// device free for later chunks.
    pub compute_price: f64,
    /// Quality points per joule of enhancement energy at `Balanced`; 0 at `Quality`, x10 at
    /// `BatterySaver` (at least `saver_energy_price` there).
    pub energy_price: f64,
    /// Quality points per joule of enhancement energy at battery-saver (and on a low battery)
    /// when `energy_price` x 10 is lower: the exchange rate at which the saver still enhances.
    /// Chosen leave-one-family-out with `saver_bit_price` by scripts/abr_saver_price.py.
    pub saver_energy_price: f64,
    /// Power drawn while enhancing, watts.
    pub enhance_power_w: f64,
    /// Buffer (s) the plan should not end below; each missing second costs `stall_weight` x
    /// `end_buffer_weight`.
    pub end_buffer_s: f64,
    pub end_buffer_weight: f64,
    /// Robust estimate (RobustMPC's idea): the throughput used is divided by
    /// (1 + `robust` x the largest relative error of the last 5 predictions); 0 = off.
    pub robust: f64,
    /// Scale the end-buffer target with that same error (target x min(1, error / this)):
    /// steady links need less buffer. 0 = off (fixed target).
    pub end_buffer_err: f64,
    /// Quality points charged per megabit downloaded (0 = bits are free): trades displayed
    /// quality for bits, for data plans and radio energy.
    pub bit_price: f64,
    /// Quality points per megabit of a 4 s chunk (per 4 Mbit/s-seconds of bitrate at any chunk
    /// length) charged on top of `bit_price` at battery-saver (and on a low battery, as the
    /// energy price is): on a link that sustains the top rung the radio is
    /// nearly all of the device's energy, and only fewer bits spend less of it. While the saver
    /// prices bits the top-rung shortcut (`top_rung`) is off: it takes the top rung as if bits
    /// were free. Chosen leave-one-family-out by scripts/abr_saver_price.py.
    pub saver_bit_price: f64,
    /// Chunks after the horizon over which the plan's last choice is assumed to continue
    /// (bounded by the rest of the session), its quality, bits and the stall its download rate
    /// would cause counted like the horizon's. 0 = off. Without it a one-off switch penalty
    /// outweighs five chunks of gain: with a bit price the plan may never leave the first rung.
    /// Off by default: with bits free it makes the plan too cautious (the stall of ten chunks
    /// at the discounted throughput); the bit-saving runs set it with the price (crate README).
    pub tail: usize,
    /// Buffer-safety floor, seconds; 0 = off, and with it the whole hard constraint (stalls
    /// are then only priced, by `stall_weight`). With it, stalls are a hard constraint of the
    /// look-ahead, checked at the guard estimate: no planned download may stall, none may
    /// leave the buffer, right after its chunk arrives, below `min(floor, the buffer before
    /// that download)` (below the floor the buffer may not shrink), and (with `collapse`) each
    /// must survive a fall of the link. Plans are ranked by how far they break this first and
    /// by score second, so the least-breaking plan is taken when none keeps it (a collapsing
    /// link).
    pub floor_s: f64,
    /// Survival share (0 = off; needs the floor on): each planned download must also finish
    /// before the buffer empties if the link falls to this share of the guard estimate
    /// meanwhile, so large chunks on slow links need proportionally more buffer (as BOLA's
    /// buffer-to-bitrate map gives them) while fast links need none.
    pub collapse: f64,
    /// Share of the throughput estimate (the harmonic mean) the guard trusts, independent of
    /// `safety`, so a greedier plan is held to the same constraint (0 = the planning estimate).
    pub guard_safety: f64,
    /// Also cap the guard estimate at this quantile (0..1) of every throughput measured in the
    /// session so far (0 = off): the link may return to where it has been.
    pub guard_quantile: f64,
    /// Also divide the guard estimate's harmonic mean by (1 + this x the largest relative error
    /// of the last 5 predictions) (RobustMPC's discount; 0 = off). Tried, not used by the
    /// shipped sets: on 4G/5G the relative errors of short, RTT-dominated downloads are huge and
    /// it kept nerve off the top rung.
    pub guard_robust: f64,
    /// Take the top rung whenever the planning estimate sustains it (each of its chunks
    /// downloads within a chunk's duration over the horizon, keeping the floor) and no (rung,
    /// level) of the table shows better quality than its classical one, rather than enhancing
    /// a lower rung.
    pub top_rung: bool,
    /// Fallback to the bitrate-only choice when the buffer runs low: while the buffer is below
    /// this many seconds and falling, the rung is at most BBA-0's for that buffer (Pensieve's
    /// 5 s reservoir, 10 s cushion; the lowest rung below 5 s). 0 = off.
    pub fallback_s: f64,
}

impl Default for NerveParams {
    fn default() -> Self {
        Self {
            horizon: 5,
            safety: 0.65,
            stall_weight: 1000.0,
            switch_weight: 1.0,
            compute_price: 0.25,
            energy_price: 0.0,
            saver_energy_price: 0.5,
            enhance_power_w: 15.0,
            end_buffer_s: 25.0,
            end_buffer_weight: 0.3,
            robust: 0.0,
            end_buffer_err: 0.0,
            bit_price: 0.0,
            saver_bit_price: 0.0,
            tail: 0,
            floor_s: 0.0,
            collapse: 0.0,
            guard_safety: 0.0,
            guard_quantile: 0.0,
            guard_robust: 0.0,
            top_rung: false,
            fallback_s: 0.0,
        }
    }
}

impl NerveParams {
    /// The chunk (Pensieve) scenario's set, also the element's: 192 s sessions, stall charged 100
    /// VMAF points per second per chunk. The objective as tuned in 2026-11 (stall weight 3000,
    /// switch weight 2, compute price 1, a 12 s end-buffer target scaled by the largest recent
    /// prediction error / 0.5). Since 2026-12-06 the robust planner: stalls are a hard
    /// constraint (no predicted stall, a buffer floor, and each download must survive the link
    /// falling to half of the guard estimate), checked at a guard estimate (0.55 of the harmonic
    /// mean, capped at the session's 10th-percentile throughput) that does not move with
    /// `safety`; the top rung whenever the planning estimate sustains it; BBA-0's rung while
    /// the buffer falls below 8 s. Safety 0.7, floor 4 s, no bit price: what the
    /// leave-one-family-out rule picks on all six trace families together, and what it picked
    /// in every fold (docs/research/2026-12-06-abr-generalisation.md). At battery-saver, 1
    /// quality point per megabit (`saver_bit_price`) and 0.17 per joule of enhancement energy
    /// (`saver_energy_price`: on the shipped tables it still enhances the x3 rung, no other),
    /// chosen the same way, in every fold (scripts/abr_saver_price.py, 2026-12-08).
    pub fn chunk() -> Self {
        Self {
            safety: 0.7,
            stall_weight: 3000.0,
            switch_weight: 2.0,
            compute_price: 1.0,
            end_buffer_s: 12.0,
            end_buffer_err: 0.5,
            floor_s: 4.0,
            top_rung: true,
            fallback_s: 8.0,
            guard_safety: 0.55,
            guard_quantile: 0.1,
            collapse: 0.5,
            saver_bit_price: 1.0,
            saver_energy_price: 0.17,
            ..Self::default()
        }
    }
}

#[derive(Clone)]
pub struct Nerve {
    pub params: NerveParams,
    pub table: QualityTable,
    pub preference: Preference,
    /// Battery level 0..=1, `None` on mains power.
    pub battery: Option<f64>,
    last_quality: Option<f64>,
    enhance_now: bool,
    /// Estimate used at the previous decision and the relative errors of the last ones.
    last_estimate: Option<f64>,
    errors: Vec<f64>,
    /// Buffer seen at the previous decision (the fallback acts on a falling buffer).
    last_buffer: Option<f64>,
    /// Every throughput measured in the session, bit/s, sorted (for `guard_quantile`).
    history: Vec<f64>,
    /// The highest safe rung at the last decision ([`Nerve::safe_rung`]).
    safe: Option<usize>,
}

/// What one look-ahead is planned with: fixed for the whole search of one decision.
struct Plan<'a> {
    /// Planning throughput (discounted), bit/s.
    tput: f64,
    /// Guard estimate the hard constraint is checked at, bit/s.
    guard: f64,
    lat: f64,
    chunk: f64,
    cap: f64,
    /// Real sizes of the next chunk per rung, bits.
    first_sizes: &'a [f64],
    /// Nominal bitrates of the rungs the table covers.
    bitrates: &'a [f64],
    horizon: usize,
    tail: f64,
    end_target: f64,
    /// Buffer-safety floor (0 = stalls priced only).
    floor: f64,
    /// Survival share of the guard estimate (0 = off).
    collapse: f64,
}

/// The state of a plan after some of its chunks.
#[derive(Clone, Copy, Debug)]
struct Node {
    /// Buffer, s, and enhancement backlog, s.
    b: f64,
    e: f64,
    prev: Option<f64>,
    score: f64,
    /// Seconds by which the plan breaks the floor (or stalls) so far.
    violation: f64,
}

/// The best plan found: ranked by violation first, score second; ties keep the earliest plan in
/// lexicographic order (as `mpc::best_first_rung`'s strict `>` does).
#[derive(Clone, Copy, Debug)]
struct Best {
    violation: f64,
    score: f64,
    rung: usize,
}

/// Seconds by which one planned download breaks the buffer floor: a stall (the buffer empties
/// before the chunk arrives), plus how far the buffer after arrival ends below
/// `min(floor, the buffer before the download)`.
pub fn floor_violation(floor: f64, before: f64, dt: f64, chunk: f64) -> f64 {
    let stall = (dt - before).max(0.0);
    let after = (before - dt).max(0.0) + chunk;
    stall + (floor.min(before) - after).max(0.0)
}

/// BBA-0's rung for `buffer_s` (Pensieve's `bb.py`: lowest below 5 s, top from 15 s, linear in
/// rung index between): the bitrate-only choice `nerve` falls back to on a low buffer.
pub fn bba_rung(buffer_s: f64, top: usize) -> usize {
    bba_rung_scaled(buffer_s, top, 1.0)
}

/// [`bba_rung`] with its reservoir and cushion scaled by `k` (a player whose buffer holds a
/// fraction `k` of the 60 s BBA-0 was made for).
pub fn bba_rung_scaled(buffer_s: f64, top: usize, k: f64) -> usize {
    let reservoir = 5.0 * k;
    let cushion = 10.0 * k;
    if buffer_s < reservoir {
        0
    } else if buffer_s >= reservoir + cushion || cushion <= 0.0 {
        top
    } else {
        ((top as f64) * (buffer_s - reservoir) / cushion).floor() as usize
    }
}

/// The buffer cap, seconds, the planner's buffer levels (floor, fallback, end-buffer target,
/// BBA-0's reservoir and cushion) were set for: the chunk scenario's. A player that keeps less
/// gets them scaled by its cap / this. Unscaled, a 4 s cap (a low-latency live player) sits
/// below the 4 s floor and the 8 s fallback for good: the buffer may never shrink and every
/// small fall sends the plan to BBA-0's lowest rung, so on a 30 Mbit/s LTE link the planner
/// streamed the lowest rung 78% of the time in the simulator (and the learned policy, which
/// imitates it, learnt that).
pub const REFERENCE_CAP_S: f64 = 60.0;

/// The buffer levels of one decision, seconds, for the player's cap.
struct Levels {
    floor: f64,
    fallback: f64,
    end_buffer: f64,
    /// BBA-0's scale for the fallback rung.
    bba: f64,
}

impl Levels {
    /// Every level in proportion to the cap, unchanged from [`REFERENCE_CAP_S`] up. (Capping
    /// each level at half the cap instead, which leaves a 30 s player the 60 s levels, lost 4-6
    /// QoE points a chunk at 30 s on the slow families in the simulator, and did no better at 4 s.)
    fn of(p: &NerveParams, cap_s: f64) -> Self {
        let k = if cap_s > 0.0 { (cap_s / REFERENCE_CAP_S).min(1.0) } else { 1.0 };
        Self { floor: p.floor_s * k, fallback: p.fallback_s * k, end_buffer: p.end_buffer_s * k, bba: k }
    }
}

impl Nerve {
    pub fn new(table: QualityTable, params: NerveParams) -> Self {
        Self {
            params,
            table,
            preference: Preference::Balanced,
            battery: None,
            last_quality: None,
            enhance_now: true,
            last_estimate: None,
            errors: Vec::new(),
            last_buffer: None,
            history: Vec::new(),
            safe: None,
        }
    }

    /// Whether the planner saves battery now: at battery-saver, or below 20% charge at any
    /// preference.
    fn saving_battery(&self) -> bool {
        self.preference == Preference::BatterySaver || self.battery.is_some_and(|b| b < 0.2)
    }

    /// Quality points per joule charged for enhancement right now.
    fn energy_price(&self) -> f64 {
        if self.saving_battery() {
            (10.0 * self.params.energy_price).max(self.params.saver_energy_price)
        } else if self.preference == Preference::Balanced {
            self.params.energy_price
        } else {
            0.0
        }
    }

    /// The battery saver's price per megabit right now (0 unless saving battery).
    fn saver_bit_price(&self) -> f64 {
        if self.saving_battery() { self.params.saver_bit_price } else { 0.0 }
    }

    /// Quality points charged for downloading a chunk of `size` bits and `chunk_s` seconds right
    /// now. The saver's price is per megabit of a 4 s chunk (the scenario it was chosen in) and
    /// scales with 4 / `chunk_s`, so that a second of video at a bitrate costs the same against
    /// the quality it shows whatever the segment length (with 1 s segments a chunk's quality
    /// counts four times per 4 s of video, its bits once).
    fn bit_cost(&self, size: f64, chunk_s: f64) -> f64 {
        let saver = self.saver_bit_price() * SAVER_PRICE_CHUNK_S / chunk_s.max(1e-3);
        (self.params.bit_price + saver) * size / 1e6
    }

    /// Best level for a chunk of `rung` that arrives with `buffer_s` of media buffered (itself
    /// included) and `backlog_s` of enhancement still queued: it must finish before the chunk
    /// plays (BONES' deadline rule) and be worth its compute and energy.
    pub fn pick_level(&self, rung: usize, buffer_s: f64, backlog_s: f64, chunk_s: f64) -> (usize, f64, f64) {
        if !self.enhance_now {
            return (0, self.table.base(rung), 0.0);
        }
        let price = self.params.compute_price + self.energy_price() * self.params.enhance_power_w;
        let slack = buffer_s - chunk_s - backlog_s;
        let base = self.table.base(rung);
        let (mut best, mut best_q, mut best_score, mut best_c) = (0, base, base, 0.0);
        for l in 1..self.table.levels() {
            let c = self.table.cost(rung, l);
            let Some(q) = self.table.get(rung, l) else { continue };
            if c > slack {
                continue;
            }
            let score = q - price * c;
            if score > best_score {
                (best, best_q, best_score, best_c) = (l, q, score, c);
            }
        }
        (best, best_q, best_c)
    }

    /// Whether the top rung's classical quality is at least that of every (rung, level) below
    /// it: then enhancing a lower rung can never show more than the top rung does.
    pub fn top_is_best(&self, rungs: usize) -> bool {
        let top = rungs.saturating_sub(1);
        let q_top = self.table.base(top);
        (0..top).all(|r| (0..self.table.levels()).all(|l| self.table.get(r, l).is_none_or(|q| q <= q_top)))
    }

    /// One planned chunk `k` at rung `r` after `n`.
    fn step(&self, plan: &Plan<'_>, n: Node, k: usize, r: usize) -> Node {
        let p = &self.params;
        let size = if k == 0 { plan.first_sizes.get(r).copied().unwrap_or(0.0) } else { plan.bitrates[r] * plan.chunk };
        let dt = plan.lat + if plan.tput > 0.0 { size / plan.tput } else { 1e9 };
        let violation = if plan.floor > 0.0 {
            let dt_guard = plan.lat + if plan.guard > 0.0 { size / plan.guard } else { 1e9 };
            let survive = if plan.collapse > 0.0 { (plan.lat + size / (plan.collapse * plan.guard).max(1e-9) - n.b).max(0.0) } else { 0.0 };
            floor_violation(plan.floor, n.b, dt_guard, plan.chunk) + survive
        } else {
            0.0
        };
        let stall = (dt - n.b).max(0.0);
        let mut b = (n.b - dt).max(0.0) + plan.chunk;
        let mut e = (n.e - dt).max(0.0);
        let (_, q, c) = self.pick_level(r, b, e, plan.chunk);
        e += c;
        // a full buffer makes the player wait, and the device keeps working meanwhile
        if b > plan.cap {
            e = (e - (b - plan.cap)).max(0.0);
            b = plan.cap;
        }
        let score = n.score + (q - self.bit_cost(size, plan.chunk) - p.stall_weight * stall - p.switch_weight * n.prev.map_or(0.0, |pq: f64| (q - pq).abs()));
        Node { b, e, prev: Some(q), score, violation: n.violation + violation }
    }

    /// The plan's final score: its chunks, the tail and the end-buffer target.
    fn finish(&self, plan: &Plan<'_>, n: Node, last: usize) -> f64 {
        let p = &self.params;
        let mut score = n.score;
        if plan.tail > 0.0
            && let Some(q) = n.prev
        {
            // The last choice kept for `tail` more chunks: each drains the buffer by what its
            // download takes beyond a chunk's duration.
            let size = plan.bitrates[last] * plan.chunk;
            let dt = plan.lat + if plan.tput > 0.0 { size / plan.tput } else { 1e9 };
            let stall = ((dt - plan.chunk).max(0.0) * plan.tail - n.b).max(0.0);
            score += plan.tail * (q - self.bit_cost(size, plan.chunk)) - p.stall_weight * stall;
        }
        score - p.stall_weight * p.end_buffer_weight * (plan.end_target - n.b).max(0.0)
    }

    /// Depth-first search over every rung sequence of the horizon, in lexicographic order: the
    /// same plans and the same tie rule as `mpc::best_first_rung`, each prefix evaluated once.
    /// `best[r]` is the best plan that starts with rung `r`.
    fn search(&self, plan: &Plan<'_>, n: Node, k: usize, first: usize, best: &mut [Best]) {
        for r in 0..plan.bitrates.len() {
            let m = self.step(plan, n, k, r);
            let first = if k == 0 { r } else { first };
            if k + 1 == plan.horizon {
                let score = self.finish(plan, m, r);
                let b = &mut best[first];
                if m.violation < b.violation || (m.violation == b.violation && score > b.score) {
                    *b = Best { violation: m.violation, score, rung: first };
                }
            } else {
                self.search(plan, m, k + 1, first, best);
            }
        }
    }

    /// Seconds by which holding rung `r` for the whole horizon, downloaded at `tput`, breaks the
    /// floor (stalls count even with the floor off).
    fn hold_violation(&self, plan: &Plan<'_>, buffer_s: f64, r: usize, tput: f64) -> f64 {
        let mut b = buffer_s;
        let mut v = 0.0;
        for k in 0..plan.horizon {
            let size = if k == 0 { plan.first_sizes.get(r).copied().unwrap_or(0.0) } else { plan.bitrates[r] * plan.chunk };
            let dt = plan.lat + if tput > 0.0 { size / tput } else { 1e9 };
            v += floor_violation(plan.floor.max(0.0), b, dt, plan.chunk);
            b = ((b - dt).max(0.0) + plan.chunk).min(plan.cap);
        }
        v
    }

    /// The first rung of the best plan (least violation, then best score), and the highest first
    /// rung whose best plan breaks the constraint no more than the best plan does (the safe set's
    /// top, for [`Nerve::safe_rung`]).
    fn plan(&self, plan: &Plan<'_>, start: Node) -> (usize, usize) {
        let mut best = vec![Best { violation: f64::INFINITY, score: f64::NEG_INFINITY, rung: 0 }; plan.bitrates.len()];
        self.search(plan, start, 0, 0, &mut best);
        let mut top = Best { violation: f64::INFINITY, score: f64::NEG_INFINITY, rung: 0 };
        for b in &best {
            if b.violation < top.violation || (b.violation == top.violation && b.score > top.score) {
                top = *b;
            }
        }
        let safe = best.iter().rposition(|b| b.violation <= top.violation + SAFE_EPS_S).unwrap_or(top.rung);
        (top.rung, safe.max(top.rung))
    }

    /// The highest rung the planner held safe at its last decision: as safe as its own choice
    /// by the hard constraint (the buffer floor and survival rule at the guard throughput), and
    /// under the low-buffer fallback. `None` before the first decision. A learned policy is
    /// shielded with it ([`crate::learned::Ppo`]).
    pub fn safe_rung(&self) -> Option<usize> {
        self.safe
    }

    /// The quality actually played for the last decision, when someone else decided (the
    /// shield's planner scores switches from what the viewer saw, not from its own advice).
    pub fn played(&mut self, d: Decision) {
        self.last_quality = Some(self.table.get(d.rung, d.level).unwrap_or(self.table.base(d.rung)));
    }
}

/// The chunk duration `NerveParams::saver_bit_price` is stated for (the chunk scenario's).
const SAVER_PRICE_CHUNK_S: f64 = 4.0;

/// Seconds of constraint violation below which two plans count as equally safe (sums of
/// floating-point download times).
const SAFE_EPS_S: f64 = 1e-6;

impl Policy for Nerve {
    fn name(&self) -> &'static str {
        "nerve"
    }

    fn decide(&mut self, obs: &Observation<'_>) -> Decision {
        self.enhance_now = obs.enhance_available;
        let p = &self.params;
        let l = obs.ladder;
        let chunk = l.chunk_s();
        // Score the previous estimate against the throughput the last download measured.
        if let (Some(est), Some(&actual)) = (self.last_estimate, obs.recent_bps.last())
            && actual > 0.0
        {
            self.errors.push((est - actual).abs() / actual);
            if self.errors.len() > 5 {
                self.errors.remove(0);
            }
        }
        self.last_estimate = obs.throughput_bps;
        let max_err = self.errors.iter().copied().fold(0.0, f64::max);
        let tput = obs.throughput_bps.unwrap_or(0.0) * p.safety / (1.0 + p.robust * max_err);
        let raw = obs.throughput_bps.unwrap_or(0.0);
        let mut guard = if p.guard_safety > 0.0 { raw * p.guard_safety } else { tput };
        guard = guard.min(raw / (1.0 + p.guard_robust * max_err));
        if let Some(&x) = obs.recent_bps.last()
            && x.is_finite()
        {
            let at = self.history.partition_point(|&h| h < x);
            self.history.insert(at, x);
        }
        if p.guard_quantile > 0.0 && !self.history.is_empty() {
            let i = ((self.history.len() - 1) as f64 * p.guard_quantile.min(1.0)).floor() as usize;
            guard = guard.min(self.history[i]);
        }
        let levels = Levels::of(p, obs.buffer_cap.as_secs_f64());
        let end_buffer = levels.end_buffer;
        let end_target = if p.end_buffer_err > 0.0 { end_buffer * (max_err / p.end_buffer_err).min(1.0) } else { end_buffer };
        let rungs = l.rungs().min(self.table.rungs());
        let horizon = crate::mpc::bounded_horizon(rungs, p.horizon.min(obs.total_chunks.saturating_sub(obs.chunk_index)).max(1));
        let buffer0 = obs.buffer.as_secs_f64();
        let backlog0 = obs.enhance_backlog.as_secs_f64();
        let falling = self.last_buffer.is_some_and(|lb| buffer0 < lb);
        self.last_buffer = Some(buffer0);
        if rungs == 0 {
            return Decision::default();
        }
        let plan = Plan {
            tput,
            guard,
            lat: obs.latency.as_secs_f64(),
            chunk,
            cap: obs.buffer_cap.as_secs_f64(),
            first_sizes: obs.next_sizes_bits,
            bitrates: &l.bitrates_bps[..rungs],
            horizon,
            tail: p.tail.min(obs.total_chunks.saturating_sub(obs.chunk_index + horizon)) as f64,
            end_target,
            floor: levels.floor,
            collapse: p.collapse,
        };
        let start = Node { b: buffer0, e: backlog0, prev: self.last_quality, score: 0.0, violation: 0.0 };
        let top = rungs - 1;
        let (planned, safe) = self.plan(&plan, start);
        // The top rung is affordable when the planning estimate sustains it: each of its chunks
        // downloads within a chunk's duration, so holding it for the horizon neither drains the
        // buffer nor breaks the floor.
        let affordable = p.top_rung
            && self.saver_bit_price() == 0.0
            && (0..plan.horizon).all(|k| {
                let size = if k == 0 { plan.first_sizes.get(top).copied().unwrap_or(0.0) } else { plan.bitrates[top] * chunk };
                plan.tput > 0.0 && plan.lat + size / plan.tput <= chunk
            })
            && self.hold_violation(&plan, buffer0, top, plan.tput) == 0.0;
        let mut rung = if affordable && self.top_is_best(rungs) { top } else { planned };
        let mut safe = safe.max(rung);
        if p.fallback_s > 0.0 && buffer0 < levels.fallback && falling {
            let bba = bba_rung_scaled(buffer0, top, levels.bba);
            rung = rung.min(bba);
            safe = safe.min(bba);
        }
        self.safe = Some(safe);
        // The level for the chosen rung with the buffer this download is expected to leave.
        let size = obs.next_sizes_bits.get(rung).copied().unwrap_or(0.0);
        let dt = plan.lat + if tput > 0.0 { size / tput } else { 1e9 };
        let b = (buffer0 - dt).max(0.0) + chunk;
        let e = (backlog0 - dt).max(0.0);
        let (level, q, _) = self.pick_level(rung, b, e, chunk);
        self.last_quality = Some(q);
        Decision { rung, level }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Ladder;
    use std::time::Duration;

    fn ladder() -> Ladder {
        Ladder { bitrates_bps: vec![0.4e6, 0.8e6, 1.2e6, 2.4e6, 4.7e6], chunk: Duration::from_secs(4) }
    }

    // BONES' IMDN (content-aware, RTX 3060 Ti) means, rounded: enhancing rung 2 to "high"
    // (87) costs 8.8 s per chunk; "medium" (85) 2.8 s.
    fn table() -> QualityTable {
        QualityTable {
            quality: vec![
                vec![Some(39.3), Some(48.5), Some(54.0), Some(60.8)],
                vec![Some(64.0), Some(72.4), Some(75.9), Some(79.9)],
                vec![Some(76.8), Some(82.4), Some(85.2), Some(87.2)],
                vec![Some(90.1), None, None, None],
                vec![Some(100.0), None, None, None],
            ],
            compute_s: vec![
                vec![0.0, 0.9, 1.27, 2.88],
                vec![0.0, 1.05, 1.65, 4.44],
                vec![0.0, 1.47, 2.83, 8.82],
                vec![0.0, f64::INFINITY, f64::INFINITY, f64::INFINITY],
                vec![0.0, f64::INFINITY, f64::INFINITY, f64::INFINITY],
            ],
        }
    }

    fn obs<'a>(l: &'a Ladder, sizes: &'a [f64], buffer: f64, tput: f64) -> Observation<'a> {
        Observation {
            chunk_index: 10,
            total_chunks: 100,
            buffer: Duration::from_secs_f64(buffer),
            buffer_cap: Duration::from_secs(60),
            enhance_backlog: Duration::ZERO,
            throughput_bps: Some(tput),
            latency: Duration::from_millis(100),
            recent_bps: &[],
            last_rung: Some(2),
            next_sizes_bits: sizes,
            ladder: l,
            enhance_available: true,
        }
    }

    #[test]
    fn plenty_of_bandwidth_takes_the_top_rung() {
        let l = ladder();
        let sizes: Vec<f64> = l.bitrates_bps.iter().map(|b| b * 4.0).collect();
        let mut p = Nerve::new(table(), NerveParams::default());
        assert_eq!(p.decide(&obs(&l, &sizes, 30.0, 20e6)).rung, 4);
    }

    #[test]
    fn scarce_bandwidth_takes_a_low_rung_and_enhances_it() {
        let l = ladder();
        let sizes: Vec<f64> = l.bitrates_bps.iter().map(|b| b * 4.0).collect();
        let mut p = Nerve::new(table(), NerveParams::default());
        let d = p.decide(&obs(&l, &sizes, 8.0, 0.9e6));
        assert!(d.rung <= 1, "{d:?}");
        assert!(d.level > 0, "{d:?}");
    }

    #[test]
    fn no_enhancement_when_it_cannot_finish_before_playback() {
        let p = Nerve::new(table(), NerveParams::default());
        // the chunk plays right after arriving (buffer = itself): no time to enhance
        assert_eq!(p.pick_level(1, 4.0, 0.0, 4.0).0, 0);
        // with 10 s ahead of it, it can
        assert!(p.pick_level(1, 14.0, 0.0, 4.0).0 > 0);
    }

    #[test]
    fn battery_saver_enhances_less() {
        let mut p = Nerve::new(table(), NerveParams::default());
        let normal = p.pick_level(0, 30.0, 0.0, 4.0).0;
        p.preference = Preference::BatterySaver;
        let saver = p.pick_level(0, 30.0, 0.0, 4.0).0;
        assert!(saver < normal, "{saver} vs {normal}");
    }

    /// The chunk scenario's ladder with a table shaped like the measured one: enhancement lifts
    /// the 360p rungs, but no enhanced rung reaches the 720p top rung's 97.
    fn chunk_ladder() -> Ladder {
        Ladder { bitrates_bps: vec![0.3e6, 0.75e6, 1.2e6, 1.85e6, 2.85e6, 4.3e6], chunk: Duration::from_secs(4) }
    }

    fn chunk_table() -> QualityTable {
        QualityTable {
            quality: vec![
                vec![Some(43.4), Some(52.1)],
                vec![Some(63.0), Some(73.3)],
                vec![Some(81.9), Some(89.3)],
                vec![Some(84.8), Some(92.2)],
                vec![Some(95.5), None],
                vec![Some(97.2), None],
            ],
            compute_s: vec![vec![0.0, 0.8], vec![0.0, 1.2], vec![0.0, 2.5], vec![0.0, 2.5], vec![0.0, f64::INFINITY], vec![0.0, f64::INFINITY]],
        }
    }

    fn chunk_obs<'a>(l: &'a Ladder, sizes: &'a [f64], recent: &'a [f64], buffer: f64, tput: f64) -> Observation<'a> {
        Observation { recent_bps: recent, chunk_index: 10, total_chunks: 48, latency: Duration::ZERO, ..obs(l, sizes, buffer, tput) }
    }

    impl Nerve {
        fn decide_once(mut self, o: &Observation<'_>) -> Decision {
            self.decide(o)
        }
    }

    #[test]
    fn floor_violation_by_hand() {
        // (floor, buffer before, download s, chunk s) -> seconds broken
        let cases = [
            (8.0, 20.0, 5.0, 4.0, 0.0, "ends at 19 s, above the floor"),
            (8.0, 10.0, 5.0, 4.0, 0.0, "ends at 9 s, above the floor"),
            (8.0, 10.0, 7.0, 4.0, 1.0, "ends at 7 s, 1 s below the floor"),
            (8.0, 6.0, 3.0, 4.0, 0.0, "below the floor the buffer grows: allowed"),
            (8.0, 6.0, 5.0, 4.0, 1.0, "below the floor the buffer shrinks by 1 s"),
            (8.0, 3.0, 5.0, 4.0, 2.0 + 0.0, "a 2 s stall; it ends at 4 s, above the 3 s it had"),
            (0.0, 3.0, 5.0, 4.0, 2.0, "with no floor, only the stall counts"),
        ];
        for (floor, before, dt, chunk, want, why) in cases {
            let got = floor_violation(floor, before, dt, chunk);
            assert!((got - want).abs() < 1e-12, "{why}: {got} vs {want}");
        }
    }

    #[test]
    fn bba_rung_by_hand() {
        for (buffer, want) in [(0.0, 0), (4.9, 0), (5.0, 0), (7.0, 1), (10.0, 2), (14.9, 4), (15.0, 5), (40.0, 5)] {
            assert_eq!(bba_rung(buffer, 5), want, "{buffer} s");
        }
    }

    #[test]
    fn the_buffer_floor_keeps_plans_off_draining_rungs() {
        // A 2 Mbit/s link trusted at 0.9 for planning; the guard trusts 0.5 of it (1 Mbit/s).
        // (buffer s, floor s, survival share, rung taken)
        let l = chunk_ladder();
        let sizes: Vec<f64> = l.bitrates_bps.iter().map(|b| b * 4.0).collect();
        let recent = [2e6; 5];
        let base = NerveParams { safety: 0.9, guard_safety: 0.5, top_rung: false, ..NerveParams::chunk() };
        let cases = [
            // without the constraint the priced plan spends the buffer on an enhanced 1.85
            // Mbit/s (7.4 Mbit in 4.1 s at 1.8 Mbit/s)
            (10.0, 0.0, 0.0, 3, "floor off"),
            // with it, below the floor only rungs the guard sustains (<= 1 Mbit/s: 750 kbit/s)
            (6.0, 8.0, 0.0, 1, "below the floor"),
            (10.0, 8.0, 0.0, 2, "2 s above the floor"),
            // 14 s: the floor allows a 1.85 Mbit/s chunk (7.4 Mbit in 7.4 s, ending at 10.6 s)
            (14.0, 8.0, 0.0, 3, "6 s above the floor"),
            // but it would not survive the link halving (14.8 s at 0.5 Mbit/s); 1.2 Mbit/s
            // (4.8 Mbit in 9.6 s) would
            (14.0, 8.0, 0.5, 2, "survival"),
        ];
        for (buffer, floor, collapse, max_rung, why) in cases {
            let mut p = Nerve::new(chunk_table(), NerveParams { floor_s: floor, collapse, ..base.clone() });
            let d = p.decide(&chunk_obs(&l, &sizes, &recent, buffer, 2e6));
            assert_eq!(d.rung, max_rung, "{why}");
        }
    }

    #[test]
    fn the_floor_constraint_ranks_before_the_score() {
        // No plan keeps the floor on a 0.2 Mbit/s link: the least-breaking one (lowest rung) wins
        let l = chunk_ladder();
        let sizes: Vec<f64> = l.bitrates_bps.iter().map(|b| b * 4.0).collect();
        let recent = [0.2e6; 5];
        let mut p = Nerve::new(chunk_table(), NerveParams::chunk());
        assert_eq!(p.decide(&chunk_obs(&l, &sizes, &recent, 5.0, 0.2e6)).rung, 0);
    }

    #[test]
    fn battery_saver_enhances_where_the_gain_beats_its_energy_price() {
        // On the shipped generic table a 4 s chunk's enhancement costs (compute price 1 + the
        // saver's price x 15 W) x its compute seconds: at 0.17 per joule the x3 rung's +5.6 VMAF
        // still pays, x4's +2.9 and x2's +6.3 (2.5 s of compute) do not; at 0.5 (the saver
        // until 2026-12-08) nothing does; at quality every level does.
        let file = crate::quality::TableFile::parse(crate::DEFAULT_TABLE).unwrap(); // ok: test code
        let table = QualityTable::from_file(&file, 1.0);
        let levels = |preference, saver_energy_price| {
            let mut p = Nerve::new(table.clone(), NerveParams { saver_energy_price, ..NerveParams::chunk() });
            p.preference = preference;
            (0..4).map(|rung| p.pick_level(rung, 30.0, 0.0, 4.0).0).collect::<Vec<_>>()
        };
        let chosen = NerveParams::chunk().saver_energy_price;
        assert_eq!(levels(Preference::BatterySaver, chosen), [0, 1, 0, 0]);
        assert_eq!(levels(Preference::BatterySaver, 0.5), [0, 0, 0, 0]);
        assert_eq!(levels(Preference::Quality, chosen), [1, 1, 1, 1]);
    }

    #[test]
    fn battery_saver_prices_bits_on_a_fast_link() {
        // 30 Mbit/s sustains the top rung by far. At quality the planner takes it; the saver's
        // price (1 point per megabit) makes the 2.85 Mbit/s rung's 5.8 Mbit less per chunk worth
        // more than the top rung's 1.7 VMAF points, and keeps the top rung when bits are free.
        let l = chunk_ladder();
        let sizes: Vec<f64> = l.bitrates_bps.iter().map(|b| b * 4.0).collect();
        let recent = [30e6; 5];
        let at = |preference, battery, saver_bit_price| {
            let mut p = Nerve::new(chunk_table(), NerveParams { saver_bit_price, ..NerveParams::chunk() });
            (p.preference, p.battery) = (preference, battery);
            p.decide(&chunk_obs(&l, &sizes, &recent, 30.0, 30e6)).rung
        };
        let price = NerveParams::chunk().saver_bit_price;
        assert!(price > 0.0);
        assert_eq!(at(Preference::Quality, None, price), 5);
        assert_eq!(at(Preference::Balanced, None, price), 5);
        assert_eq!(at(Preference::BatterySaver, None, price), 4);
        assert_eq!(at(Preference::BatterySaver, None, 0.0), 5, "no price: the top-rung shortcut");
        // a low battery saves as battery-saver does, at any preference
        assert_eq!(at(Preference::Quality, Some(0.1), price), 4);
        assert_eq!(at(Preference::Quality, Some(0.5), price), 5);
        // the same trade with 1 s segments: a quarter of the bits per chunk, charged four times
        // the rate per megabit
        let short = Ladder { chunk: Duration::from_secs(1), ..chunk_ladder() };
        let short_sizes: Vec<f64> = short.bitrates_bps.clone();
        for (preference, want) in [(Preference::Quality, 5), (Preference::BatterySaver, 4)] {
            let mut p = Nerve::new(chunk_table(), NerveParams::chunk());
            p.preference = preference;
            let d = p.decide(&chunk_obs(&short, &short_sizes, &recent, 30.0, 30e6));
            assert_eq!(d.rung, want, "1 s segments, {preference:?}");
        }
    }

    #[test]
    fn top_rung_rule() {
        // (link bit/s, top_rung, want top)
        let l = chunk_ladder();
        let sizes: Vec<f64> = l.bitrates_bps.iter().map(|b| b * 4.0).collect();
        let cases = [
            // 8 Mbit/s x 0.7 = 5.6 sustains 4.3: the top rung, not an enhanced 360p
            (8e6, true, true, "sustained"),
            // 5.5 Mbit/s x 0.7 = 3.85 does not sustain it: the planner decides (lower)
            (5.5e6, true, false, "not sustained"),
        ];
        for (link, rule, want_top, why) in cases {
            let recent = [link; 5];
            let params = NerveParams { top_rung: rule, ..NerveParams::chunk() };
            let mut p = Nerve::new(chunk_table(), params);
            let d = p.decide(&chunk_obs(&l, &sizes, &recent, 8.0, link));
            assert_eq!(d.rung == 5, want_top, "{why}: {d:?}");
        }
        // Where the top is sustained but the priced plan still enhances a lower rung (a short
        // buffer and a high end-buffer target), the rule overrides it.
        let link = 8e6;
        let recent = [link; 5];
        let greedy_buffer = NerveParams { end_buffer_s: 40.0, end_buffer_err: 0.0, ..NerveParams::chunk() };
        let without = Nerve::new(chunk_table(), NerveParams { top_rung: false, ..greedy_buffer.clone() })
            .decide_once(&chunk_obs(&l, &sizes, &recent, 8.0, link));
        let with = Nerve::new(chunk_table(), greedy_buffer).decide_once(&chunk_obs(&l, &sizes, &recent, 8.0, link));
        assert!(without.rung < 5, "the priced plan builds buffer on a lower rung: {without:?}");
        assert_eq!(with.rung, 5, "{with:?}");
        // A table whose enhanced lower rung beats the top rung: the rule does not apply.
        let mut t = chunk_table();
        t.quality[3][1] = Some(99.0);
        assert!(!Nerve::new(t, NerveParams::chunk()).top_is_best(6));
        assert!(Nerve::new(chunk_table(), NerveParams::chunk()).top_is_best(6));
    }

    #[test]
    fn a_small_buffer_cap_scales_the_buffer_levels() {
        // A 4 s cap with 1 s chunks on an 8 Mbit/s link, the buffer a little below the cap and
        // falling by the simulator's drain steps: the top rung is safe and the planner keeps it.
        // Unscaled (the 60 s levels), the 4 s floor and 8 s fallback sent it to the lowest rung.
        let l = Ladder { bitrates_bps: chunk_ladder().bitrates_bps, chunk: Duration::from_secs(1) };
        let sizes: Vec<f64> = l.bitrates_bps.clone();
        let recent = [8e6; 5];
        let at = |buffer: f64, cap: f64| Observation { buffer_cap: Duration::from_secs_f64(cap), ..chunk_obs(&l, &sizes, &recent, buffer, 8e6) };
        let mut p = Nerve::new(chunk_table(), NerveParams::chunk());
        for buffer in [3.95, 3.9, 3.85, 3.8] {
            let d = p.decide(&at(buffer, 4.0));
            assert_eq!(d.rung, 5, "buffer {buffer} s of a 4 s cap: {d:?}");
        }
        // at the chunk scenario's 60 s cap the same buffer is low and falling: BBA-0's lowest rung
        let mut p = Nerve::new(chunk_table(), NerveParams::chunk());
        p.decide(&at(3.95, 60.0));
        assert_eq!(p.decide(&at(3.9, 60.0)).rung, 0);
        assert_eq!((bba_rung_scaled(3.0, 5, 4.0 / 60.0), bba_rung_scaled(0.1, 5, 4.0 / 60.0), bba_rung_scaled(10.0, 5, 1.0)), (5, 0, 2));
    }

    #[test]
    fn fallback_to_bba_while_the_buffer_falls_low() {
        // (previous buffer, buffer, fallback s, highest rung allowed)
        let l = chunk_ladder();
        let sizes: Vec<f64> = l.bitrates_bps.iter().map(|b| b * 4.0).collect();
        let recent = [3e6; 5];
        let cases = [
            (20.0, 6.0, 8.0, 0, "falling below 8 s: BBA-0 at 6 s gives the lowest rung"),
            (20.0, 6.0, 0.0, 5, "fallback off"),
            (4.0, 6.0, 8.0, 5, "rising: no fallback"),
            (20.0, 9.0, 8.0, 5, "above the fallback level"),
        ];
        for (prev, buffer, fallback, max_rung, why) in cases {
            let params = NerveParams { fallback_s: fallback, ..NerveParams::chunk() };
            let mut p = Nerve::new(chunk_table(), params);
            p.decide(&chunk_obs(&l, &sizes, &recent, prev, 3e6));
            let d = p.decide(&chunk_obs(&l, &sizes, &recent, buffer, 3e6));
            assert!(d.rung <= max_rung, "{why}: {d:?}");
            if max_rung == 0 {
                // without the fallback the planner would take more
                let mut q = Nerve::new(chunk_table(), NerveParams { fallback_s: 0.0, ..NerveParams::chunk() });
                q.decide(&chunk_obs(&l, &sizes, &recent, prev, 3e6));
                assert!(q.decide(&chunk_obs(&l, &sizes, &recent, buffer, 3e6)).rung > 0, "{why}");
            }
        }
    }

    #[test]
    fn the_guard_follows_the_sessions_low_quantile() {
        // A session that has been at 0.5 Mbit/s and now measures 4 Mbit/s: with the guard at
        // the session's 10th percentile, the survival rule keeps 9 s of buffer off big chunks.
        let l = chunk_ladder();
        let sizes: Vec<f64> = l.bitrates_bps.iter().map(|b| b * 4.0).collect();
        let pick = |q: f64| {
            let mut p = Nerve::new(chunk_table(), NerveParams { guard_quantile: q, ..NerveParams::chunk() });
            for _ in 0..10 {
                p.decide(&chunk_obs(&l, &sizes, &[0.5e6], 20.0, 0.5e6));
            }
            p.decide(&chunk_obs(&l, &sizes, &[4e6; 5], 9.0, 4e6)).rung
        };
        assert!(pick(0.1) < pick(0.0), "{} vs {}", pick(0.1), pick(0.0));
    }

    #[test]
    fn with_a_bit_price_the_tail_lets_the_plan_leave_the_lowest_rung() {
        // Just after start-up on the lowest rung, on a steady 2 Mbit/s link, with bits priced:
        // rung 1 enhanced (79.9) is worth its 1.6 Mbit per chunk more than rung 0 enhanced
        // (60.8) at 10 points per Mbit (+3.1 a chunk), but the one-off switch penalty (2 x the
        // quality step) outweighs five chunks of that; the rest of the session does not.
        let l = ladder();
        let sizes: Vec<f64> = l.bitrates_bps.iter().map(|b| b * 4.0).collect();
        let params = NerveParams { bit_price: 10.0, switch_weight: 2.0, ..NerveParams::default() };
        let start = |tail: usize| {
            let mut p = Nerve::new(table(), NerveParams { tail, ..params });
            p.last_quality = Some(48.5);
            p.decide(&obs(&l, &sizes, 30.0, 2e6)).rung
        };
        assert_eq!(start(0), 0, "without the tail the plan stays on the lowest rung");
        assert_eq!(start(10), 1, "with it, the rung whose quality is worth its bits");
    }
}
