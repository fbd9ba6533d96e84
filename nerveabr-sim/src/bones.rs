//! The BONES scenario: a port of the event loop of BONES' simulator (UMass-LIDS/bones,
//! `simulation/{simulator,network_model,buffer_model,session_model}.py`), so that our
//! policies can be scored by BONES' own rules. Units are BONES' own: ms, kbit/s, bits.
//!
//! - Two timelines: downloads, and enhancement work on a second buffer whose level is the
//!   compute time still queued; a chunk's enhancement must finish before it plays.
//! - Warm-up: segment 0 at the lowest rung; the stall before it does not count.
//! - Download buffer cap 60 s: after each download the player waits until one more segment fits.
//! - Each request costs the trace's latency (100 ms for two-column traces) on the network
//!   timeline; traces wrap around.
//! - QoE per trace = mean displayed VMAF - mean |VMAF change| - (stall ms / segments) / 10.
//!
//! One quirk of BONES' session model is kept on purpose (see [`Session::next`]): when the
//! enhancement timeline is due first, time still advances by the *download* countdown. It
//! delays when "greedy SR" controllers make their enhancement decisions, and BONES' published
//! figures were produced with it.

use std::collections::VecDeque;
use std::time::Duration;

use super::bones_data::BonesData;
use super::trace::Trace;
use super::TraceResult;
use nerve_abr::throughput::{DownloadSample, Estimator, EstimatorKind};
use nerve_abr::{Decision, Ladder, Observation, Policy, Progress};

pub use nerve_abr::spec::EnhanceMode;

#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub buffer_cap_ms: f64,
    pub enhance_cap_ms: f64,
    /// Latency for traces that carry none.
    pub latency_ms: f64,
    /// Keep BONES' session quirk (default: yes, to match its figures).
    pub exact_session: bool,
    /// Bits of an enhancement model that must be fetched before enhancing (BONES' quick start
    /// for the content-aware IMDN: 310 kB); 0 = the model is already on the device.
    pub model_bits: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self { buffer_cap_ms: 60_000.0, enhance_cap_ms: 60_000.0, latency_ms: 100.0, exact_session: true, model_bits: 0.0 }
    }
}

struct Buffer {
    // (segment time) of queued items; BONES also stores index and decision, kept in `history`.
    content: VecDeque<f64>,
    level: f64,
    time_spent: f64,
    idle_time: f64,
    idle_events: u32,
    history: Vec<usize>,
}

impl Buffer {
    fn new(n: usize) -> Self {
        Self { content: VecDeque::new(), level: 0.0, time_spent: 0.0, idle_time: 0.0, idle_events: 0, history: vec![0; n] }
    }

    fn consume(&mut self, mut time: f64) {
        if self.level == 0.0 {
            self.idle_time += time;
            return;
        }
        if self.time_spent > 0.0 {
            let seg = self.content.front().copied().unwrap_or(0.0);
            if time + self.time_spent < seg {
                self.time_spent += time;
                self.level -= time;
                return;
            }
            time -= seg - self.time_spent;
            self.level -= seg - self.time_spent;
            self.content.pop_front();
            self.time_spent = 0.0;
        }
        while time > 0.0 {
            let Some(&seg) = self.content.front() else { break };
            if time >= seg {
                self.content.pop_front();
                self.level -= seg;
                time -= seg;
            } else {
                self.time_spent = time;
                self.level -= time;
                time = 0.0;
            }
        }
        if time > 0.0 {
            self.idle_time += time;
            self.idle_events += 1;
        }
    }

    fn push(&mut self, index: usize, decision: usize, seg_time: f64) {
        self.content.push_back(seg_time);
        if let Some(h) = self.history.get_mut(index) {
            *h = decision;
        }
        self.level += seg_time;
    }

    fn rest(&self) -> Option<f64> {
        self.content.front().map(|s| s - self.time_spent)
    }
}

struct Network {
    periods: Vec<(f64, f64)>,
    latency_ms: f64,
    idx: usize,
    started: bool,
    time_to_next: f64,
}

/// Pieces of a monitored download (BONES' `MonitorNetworkModel`).
const MONITOR_MIN_BITS: f64 = 12_000.0;
const MONITOR_MIN_MS: f64 = 50.0;

impl Network {
    fn new(periods: Vec<(f64, f64)>, latency_ms: f64) -> Self {
        Self { periods, latency_ms, idx: 0, started: false, time_to_next: 0.0 }
    }

    fn next_period(&mut self) {
        if self.started {
            self.idx += 1;
            if self.idx >= self.periods.len() {
                self.idx = 0;
            }
        }
        self.started = true;
        self.time_to_next = self.periods.get(self.idx).map_or(1.0, |p| p.0);
    }

    fn bw(&self) -> f64 {
        if self.started { self.periods.get(self.idx).map_or(0.0, |p| p.1) } else { 0.0 }
    }

