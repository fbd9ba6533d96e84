//! What the preview costs: the latency it adds beyond nervesr's own time, the CPU each stream
//! takes, and how many streams this machine keeps in real time.
//!
//! Every measurement runs the chain of [`PreviewConfig::describe`] into a clock-synchronised sink
//! ([`SINK`]: the appsink gst-rtsp-server renders into, buffer lists, QoS on) that waits for the
//! clock once per frame ([`one_wait_per_frame`]), on a clip made first (the given clip decoded,
//! scaled to `height` at 30 fps and x264-encoded, the way a camera or encoder sends it).
//!
//! Why once per frame: x264enc `tune=zerolatency` cuts each frame into slices (one per thread)
//! and rtph264pay pushes each slice's packets on their own, all with the frame's timestamp. A sink
//! that syncs on each of them renders the first on time and the others a fraction of a millisecond
//! late, and each late one sends a QoS event upstream, on which GstVideoDecoder skips every frame
//! due before `timestamp + 2 x lateness + one frame`: the next one. So every other frame was
//! dropped, however fast the chain ran (153 of 300 at 360p -> 720p). QoS is defined per frame: the
//! sink judges a frame by its first packet, and the rest of the frame follows untimed.
//!
//! - Latency: wall-clock time of each frame from the decoder's output (`enter`) to its first RTP
//!   packet (`pay0`), minus the time it spent inside `nervesr` (`sr` sink -> src). With no queue
//!   in the chain one thread carries each frame through, so this is conversion, encoding and
//!   payloading: what the preview adds to the model's own time.
//! - Streams: N copies run at once; a stream keeps up when at least 95% of the clip's frames come
//!   out of nervesr enhanced (the decoder drops frames and nervesr falls back to classical
//!   upscaling under QoS pressure: both count against it) and the 95th percentile of its
//!   lateness at the sink is at most one frame.
//! - CPU: the process's user + system time over the run (getrusage), per stream and per second of
//!   video (1.0 = one core busy).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use gst::prelude::*;
use serde::Serialize;

use crate::chain::{self, PreviewConfig};

/// Frame rate of the clips the measurements run on.
pub const FPS: u32 = 30;
/// A stream keeps up when at least this share of its frames is enhanced...
pub const MIN_ENHANCED: f64 = 0.95;
/// ...and lateness at the sink stays within one frame at this percentile.
pub const LATENESS_PERCENTILE: f64 = 0.95;
/// Frames at the start left out of latency figures (session start-up, encoder warm-up).
const WARMUP_FRAMES: usize = 10;

pub struct Plan {
    pub clip: PathBuf,
    pub height: u32,
    pub seconds: u32,
    pub max_streams: u32,
    /// The chain's settings; `input` is replaced by the clip made from `clip`.
    pub template: PreviewConfig,
}

#[derive(Debug, Serialize, Clone, Copy, Default)]
pub struct Summary {
    pub frames: usize,
    pub mean: f64,
    pub median: f64,
    pub p95: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Self { frames: v.len(), mean: v.iter().sum::<f64>() / v.len() as f64, median: at(0.5), p95: at(0.95), max: at(1.0) }
    }
}

#[derive(Debug, Serialize)]
pub struct Latency {
    /// Decoder output -> first RTP packet, per frame, in milliseconds.
    pub total_ms: Summary,
    /// Inside nervesr (model, tensor conversion, chroma upscale), per frame, in milliseconds.
    pub nervesr_ms: Summary,
    /// total - nervesr: what the preview adds beyond the model's own time.
    pub added_ms: Summary,
    pub frame_ms: f64,
    /// added_ms.p95 <= one frame.
    pub within_one_frame: bool,
    /// The pipeline's latency query (what a clock-synchronised sink holds frames back by).
    pub pipeline_latency_ms: f64,
    pub nervesr_stats: serde_json::Value,
}

