//! Chunk-level simulator with Pensieve's semantics (hongzimao/pensieve `sim/fixed_env.py`):
//! a chunk's download time follows the trace at 95% payload efficiency plus an 80 ms RTT;
//! the buffer drains meanwhile (a stall if it empties), gains one chunk on arrival, and the
//! player sleeps in 500 ms steps while it holds more than 60 s. The first chunk is fetched at
//! rung 1 before any decision (Pensieve's DEFAULT_QUALITY) and is left out of the scores.
//!
//! Added for enhancement: a compute queue. A chunk's enhancement is queued on arrival only if it
//! finishes before the chunk plays (as in BONES); the queue drains in real time.

use std::time::Duration;

use super::bones::EnhanceMode;
use super::trace::Trace;
use super::TraceResult;
use nerve_abr::energy::{EnergyModel, EnergyUse};
use nerve_abr::throughput::{DownloadSample, Estimator, EstimatorKind};
use nerve_abr::{Decision, Ladder, Observation, Policy, QualityTable};

/// Scenario settings (defaults: Pensieve's).
#[derive(Clone, Debug)]
pub struct ChunkSettings {
    pub chunks: usize,
    pub buffer_cap_s: f64,
    pub rtt_s: f64,
    pub payload_portion: f64,
    pub drain_step_s: f64,
    pub first_rung: usize,
    /// Quality points charged per second of stall in `qoe_quality` (the top VMAF, as Pensieve
    /// charges the top bitrate).
    pub stall_penalty: f64,
    /// The device's energy model (nerve_abr::energy); its radio is the traces' network's.
    pub energy: EnergyModel,
    /// Once the buffer passes `buffer_cap_s`, wait until it is down to this before the next
    /// download (battery saver's bursts, `nerve_abr::energy::resume_below_s`); `None` = the next
    /// download starts as soon as the buffer is back under the cap.
    pub resume_below_s: Option<f64>,
}

impl Default for ChunkSettings {
    fn default() -> Self {
        Self {
            chunks: 48,
            buffer_cap_s: 60.0,
            rtt_s: 0.08,
            payload_portion: 0.95,
            drain_step_s: 0.5,
            first_rung: 1,
            stall_penalty: 100.0,
            energy: EnergyModel::default(),
            resume_below_s: None,
        }
    }
}

struct Link<'a> {
    time: &'a [f64],
    bw_mbps: &'a [f64],
    ptr: usize,
    last: f64,
}

impl Link<'_> {
    fn advance_ptr(&mut self) {
        self.ptr += 1;
        if self.ptr >= self.time.len() {
            self.ptr = 1;
            self.last = 0.0;
        }
    }

    /// Seconds to move `bytes` (payload portion applied), following the trace.
    fn download(&mut self, bytes: f64, portion: f64) -> f64 {
        let mut delay = 0.0;
        let mut sent = 0.0;
        let mut idle = 0usize;
        loop {
            let tput = self.bw_mbps[self.ptr] * 1e6 / 8.0;
            let dur = self.time[self.ptr] - self.last;
            let payload = tput * dur * portion;
            if sent + payload > bytes && tput > 0.0 {
                let frac = (bytes - sent) / tput / portion;
                delay += frac;
                self.last += frac;
                return delay;
            }
            idle = if payload > 0.0 { 0 } else { idle + 1 };
            if idle > 2 * self.time.len() + 2 {
                return delay + 3600.0;
            }
            sent += payload;
            delay += dur.max(0.0);
            self.last = self.time[self.ptr];
            self.advance_ptr();
        }
    }

    fn sleep(&mut self, mut secs: f64) {
        let mut guard = 0usize;
        while secs > 0.0 {
            let dur = self.time[self.ptr] - self.last;
            if dur > secs {
                self.last += secs;
                return;
            }
            secs -= dur.max(0.0);
            self.last = self.time[self.ptr];
            self.advance_ptr();
            guard += 1;
            if guard > 10_000_000 {
                return;
            }
        }
    }
}