    fn delay_latency(&mut self) -> f64 {
        let mut units = 1.0;
        let mut total = 0.0;
        while units > 0.0 {
            let t = units * self.latency_ms;
            if t <= self.time_to_next {
                total += t;
                self.time_to_next -= t;
                units = 0.0;
            } else {
                total += self.time_to_next;
                units -= self.time_to_next / self.latency_ms;
                self.next_period();
            }
        }
        total
    }

    fn delay_download(&mut self, mut size: f64) -> f64 {
        let mut total = 0.0;
        let mut idle_periods = 0usize;
        while size > 0.0 {
            let bw = self.bw();
            if size <= self.time_to_next * bw {
                let t = size / bw;
                total += t;
                self.time_to_next -= t;
                size = 0.0;
            } else {
                total += self.time_to_next;
                size -= self.time_to_next * bw;
                idle_periods = if bw > 0.0 { 0 } else { idle_periods + 1 };
                if idle_periods > 2 * self.periods.len() + 2 {
                    // a trace of zeros never delivers; charge an hour rather than loop forever
                    return total + 3_600_000.0;
                }
                self.next_period();
            }
        }
        total
    }

    /// One monitor interval: at least 12 kbit and 50 ms (or what is left). Returns (bits, ms).
    fn delay_download_piece(&mut self, mut size: f64) -> (f64, f64) {
        let (mut min_size, mut min_time) = (MONITOR_MIN_BITS, MONITOR_MIN_MS);
        let (mut total_size, mut total_time) = (0.0, 0.0);
        let mut guard = 0usize;
        while size > 0.0 && (min_size > 0.0 || min_time > 0.0) {
            guard += 1;
            if guard > 4 * self.periods.len() + 16 {
                return (size, total_time + 3_600_000.0);
            }
            let bw = self.bw();
            let (bits, time);
            if bw > 0.0 {
                let min_bits = min_size.max(min_time * bw);
                let to_next = self.time_to_next * bw;
                if size <= min_bits && size <= to_next {
                    bits = size;
                    time = bits / bw;
                    self.time_to_next -= time;
                } else if min_bits <= to_next {
                    bits = min_bits;
                    time = bits / bw;
                    min_size = 0.0;
                    min_time = 0.0;
                    self.time_to_next -= time;
                } else {
                    bits = to_next;
                    time = self.time_to_next;
                    self.next_period();
                }
                guard = if bits > 0.0 { 0 } else { guard };
            } else {
                bits = 0.0;
                if min_size > 0.0 || min_time > self.time_to_next {
                    time = self.time_to_next;
                    self.next_period();
                } else {
                    time = min_time;
                    self.time_to_next -= time;
                }
            }
            total_size += bits;
            total_time += time;
            size -= bits;
            min_size -= bits;
            min_time -= time;
        }
        (total_size, total_time)
    }

    fn go_by(&mut self, mut time: f64) {
        let mut guard = 0usize;
        while time > self.time_to_next {
            time -= self.time_to_next;
            self.next_period();
            guard += 1;
            if guard > 10_000_000 {
                return;
            }
        }
        self.time_to_next -= time;
    }
}

const DOWNLOAD_START: u8 = 0;
const DOWNLOAD_FINISH: u8 = 1;
const ENHANCE_START: u8 = 2;
const ENHANCE_FINISH: u8 = 3;

struct Session {
    downloading: bool,
    cd_download: f64,
    enhancing: bool,
    cd_enhance: f64,
    exact: bool,
}

impl Session {
    /// The next event and the time that passes before it. BONES' `SessionModel.next` advances
    /// by `cd_download` in both branches (its enhancement branch reads `time_session =
    /// self.cd_download`); with `exact` we do the same, otherwise the enhancement branch
    /// advances by `cd_enhance` as the comment beside it intends.
    fn next(&mut self) -> (u8, f64) {
        if self.cd_download < self.cd_enhance {
            let t = self.cd_download;
            self.cd_enhance -= t;
            self.cd_download = 0.0;
            (if self.downloading { DOWNLOAD_FINISH } else { DOWNLOAD_START }, t)
        } else {
            let t = if self.exact { self.cd_download } else { self.cd_enhance };
            self.cd_download -= t;
            self.cd_enhance = 0.0;
            (if self.enhancing { ENHANCE_FINISH } else { ENHANCE_START }, t)
        }
    }
}