#[derive(Debug, Serialize)]
pub struct Stream {
    /// Frames the decoder put out (the rest it skipped under QoS).
    pub frames_decoded: u64,
    pub frames_out: u64,
    pub frames_enhanced: u64,
    pub frames_classical: u64,
    pub mean_inference_ms: f64,
    /// Arrival at the sink minus the frame's due time, in milliseconds (negative: early).
    pub lateness_ms: Summary,
    pub keeps_up: bool,
}

#[derive(Debug, Serialize)]
pub struct StreamsRun {
    pub streams: u32,
    /// nervesr's ONNX Runtime threads in each stream.
    pub threads: u32,
    pub wall_s: f64,
    pub video_s: f64,
    /// Process CPU seconds per second of video, divided by the number of streams (1.0 = a core).
    pub cpu_cores_per_stream: f64,
    pub all_keep_up: bool,
    pub per_stream: Vec<Stream>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub date_unix: u64,
    pub machine: Machine,
    pub input: String,
    pub input_size: (u32, u32),
    pub output_size: (u32, u32),
    pub fps: u32,
    pub seconds: u32,
    pub chain: String,
    pub rule: String,
    pub latency: Latency,
    pub runs: Vec<StreamsRun>,
    /// The largest stream count that kept up (0: not even one).
    pub streams_in_real_time: u32,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    /// /proc/loadavg when the report started: the machine may be shared.
    pub loadavg_at_start: String,
    /// This process's nice value (the report is meant to be run under `nice` on a shared machine).
    pub nice: i32,
}

fn machine() -> Machine {
    // SAFETY: getpriority reads this process's nice value; errno is not needed for PRIO_PROCESS 0.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        loadavg_at_start: std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned(),
        nice,
    }
}