/// Every (rung, level) the table has for this ladder, as (quality, megabits per chunk).
fn table_entries<'a>(ladder: &'a Ladder, table: &'a QualityTable) -> impl Iterator<Item = (f64, f64)> + 'a {
    let mbit = ladder.chunk_s() / 1e6;
    (0..ladder.rungs().min(table.rungs()))
        .flat_map(move |r| (0..table.levels()).filter_map(move |l| table.get(r, l).map(|q| (q, ladder.bitrates_bps[r] * mbit))))
}

/// The highest `qoe_quality` any policy can score on any trace, whatever the network: every
/// scored chunk is at most the table's best quality `M`, and the switch penalties add up to at
/// least the climb from the unscored first chunk's quality `q0` to the best chunk shown, so over
/// the `n - 1` scored chunks the score is at most `((n - 2) M + q0) / (n - 1)` (stalls only
/// lower it). Where a policy reaches it, no policy can beat that policy on that trace set.
pub fn qoe_quality_bound(ladder: &Ladder, table: &QualityTable, s: &ChunkSettings) -> f64 {
    let n = s.chunks;
    if n < 2 {
        return 0.0;
    }
    let q0 = table.base(s.first_rung.min(ladder.top()));
    let best = table_entries(ladder, table).map(|(q, _)| q).fold(q0, f64::max);
    ((n - 2) as f64 * best + q0) / (n - 1) as f64
}

/// The fewest megabits any policy can download in a session whose scored chunks show a mean
/// quality of at least `target`, or `None` above the table's best. Each chunk is some (rung,
/// level) of the table, with its bits and quality. Mixing them freely (fractions of a chunk
/// allowed) can only do better than whole chunks. So the mean bits per chunk are at least the
/// lower convex hull of (quality, bits) at `target`, found over all pairs of points. The first
/// chunk, fetched at `first_rung` before any decision, is added as it is.
pub fn min_bits_mb(ladder: &Ladder, table: &QualityTable, s: &ChunkSettings, target: f64) -> Option<f64> {
    let points: Vec<(f64, f64)> = table_entries(ladder, table).collect();
    let mut best: Option<f64> = None;
    for &(qa, ba) in &points {
        if qa >= target {
            best = Some(best.map_or(ba, |b| b.min(ba)));
        }
        for &(qb, bb) in &points {
            if qa < target && qb > target {
                let mix = ba + (target - qa) / (qb - qa) * (bb - ba);
                best = Some(best.map_or(mix, |b| b.min(mix)));
            }
        }
    }
    let first = ladder.bitrates_bps[s.first_rung.min(ladder.top())] * ladder.chunk_s() / 1e6;
    best.map(|per_chunk| first + per_chunk * s.chunks.saturating_sub(1) as f64)
}

/// What happened to one chunk in a [`Session`]: the session's per-chunk terms, from which the
/// whole-session scores ([`TraceResult`]) and the Python environment's reward are both made.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChunkOutcome {
    /// Index of the chunk in the session (0 = the unscored first chunk).
    pub index: usize,
    pub rung: usize,
    /// Enhancement level enacted (0 when the decision's level could not finish before playback).
    pub level: usize,
    /// Displayed quality of the chunk (the table's, at `rung` and `level`).
    pub quality: f64,
    /// |quality - the previous chunk's quality| (0 for the first chunk).
    pub quality_change: f64,
    /// Stall this chunk caused, seconds (0 for the first chunk: its wait is start-up).
    pub rebuffer_s: f64,
    /// Download time (trace + RTT), seconds.
    pub download_s: f64,
    pub bits: f64,
    /// Device energy this chunk cost, joules: the radio during its download and the idle gap
    /// after it, decoding one chunk of video, and its enhancement.
    pub energy_j: f64,
    /// Buffer after the chunk arrived (and after any idle wait), seconds.
    pub buffer_s: f64,
}