/// Run one policy over one trace.
pub fn run(data: &BonesData, trace: &Trace, policy: &mut dyn Policy, mode: EnhanceMode, monitor: bool, s: &Settings) -> TraceResult {
    let n = data.segments();
    let seg = data.seg_ms;
    let ladder = Ladder {
        bitrates_bps: data.bitrates_kbps.iter().map(|b| b * 1000.0).collect(),
        chunk: Duration::from_secs_f64(seg / 1000.0),
    };
    let latency_ms = trace.latency_s.map_or(s.latency_ms, |l| l * 1000.0);
    let mut net = Network::new(trace.periods_ms_kbps(), latency_ms);
    let mut est = Estimator::new(EstimatorKind::DualEwma, seg / 1000.0);
    let mut bd = Buffer::new(n);
    let mut be = Buffer::new(n);
    let mut session = Session { downloading: false, cd_download: 0.0, enhancing: false, cd_enhance: 0.0, exact: s.exact_session };
    let mut bits_total = 0.0;
    let mut energy_compute_ms = 0.0;

    // Greedy SR: per rung, the best mean quality among levels faster than real time.
    let greedy_level: Vec<usize> = data
        .enh_ms
        .iter()
        .zip(&data.vmaf_avg)
        .map(|(t, q)| {
            let mut best = (0usize, 0.0f64);
            for (m, (tm, qm)) in t.iter().zip(q).enumerate() {
                if *tm < seg && *qm > best.1 {
                    best = (m, *qm);
                }
            }
            best.0
        })
        .collect();

    let mut global = 0.0;
    // warm-up: segment 0 at the lowest rung
    let lat = net.delay_latency();
    let size0 = data.seg_bits[0][0];
    let down = net.delay_download(size0);
    bits_total += size0;
    est.push(DownloadSample { bits: size0, transfer_s: down / 1000.0, latency_s: lat / 1000.0 });
    global += down + lat;
    bd.consume(down + lat);
    be.consume(down + lat);
    bd.push(0, 0, seg);
    bd.idle_time = 0.0;
    let startup_ms = down + lat;
    let (mut idx_down, mut idx_enh) = (1usize, 1usize);
    let mut action_down = 0usize;
    let mut action_enh = 0usize;
    let mut last_download = (0.0, 0.0, 0.0); // (down ms, bits, lat ms)
    // Quick start (Joint mode only, as in BONES): no enhancement until the model is fetched,
    // which rides on the first download made with at least two segments buffered.
    let mut model_ready = !(mode == EnhanceMode::Joint && s.model_bits > 0.0);

    let running = |d: usize, e: usize| d < n && e < n;
    while running(idx_down, idx_enh) {
        let (ev, t) = session.next();
        global += t;
        bd.consume(t);
        be.consume(t);
        if !session.downloading {
            net.go_by(t);
        }
        match ev {
            DOWNLOAD_START => {
                let obs = Observation {
                    chunk_index: idx_down,
                    total_chunks: n,
                    buffer: ms(bd.level),
                    buffer_cap: ms(s.buffer_cap_ms),
                    enhance_backlog: ms(be.level),
                    throughput_bps: est.throughput_bps(),
                    latency: Duration::from_secs_f64(est.latency_s()),
                    recent_bps: est.recent(),
                    last_rung: idx_down.checked_sub(1).and_then(|i| bd.history.get(i).copied()),
                    next_sizes_bits: &data.seg_bits[idx_down],
                    ladder: &ladder,
                    enhance_available: mode == EnhanceMode::Joint && model_ready,
                };
                let Decision { rung, level } = policy.decide(&obs);
                action_down = rung.min(ladder.top());
                action_enh = if mode == EnhanceMode::Joint && model_ready { level } else { 0 };
                let mut extra = 0.0;
                if !model_ready && bd.level >= 2.0 * seg {
                    extra = s.model_bits;
                    model_ready = true;
                }
                let size = data.seg_bits[idx_down][action_down] + extra;
                let (d, bits, l) = if monitor {
                    download_monitored(&mut net, &mut *policy, data, &ladder, idx_down, &mut action_down, size, bd.level, be.level)
                } else {
                    let l = net.delay_latency();
                    (net.delay_download(size), size, l)
                };
                bits_total += bits;
                last_download = (d, bits, l);
                session.downloading = true;
                session.cd_download = d + l;
            }
            DOWNLOAD_FINISH => {
                let (d, bits, l) = last_download;
                est.push(DownloadSample { bits, transfer_s: d / 1000.0, latency_s: l / 1000.0 });
                bd.push(idx_down, action_down, seg);
                idx_down += 1;
                session.downloading = false;
                session.cd_download = 0.0;
                if mode != EnhanceMode::None && be.level == 0.0 {
                    // wake the enhancement timeline
                    session.enhancing = false;
                    session.cd_enhance = 0.0;
                }
                if mode == EnhanceMode::Joint {
                    let rung = bd.history.get(idx_enh).copied().unwrap_or(0);
                    let cost = data.enh_ms[rung].get(action_enh).copied().unwrap_or(f64::INFINITY);
                    if bd.level - be.level - seg < cost || !data.vmaf_avg[rung].get(action_enh).is_some_and(|q| q.is_finite()) {
                        action_enh = 0;
                    }
                    if action_enh != 0 {
                        be.push(idx_enh, action_enh, cost);
                        energy_compute_ms += cost;
                    }
                    idx_enh += 1;
                }
                session.cd_download = (bd.level + seg - s.buffer_cap_ms).max(0.0);
                if !running(idx_down, idx_enh) {
                    break;
                }
            }
            ENHANCE_START => {
                if mode == EnhanceMode::Greedy && idx_enh < idx_down {
                    let rung = bd.history[idx_enh];
                    let lvl = greedy_level[rung];
                    let cost = data.enh_ms[rung][lvl];
                    let act = if bd.level - be.level - seg > cost { lvl } else { 0 };
                    if act != 0 {
                        be.push(idx_enh, act, cost);
                        energy_compute_ms += cost;
                    }
                    idx_enh += 1;
                    if !running(idx_down, idx_enh) {
                        break;
                    }
                }
                match be.rest() {
                    Some(r) => {
                        session.enhancing = true;
                        session.cd_enhance = r;
                    }
                    None => {
                        session.enhancing = false;
                        session.cd_enhance = f64::INFINITY;
                    }
                }
            }
            _ => {
                // ENHANCE_FINISH: start on the next task straight away
                session.enhancing = false;
                session.cd_enhance = 0.0;
            }
        }
    }
    // play out what is left
    let rest = bd.level;
    global += rest;
    bd.consume(rest);
    be.consume(rest);

    let mut quality = Vec::with_capacity(n);
    let mut rungs = Vec::with_capacity(n);
    for i in 0..n {
        let (r, m) = (bd.history[i], be.history[i]);
        quality.push(data.vmaf_seg[i][r][m]);
        rungs.push(r);
    }
    let q_mean = quality.iter().sum::<f64>() / n as f64;
    let osc = quality.windows(2).map(|w| (w[1] - w[0]).abs()).sum::<f64>() / (n.saturating_sub(1).max(1)) as f64;
    let qoe = q_mean - osc - bd.idle_time / n as f64 / 10.0;
    let switches = rungs.windows(2).filter(|w| w[0] != w[1]).count();
    let bitrate_mbps: Vec<f64> = rungs.iter().map(|&r| data.bitrates_kbps[r] / 1000.0).collect();
    let qoe_lin = super::qoe_lin(&bitrate_mbps, bd.idle_time / 1000.0, n);
    TraceResult {
        trace: trace.name.clone(),
        qoe_quality: qoe,
        qoe_lin,
        qoe_bones: Some(qoe),
        mean_quality: q_mean,
        rebuffer_s: bd.idle_time / 1000.0,
        startup_s: startup_ms / 1000.0,
        play_s: global / 1000.0,
        bits_mb: bits_total / 1e6,
        switches,
        enhanced_chunks: be.history.iter().filter(|&&m| m != 0).count(),
        compute_s: energy_compute_ms / 1000.0,
        energy_j: 0.0,
        battery_pct: 0.0,
    }
}