/// User + system CPU time of this process, in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `pipeline` to EOS (or fails on an error or after `deadline`).
fn run_to_eos(pipelines: &[gst::Pipeline], deadline: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    for p in pipelines {
        p.set_state(gst::State::Playing).context("the pipeline does not start")?;
    }
    let mut done = vec![false; pipelines.len()];
    while done.iter().any(|d| !d) {
        if start.elapsed() > deadline {
            return Err(anyhow!("no EOS within {} s", deadline.as_secs()));
        }
        for (i, p) in pipelines.iter().enumerate() {
            if done[i] {
                continue;
            }
            let bus = p.bus().ok_or_else(|| anyhow!("a pipeline without a bus"))?;
            while let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(10)) {
                match msg.view() {
                    gst::MessageView::Eos(_) => {
                        done[i] = true;
                        break;
                    }
                    gst::MessageView::Error(e) => {
                        return Err(anyhow!(
                            "{}: {} ({:?})",
                            e.src().map(|s| s.path_string().to_string()).unwrap_or_default(),
                            e.error(),
                            e.debug()
                        ));
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

fn stop(pipelines: &[gst::Pipeline]) {
    for p in pipelines {
        let _ = p.set_state(gst::State::Null);
    }
}

/// Makes the measurement clip: `seconds` of `clip` at `height` (16:9), 30 fps, H.264 in MP4.
pub fn make_input(clip: &Path, height: u32, seconds: u32, out: &Path) -> anyhow::Result<(u32, u32)> {
    let width = (height * 16 / 9 + 1) & !1;
    let p = gst::parse::launch(&format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! videoscale ! videorate ! \
         video/x-raw,format=I420,width={width},height={height},framerate={FPS}/1,pixel-aspect-ratio=1/1 ! \
         identity eos-after={} ! x264enc speed-preset=veryfast bitrate=900 key-int-max={FPS} ! h264parse ! mp4mux ! \
         filesink location=\"{}\"",
        clip.display(),
        seconds * FPS,
        out.display()
    ))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| anyhow!("not a pipeline"))?;
    let r = run_to_eos(std::slice::from_ref(&p), Duration::from_secs(120 + 10 * u64::from(seconds)));
    stop(std::slice::from_ref(&p));
    r.map(|()| (width, height))
}

/// The sink the measurements render into: the kind [`crate::server`] serves from
/// (gst-rtsp-server's appsink: buffer lists, clock-synchronised), with QoS on, nobody pulling (the
/// newest frame replaces the one before) and no wait for a consumer at EOS.
pub const SINK: &str =
    "appsink name=sink sync=true qos=true buffer-list=true max-buffers=1 drop=true wait-on-eos=false emit-signals=false";

/// Makes `pad`'s sink wait for the clock, and judge lateness for QoS, once per frame: packets
/// after the first with the same timestamp go on untimed, so the sink renders them at once.
pub fn one_wait_per_frame(pad: &gst::Pad) {
    let last: Mutex<Option<gst::ClockTime>> = Mutex::default();
    let untime = |b: &mut gst::BufferRef, last: &mut Option<gst::ClockTime>| match b.pts() {
        Some(pts) if *last == Some(pts) => {
            b.set_pts(None);
            b.set_dts(None);
        }
        pts => *last = pts.or(*last),
    };
    pad.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, move |_, info| {
        let Ok(mut last) = last.lock() else { return gst::PadProbeReturn::Ok };
        match &mut info.data {
            Some(gst::PadProbeData::Buffer(b)) => untime(b.make_mut(), &mut last),
            Some(gst::PadProbeData::BufferList(l)) => l.make_mut().foreach_mut(|mut b, _| {
                untime(b.make_mut(), &mut last);
                std::ops::ControlFlow::Continue(Some(b))
            }),
            _ => {}
        }
        gst::PadProbeReturn::Ok
    });
}

fn pipeline(config: &PreviewConfig) -> anyhow::Result<gst::Pipeline> {
    let description = config.describe().map_err(|e| anyhow!(e))?;
    gst::parse::launch(&format!("{description} ! {SINK}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow!("not a pipeline"))
}

/// The sink's pad, after the lateness probe (which must see every frame's timestamp) if any.
fn sink_pad(p: &gst::Pipeline) -> anyhow::Result<gst::Pad> {
    pad(p, "sink", "sink")
}

fn element(p: &gst::Pipeline, name: &str) -> anyhow::Result<gst::Element> {
    p.by_name(name).ok_or_else(|| anyhow!("no element {name} in the chain"))
}

/// The timestamp of a probed buffer, or of a buffer list's first buffer.
fn first_pts(info: &gst::PadProbeInfo) -> Option<gst::ClockTime> {
    match &info.data {
        Some(gst::PadProbeData::Buffer(b)) => b.pts(),
        Some(gst::PadProbeData::BufferList(l)) => l.get(0).and_then(|b| b.pts()),
        _ => None,
    }
}

/// Wall-clock time at which each PTS first crossed `pad`.
fn stamp(pad: &gst::Pad, origin: Instant) -> Arc<Mutex<HashMap<u64, Duration>>> {
    let seen: Arc<Mutex<HashMap<u64, Duration>>> = Arc::default();
    let s = seen.clone();
    pad.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, move |_, info| {
        if let Some(pts) = first_pts(info)
            && let Ok(mut m) = s.lock()
        {
            m.entry(pts.nseconds()).or_insert_with(|| origin.elapsed());
        }
        gst::PadProbeReturn::Ok
    });
    seen
}

fn pad(p: &gst::Pipeline, element_name: &str, pad_name: &str) -> anyhow::Result<gst::Pad> {
    element(p, element_name)?.static_pad(pad_name).ok_or_else(|| anyhow!("{element_name} has no {pad_name} pad"))
}

fn stats_json(e: &gst::Element) -> serde_json::Value {
    let s = e.property::<gst::Structure>("stats");
    let mut m = serde_json::Map::new();
    for (k, v) in s.iter() {
        let v = if let Ok(x) = v.get::<u64>() {
            serde_json::json!(x)
        } else if let Ok(x) = v.get::<f64>() {
            serde_json::json!(x)
        } else if let Ok(x) = v.get::<bool>() {
            serde_json::json!(x)
        } else if let Ok(x) = v.get::<String>() {
            serde_json::json!(x)
        } else {
            serde_json::json!(format!("{v:?}"))
        };
        m.insert(k.to_string(), v);
    }
    serde_json::Value::Object(m)
}

/// One stream, frame by frame: what the chain adds beyond nervesr.
pub fn measure_latency(config: &PreviewConfig, seconds: u32) -> anyhow::Result<Latency> {
    let p = pipeline(config)?;
    let origin = Instant::now();
    let enter = stamp(&pad(&p, chain::ENTER, "sink")?, origin);
    let sr_in = stamp(&pad(&p, chain::SR, "sink")?, origin);
    let sr_out = stamp(&pad(&p, chain::SR, "src")?, origin);
    let out = stamp(&pad(&p, chain::PAYLOADER, "src")?, origin);
    one_wait_per_frame(&sink_pad(&p)?);
    let r = run_to_eos(std::slice::from_ref(&p), Duration::from_secs(60 + 10 * u64::from(seconds)));
    let mut q = gst::query::Latency::new();
    let pipeline_latency_ms = if p.query(&mut q) { ms(q.result().1.into()) } else { f64::NAN };
    let nervesr_stats = stats_json(&element(&p, chain::SR)?);
    stop(std::slice::from_ref(&p));
    r?;
    let lock = |m: &Arc<Mutex<HashMap<u64, Duration>>>| m.lock().map(|m| m.clone()).map_err(|_| anyhow!("a probe panicked"));
    let (enter, sr_in, sr_out, out) = (lock(&enter)?, lock(&sr_in)?, lock(&sr_out)?, lock(&out)?);
    let mut pts: Vec<u64> = enter.keys().copied().collect();
    pts.sort_unstable();
    // x264enc shifts its output timestamps (its minimum PTS is 1000 h, so that DTS never goes
    // negative): packets are matched to frames by the shift between the first of each.
    let shift = out.keys().min().zip(pts.first()).map_or(0, |(o, e)| o.wrapping_sub(*e));
    let (mut total, mut model, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for t in pts.into_iter().skip(WARMUP_FRAMES) {
        let (Some(a), Some(b), Some(c), Some(d)) = (enter.get(&t), sr_in.get(&t), sr_out.get(&t), out.get(&t.wrapping_add(shift))) else {
            continue;
        };
        let (whole, inside) = (d.saturating_sub(*a), c.saturating_sub(*b));
        total.push(ms(whole));
        model.push(ms(inside));
        added.push(ms(whole.saturating_sub(inside)));
    }
    if added.is_empty() {
        return Err(anyhow!(
            "no frame went through the whole chain (frames seen: {} decoded, {} into nervesr, {} out of it, {} payloaded)",
            enter.len(),
            sr_in.len(),
            sr_out.len(),
            out.len()
        ));
    }
    let frame_ms = 1000.0 / f64::from(FPS);
    let added_ms = Summary::of(&added);
    Ok(Latency {
        total_ms: Summary::of(&total),
        nervesr_ms: Summary::of(&model),
        within_one_frame: added_ms.p95 <= frame_ms,
        added_ms,
        frame_ms,
        pipeline_latency_ms,
        nervesr_stats,
    })
}

/// Lateness at the sink of each frame, in milliseconds (arrival minus due running time).
fn lateness(sink: &gst::Element) -> anyhow::Result<Arc<Mutex<Vec<f64>>>> {
    let pad = sink.static_pad("sink").ok_or_else(|| anyhow!("sink without a sink pad"))?;
    let late: Arc<Mutex<Vec<f64>>> = Arc::default();
    let l = late.clone();
    let el = sink.downgrade();
    // A frame's packets come as buffers and buffer lists (one per slice): its lateness is its
    // first one's.
    let last: Mutex<Option<gst::ClockTime>> = Mutex::default();
    pad.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, move |pad, info| {
        if let Some(pts) = first_pts(info)
            && let Ok(mut last) = last.lock()
            && std::mem::replace(&mut *last, Some(pts)) != Some(pts)
            && let Some(sink) = el.upgrade()
            && let Some(now) = sink.current_running_time()
            && let Some(seg) = pad.sticky_event::<gst::event::Segment>(0)
            && let Some(seg) = seg.segment().downcast_ref::<gst::ClockTime>()
            && let Some(due) = seg.to_running_time(pts)
            && let Ok(mut v) = l.lock()
        {
            v.push((now.nseconds() as f64 - due.nseconds() as f64) / 1e6);
        }
        gst::PadProbeReturn::Ok
    });
    Ok(late)
}

/// `n` streams at once, each its own pipeline.
pub fn measure_streams(config: &PreviewConfig, n: u32, seconds: u32) -> anyhow::Result<StreamsRun> {
    let pipelines: Vec<gst::Pipeline> = (0..n).map(|_| pipeline(config)).collect::<anyhow::Result<_>>()?;
    let late: Vec<_> = pipelines.iter().map(|p| lateness(&element(p, "sink")?)).collect::<anyhow::Result<_>>()?;
    let origin = Instant::now();
    let decoded: Vec<_> = pipelines.iter().map(|p| Ok(stamp(&pad(p, chain::ENTER, "sink")?, origin))).collect::<anyhow::Result<_>>()?;
    for p in &pipelines {
        one_wait_per_frame(&sink_pad(p)?);
    }
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let r = run_to_eos(&pipelines, Duration::from_secs(60 + 4 * u64::from(seconds) * u64::from(n)));
    let (cpu, wall) = (cpu_seconds() - cpu0, t0.elapsed().as_secs_f64());
    let mut per_stream = Vec::new();
    for ((p, late), decoded) in pipelines.iter().zip(&late).zip(&decoded) {
        let frames_decoded = decoded.lock().map_err(|_| anyhow!("a probe panicked"))?.len() as u64;
        let mut q = gst::query::Latency::new();
        let latency_ms = if p.query(&mut q) { ms(q.result().1.into()) } else { 0.0 };
        let s = element(p, chain::SR)?.property::<gst::Structure>("stats");
        let enhanced = s.get::<u64>("frames-enhanced").unwrap_or(0);
        let classical = s.get::<u64>("frames-classical").unwrap_or(0);
        let values: Vec<f64> = late
            .lock()
            .map_err(|_| anyhow!("a probe panicked"))?
            .iter()
            .skip(FPS as usize) // the first second: start-up
            .map(|l| l - latency_ms)
            .collect();
        let lateness_ms = Summary::of(&values);
        let frames_out = enhanced + classical;
        // Frames the decoder dropped under QoS never reach nervesr: they count against it too.
        let expected = u64::from(seconds * FPS);
        let keeps_up = frames_out as f64 >= MIN_ENHANCED * expected as f64
            && enhanced as f64 >= MIN_ENHANCED * expected as f64
            && lateness_ms.p95 <= 1000.0 / f64::from(FPS);
        per_stream.push(Stream {
            frames_decoded,
            frames_out,
            frames_enhanced: enhanced,
            frames_classical: classical,
            mean_inference_ms: s.get::<f64>("mean-inference-ms").unwrap_or(f64::NAN),
            lateness_ms,
            keeps_up,
        });
    }
    stop(&pipelines);
    r?;
    let video_s = f64::from(seconds);
    Ok(StreamsRun {
        streams: n,
        threads: config.threads,
        wall_s: wall,
        video_s,
        cpu_cores_per_stream: cpu / video_s / f64::from(n),
        all_keep_up: per_stream.iter().all(|s| s.keeps_up),
        per_stream,
    })
}

pub fn run(plan: &Plan, log: &mut dyn Write) -> anyhow::Result<Report> {
    crate::init()?;
    let machine = machine();
    let dir = std::env::temp_dir().join(format!("nerve-preview-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let input = dir.join(format!("input-{}p{FPS}.mp4", plan.height));
    let _ = writeln!(log, "making {} ({} s of {})", input.display(), plan.seconds, plan.clip.display());
    let (w, h) = make_input(&plan.clip, plan.height, plan.seconds, &input)?;
    let mut config = plan.template.clone();
    config.input = format!("file://{}", input.display());

    let _ = writeln!(log, "latency: one stream, frame by frame");
    let latency = measure_latency(&config, plan.seconds)?;
    let _ = writeln!(
        log,
        "  added beyond nervesr: median {:.1} ms, p95 {:.1} ms (one frame: {:.1} ms); nervesr median {:.1} ms",
        latency.added_ms.median, latency.added_ms.p95, latency.frame_ms, latency.nervesr_ms.median
    );

    let mut runs = Vec::new();
    let mut streams_in_real_time = 0;
    for n in 1..=plan.max_streams.max(1) {
        // The streams share the cores: unless told otherwise, each gets its share of them as
        // ONNX Runtime threads (one stream: all, two on two cores: one each), at least one.
        let mut streams_config = config.clone();
        if streams_config.threads == 0 {
            streams_config.threads = (machine.cpus as u32 / n).max(1);
        }
        let _ = writeln!(log, "streams: {n} at once (nervesr threads={} each)", streams_config.threads);
        let run = measure_streams(&streams_config, n, plan.seconds)?;
        let _ = writeln!(
            log,
            "  keeps up: {}; CPU {:.2} cores/stream; enhanced/decoded {:?}; lateness p95 {:?} ms",
            run.all_keep_up,
            run.cpu_cores_per_stream,
            run.per_stream.iter().map(|s| format!("{}/{}", s.frames_enhanced, s.frames_decoded)).collect::<Vec<_>>(),
            run.per_stream.iter().map(|s| (s.lateness_ms.p95 * 10.0).round() / 10.0).collect::<Vec<_>>()
        );
        let ok = run.all_keep_up;
        runs.push(run);
        if !ok {
            break;
        }
        streams_in_real_time = n;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Report {
        date_unix: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        machine,
        input: plan.clip.display().to_string(),
        input_size: (w, h),
        output_size: (w * config.scale, h * config.scale),
        fps: FPS,
        seconds: plan.seconds,
        chain: config.describe().map_err(|e| anyhow!(e))?,
        rule: format!(
            "a stream keeps up when >= {:.0}% of the clip's frames come out of nervesr enhanced and its p{:.0} lateness at the sink is <= one frame; \
             streams run with nervesr threads={}",
            MIN_ENHANCED * 100.0,
            LATENESS_PERCENTILE * 100.0,
            if config.threads == 0 { "cores / streams (at least 1)".to_owned() } else { config.threads.to_string() }
        ),
        latency,
        runs,
        streams_in_real_time,
    })
}

/// A few lines for the terminal.
pub fn summary(r: &Report) -> String {
    let cpu1 = r.runs.first().map_or(f64::NAN, |s| s.cpu_cores_per_stream);
    format!(
        "{}x{} -> {}x{} @ {} fps: added latency median {:.1} ms / p95 {:.1} ms beyond nervesr ({:.1} ms median); one frame = {:.1} ms\n\
         CPU {:.2} cores per stream (one stream); {} stream(s) in real time on {} CPUs (load at start: {}, nice {})",
        r.input_size.0,
        r.input_size.1,
        r.output_size.0,
        r.output_size.1,
        r.fps,
        r.latency.added_ms.median,
        r.latency.added_ms.p95,
        r.latency.nervesr_ms.median,
        r.latency.frame_ms,
        cpu1,
        r.streams_in_real_time,
        r.machine.cpus,
        r.machine.loadavg_at_start,
        r.machine.nice
    )
}

#[cfg(test)]
mod tests {
    use super::Summary;

    #[test]
    fn summary_orders_before_taking_quantiles() {
        let s = Summary::of(&[5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!((s.frames, s.median, s.max), (5, 3.0, 5.0));
        assert!((s.mean - 3.0).abs() < 1e-12);
        assert_eq!(Summary::of(&[]).frames, 0);
    }
}