/// One chunk-scenario session, chunk by chunk: the decision comes from outside (a [`Policy`] in
/// [`run`], an agent in the Python environment), so every caller plays the same dynamics.
///
/// It owns copies of the ladder, table and settings (a few numbers), so a caller can keep a
/// session alive between calls (the Python environment holds one per episode).
pub struct Session {
    ladder: Ladder,
    table: QualityTable,
    s: ChunkSettings,
    mode: EnhanceMode,
    name: String,
    time: Vec<f64>,
    bw_mbps: Vec<f64>,
    ptr: usize,
    last: f64,
    est: Estimator,
    sizes: Vec<f64>,
    buffer: f64,
    backlog: f64,
    rebuf_total: f64,
    startup: f64,
    wall: f64,
    bits: f64,
    compute: f64,
    rungs: Vec<usize>,
    quality: Vec<f64>,
    rebufs: Vec<f64>,
    enhanced: usize,
    last_rung: Option<usize>,
    used: EnergyUse,
}

impl Session {
    pub fn new(ladder: &Ladder, table: &QualityTable, trace: &Trace, mode: EnhanceMode, s: &ChunkSettings) -> Self {
        let chunk = ladder.chunk_s();
        let time: Vec<f64> = trace.points.iter().map(|p| p.0).collect();
        let bw_mbps: Vec<f64> = trace.points.iter().map(|p| p.1 / 1e6).collect();
        let last = time.first().copied().unwrap_or(0.0);
        Self {
            ladder: ladder.clone(),
            table: table.clone(),
            s: s.clone(),
            mode,
            name: trace.name.clone(),
            time,
            bw_mbps,
            ptr: 1,
            last,
            est: Estimator::new(EstimatorKind::HarmonicMean, chunk),
            sizes: ladder.bitrates_bps.iter().map(|b| b * chunk).collect(),
            buffer: 0.0,
            backlog: 0.0,
            rebuf_total: 0.0,
            startup: 0.0,
            wall: 0.0,
            bits: 0.0,
            compute: 0.0,
            rungs: Vec::with_capacity(s.chunks),
            quality: Vec::with_capacity(s.chunks),
            rebufs: Vec::with_capacity(s.chunks),
            enhanced: 0,
            last_rung: None,
            used: EnergyUse::default(),
        }
    }

    /// Index of the next chunk.
    pub fn index(&self) -> usize {
        self.rungs.len()
    }

    pub fn done(&self) -> bool {
        self.index() >= self.s.chunks
    }

    /// The decision of the first chunk, made before anything is known (Pensieve's
    /// DEFAULT_QUALITY).
    pub fn first_decision(&self) -> Decision {
        Decision { rung: self.s.first_rung.min(self.ladder.top()), level: 0 }
    }

    pub fn ladder(&self) -> &Ladder {
        &self.ladder
    }

    pub fn table(&self) -> &QualityTable {
        &self.table
    }

    pub fn settings(&self) -> &ChunkSettings {
        &self.s
    }