fn ms(x: f64) -> Duration {
    Duration::from_secs_f64((x / 1000.0).max(0.0))
}

/// BONES' `MonitorNetworkModel.download`: fetch in small pieces and let the policy abandon the
/// segment for a smaller rung (the new request costs another latency). Returns
/// (download ms, bits received, latency ms) as BONES summarises it.
#[allow(clippy::too_many_arguments)]
fn download_monitored(
    net: &mut Network,
    policy: &mut dyn Policy,
    data: &BonesData,
    ladder: &Ladder,
    idx: usize,
    action: &mut usize,
    size: f64,
    buffer_down: f64,
    buffer_enh: f64,
) -> (f64, f64, f64) {
    let (mut bd, mut be) = (buffer_down, buffer_enh);
    let latency = net.delay_latency();
    let mut total_time = latency;
    let mut total_size = 0.0;
    let mut remain = size;
    while remain > 0.0 {
        let (bits, time) = net.delay_download_piece(remain);
        total_time += time;
        total_size += bits;
        remain -= bits;
        bd = (bd - time).max(0.0);
        be = (be - time).max(0.0);
        if remain > 0.0 {
            let tput_kbps = total_size / (total_time - latency).max(1e-9);
            let p = Progress {
                buffer: ms(bd),
                enhance_backlog: ms(be),
                throughput_bps: tput_kbps * 1000.0,
                latency: ms(latency),
                remaining_bits: remain,
                elapsed: ms(total_time),
                rung: *action,
                sizes_bits: &data.seg_bits[idx],
                ladder,
            };
            if let Some(new) = policy.abandon(&p)
                && let Some(&new_size) = data.seg_bits[idx].get(new) {
                    *action = new;
                    remain = new_size;
                    total_time += latency;
                }
        }
    }
    (total_time - latency, total_size, latency)
}