    /// What a policy sees before the next chunk.
    pub fn observation(&self) -> Observation<'_> {
        Observation {
            chunk_index: self.index(),
            total_chunks: self.s.chunks,
            buffer: Duration::from_secs_f64(self.buffer),
            buffer_cap: Duration::from_secs_f64(self.s.buffer_cap_s),
            enhance_backlog: Duration::from_secs_f64(self.backlog),
            throughput_bps: self.est.throughput_bps(),
            latency: Duration::ZERO,
            recent_bps: self.est.recent(),
            last_rung: self.last_rung,
            next_sizes_bits: &self.sizes,
            ladder: &self.ladder,
            enhance_available: self.mode == EnhanceMode::Joint,
        }
    }

    /// Fetch the next chunk at `decision` and play the session forward to the next decision.
    pub fn step(&mut self, decision: Decision) -> ChunkOutcome {
        let i = self.index();
        let (chunk, rung) = (self.ladder.chunk_s(), decision.rung.min(self.ladder.top()));
        let size_bits = self.sizes[rung];
        let energy_before = self.used.radio_j;
        let delay = self.download(size_bits / 8.0, self.s.payload_portion) + self.s.rtt_s;
        self.bits += size_bits;
        self.used.radio_j += self.s.energy.download_j(size_bits, delay);
        self.est.push(DownloadSample { bits: size_bits, transfer_s: delay, latency_s: 0.0 });
        let rebuf = (delay - self.buffer).max(0.0);
        if i == 0 {
            self.startup = delay;
        } else {
            self.rebuf_total += rebuf;
        }
        self.buffer = (self.buffer - delay).max(0.0) + chunk;
        self.backlog = (self.backlog - delay).max(0.0);
        self.wall += delay;

        // enhancement of this chunk: must finish before it plays
        let level = match self.mode {
            EnhanceMode::None => 0,
            EnhanceMode::Greedy => self.table.best_level_within(rung, self.buffer - chunk - self.backlog, chunk),
            EnhanceMode::Joint => decision.level,
        };
        let cost = self.table.cost(rung, level);
        let level = if level > 0 && self.table.get(rung, level).is_some() && self.backlog + cost <= self.buffer - chunk { level } else { 0 };
        if level > 0 {
            self.backlog += cost;
            self.compute += cost;
            self.enhanced += 1;
        }
        let q = self.table.get(rung, level).unwrap_or(0.0);
        let change = self.quality.last().map_or(0.0, |p| (q - p).abs());
        self.quality.push(q);
        self.rungs.push(rung);
        self.rebufs.push(if i == 0 { 0.0 } else { rebuf });
        self.last_rung = Some(rung);

        if self.buffer > self.s.buffer_cap_s {
            let resume = self.s.resume_below_s.map_or(self.s.buffer_cap_s, |r| r.clamp(0.0, self.s.buffer_cap_s));
            let drain = self.buffer - resume;
            let sleep = (drain / self.s.drain_step_s).ceil() * self.s.drain_step_s;
            self.buffer -= sleep;
            self.backlog = (self.backlog - sleep).max(0.0);
            self.sleep(sleep);
            self.wall += sleep;
            self.used.radio_j += self.s.energy.idle_j(sleep);
        }
        let enhance_j = if level > 0 { self.s.energy.enhance_j(cost) } else { 0.0 };
        ChunkOutcome {
            index: i,
            rung,
            level,
            quality: q,
            quality_change: change,
            rebuffer_s: if i == 0 { 0.0 } else { rebuf },
            download_s: delay,
            bits: size_bits,
            energy_j: self.used.radio_j - energy_before + self.s.energy.decode_j(chunk) + enhance_j,
            buffer_s: self.buffer,
        }
    }

    /// The session's scores; call when [`done`](Self::done).
    pub fn result(&self) -> TraceResult {
        let (ladder, s) = (&self.ladder, &self.s);
        let chunk = ladder.chunk_s();
        let n = self.rungs.len();
        let wall = self.wall + self.buffer;
        let scored = 1..n;
        let m = n.saturating_sub(1).max(1) as f64;
        let mut qq = 0.0;
        for i in scored.clone() {
            qq += self.quality[i] - (self.quality[i] - self.quality[i - 1]).abs() - s.stall_penalty * self.rebufs[i];
        }
        let mean_q = scored.clone().map(|i| self.quality[i]).sum::<f64>() / m;
        let mbps: Vec<f64> = self.rungs.iter().map(|&r| ladder.bitrates_bps[r] / 1e6).collect();
        let mut used = self.used;
        used.decode_j = s.energy.decode_j(n as f64 * chunk);
        used.enhance_j = s.energy.enhance_j(self.compute);
        TraceResult {
            trace: self.name.clone(),
            qoe_quality: qq / m,
            qoe_lin: super::qoe_lin(&mbps, self.rebuf_total, n),
            qoe_bones: None,
            mean_quality: mean_q,
            rebuffer_s: self.rebuf_total,
            startup_s: self.startup,
            play_s: wall,
            bits_mb: self.bits / 1e6,
            switches: self.rungs.windows(2).filter(|w| w[0] != w[1]).count(),
            enhanced_chunks: self.enhanced,
            compute_s: self.compute,
            energy_j: used.total_j(),
            battery_pct: s.energy.battery_pct(used.total_j()),
        }
    }

    /// Seconds to move `bytes` over the trace from where the session is on it.
    fn download(&mut self, bytes: f64, portion: f64) -> f64 {
        let mut link = Link { time: &self.time, bw_mbps: &self.bw_mbps, ptr: self.ptr, last: self.last };
        let d = link.download(bytes, portion);
        (self.ptr, self.last) = (link.ptr, link.last);
        d
    }

    fn sleep(&mut self, secs: f64) {
        let mut link = Link { time: &self.time, bw_mbps: &self.bw_mbps, ptr: self.ptr, last: self.last };
        link.sleep(secs);
        (self.ptr, self.last) = (link.ptr, link.last);
    }
}

/// Run one policy on one trace. `ladder` gives bitrates and the chunk length; chunk sizes are
/// the nominal bitrate x duration (constant bitrate). `table` gives displayed quality.
pub fn run(
    ladder: &Ladder,
    table: &QualityTable,
    trace: &Trace,
    policy: &mut dyn Policy,
    mode: EnhanceMode,
    s: &ChunkSettings,
) -> TraceResult {
    let mut session = Session::new(ladder, table, trace, mode, s);
    while !session.done() {
        let decision = if session.index() == 0 { session.first_decision() } else { policy.decide(&session.observation()) };
        session.step(decision);
    }
    session.result()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nerve_abr::bba::Bba;
    use nerve_abr::rate::RateBased;

    fn ladder() -> Ladder {
        Ladder { bitrates_bps: vec![0.3e6, 0.75e6, 1.2e6, 1.85e6, 2.85e6, 4.3e6], chunk: Duration::from_secs(4) }
    }

    fn flat(mbps: f64) -> Trace {
        let text: String = (0..400).map(|t| format!("{t} {mbps}\n")).collect();
        Trace::parse("flat", &text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn download_time_follows_pensieve_payload_and_rtt() {
        // 0.75 Mbit/s chunk of 4 s = 3 Mbit on a 10 Mbit/s link at 95%: 0.3158 s + 0.08 s RTT
        let t = flat(10.0);
        let time: Vec<f64> = t.points.iter().map(|p| p.0).collect();
        let bw: Vec<f64> = t.points.iter().map(|p| p.1 / 1e6).collect();
        let mut link = Link { time: &time, bw_mbps: &bw, ptr: 1, last: 0.0 };
        let d = link.download(3e6 / 8.0, 0.95);
        assert!((d - 3.0 / 10.0 / 0.95).abs() < 1e-9, "{d}");
    }

    #[test]
    fn a_fast_link_never_stalls_and_rate_based_climbs_to_the_top() {
        let l = ladder();
        let table = QualityTable::classical(&[30.0, 50.0, 60.0, 70.0, 80.0, 90.0]);
        let mut p = RateBased::new(1.0);
        let r = run(&l, &table, &flat(20.0), &mut p, EnhanceMode::None, &ChunkSettings::default());
        assert_eq!(r.rebuffer_s, 0.0);
        assert!(r.qoe_lin > 4.0, "{}", r.qoe_lin);
    }

    /// Battery saver's bursts: on a link that fills the buffer, waiting until it drains to 15 s
    /// lets the radio sleep past its tail: the same choices cost less radio energy, nothing
    /// stalls, and the buffer at each decision after the first fill swings down to about 15 s
    /// instead of staying at the cap.
    #[test]
    fn bursts_let_the_radio_sleep_without_stalls() {
        let l = ladder();
        let table = QualityTable::classical(&[30.0, 50.0, 60.0, 70.0, 80.0, 90.0]);
        let steady = ChunkSettings { chunks: 80, ..ChunkSettings::default() };
        let bursts = ChunkSettings { resume_below_s: nerve_abr::energy::resume_below_s(nerve_abr::nerve::Preference::BatterySaver), ..steady.clone() };
        assert_eq!(bursts.resume_below_s, Some(nerve_abr::energy::BURST_RESUME_S));
        let run_with = |s: &ChunkSettings| {
            let mut session = Session::new(&l, &table, &flat(20.0), EnhanceMode::None, s);
            let mut lows = Vec::new();
            let mut p = RateBased::new(1.0);
            while !session.done() {
                let d = if session.index() == 0 { session.first_decision() } else { p.decide(&session.observation()) };
                lows.push(session.step(d).buffer_s);
            }
            (session.result(), lows)
        };
        let (a, buf_a) = run_with(&steady);
        let (b, buf_b) = run_with(&bursts);
        assert_eq!((a.rebuffer_s, b.rebuffer_s), (0.0, 0.0));
        assert_eq!(a.mean_quality, b.mean_quality, "the same rungs");
        assert!(b.energy_j < 0.85 * a.energy_j, "bursts {} J, steady {} J", b.energy_j, a.energy_j);
        let low = |v: &[f64]| v[20..].iter().copied().fold(f64::INFINITY, f64::min);
        assert!(low(&buf_a) > 50.0 && (14.0..=16.0).contains(&low(&buf_b)), "{} / {}", low(&buf_a), low(&buf_b));
    }

    #[test]
    fn no_policy_beats_the_bound_and_a_fast_link_reaches_it() {
        let l = ladder();
        let table = QualityTable::classical(&[30.0, 50.0, 60.0, 70.0, 80.0, 90.0]);
        let s = ChunkSettings::default();
        let bound = qoe_quality_bound(&l, &table, &s);
        // 46 chunks at 90 and the climb from rung 1 (50) to 90, over 47 scored chunks
        assert!((bound - (46.0 * 90.0 + 50.0) / 47.0).abs() < 1e-9, "{bound}");
        let mut rb = RateBased::new(1.0);
        let fast = run(&l, &table, &flat(50.0), &mut rb, EnhanceMode::None, &s);
        assert!((fast.qoe_quality - bound).abs() < 1e-9, "rate-based on 50 Mbit/s jumps to the top at once: {}", fast.qoe_quality);
        for mbps in [0.5, 1.0, 3.0, 50.0] {
            let mut bb = Bba::pensieve();
            let r = run(&l, &table, &flat(mbps), &mut bb, EnhanceMode::None, &s);
            assert!(r.qoe_quality <= bound + 1e-9, "{mbps} Mbit/s: {} > {bound}", r.qoe_quality);
        }
    }

    #[test]
    fn the_bits_floor_mixes_the_two_rungs_around_the_target() {
        let l = ladder();
        let table = QualityTable::classical(&[30.0, 50.0, 60.0, 70.0, 80.0, 90.0]);
        let s = ChunkSettings::default();
        // 85 lies halfway between 2.85 Mbit/s (80) and 4.3 Mbit/s (90): 14.3 Mbit a chunk, plus
        // the first chunk at 0.75 Mbit/s (3 Mbit)
        let Some(floor) = min_bits_mb(&l, &table, &s, 85.0) else { panic!("85 is reachable") };
        assert!((floor - (3.0 + 47.0 * (11.4 + 17.2) / 2.0)).abs() < 1e-9, "{floor}");
        assert!(min_bits_mb(&l, &table, &s, 95.0).is_none(), "above the table's best");
        // what a policy that plays the top rung throughout downloads is never below the floor
        let mut rb = RateBased::new(1.0);
        let r = run(&l, &table, &flat(50.0), &mut rb, EnhanceMode::None, &s);
        let Some(floor) = min_bits_mb(&l, &table, &s, r.mean_quality) else { panic!("a played quality is reachable") };
        assert!(r.bits_mb >= floor - 1e-9 && r.bits_mb - floor < 1e-6, "{} vs {floor}", r.bits_mb);
    }

    #[test]
    fn a_slow_link_makes_the_top_rung_stall() {
        let l = ladder();
        let table = QualityTable::classical(&[30.0, 50.0, 60.0, 70.0, 80.0, 90.0]);
        // BB climbs once the buffer passes 15 s, which the 1 Mbit/s link cannot sustain
        let mut p = Bba { reservoir_s: 0.0, upper_s: 0.1, map: nerve_abr::bba::CushionMap::Index };
        let r = run(&l, &table, &flat(1.0), &mut p, EnhanceMode::None, &ChunkSettings::default());
        assert!(r.rebuffer_s > 100.0, "{}", r.rebuffer_s);
        assert!(r.qoe_lin < 0.0);
    }
}
