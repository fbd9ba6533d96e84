//! Soak: a long stream at a reduced size (64x36, 30 fps) through all three elements, with the
//! `nervesr` model swapped live every 10 s of video by rewriting its `model-location` manifest;
//! resident memory and open file descriptors are sampled and their slope over the stream is
//! reported (and bounded). The chain: `videotestsrc ! x264enc ! rtph264pay`, 1% of the packets
//! dropped, `rtpjitterbuffer do-lost=true ! nervesalvage ! rtph264depay ! avdec_h264 !
//! nerverecover ! nervesr ! fakesink`, not synced to the clock.
//!
//! `cargo test --release -p gst-nerve --test soak` runs a 10-minute stream (CI, ~30 s); the hour is
//! `scripts/soak.sh` (`NERVE_SOAK_MINUTES=60 ... -- --ignored soak_long`), which writes its
//! samples and slopes as JSON (`NERVE_SOAK_REPORT`, default target/soak-report.json).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Entry, model_dir};
use gst::prelude::*;

const FPS: u64 = 30;
/// Seconds of video between two live swaps.
const SWAP_EVERY_S: u64 = 10;

/// Resident memory (KiB) and open file descriptors of this process now.
fn rss_and_fds() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
    (rss, fds)
}

/// Least-squares slope of y over x.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx > 0.0 { sxy / sxx } else { 0.0 }
}

/// Rewrites the manifest so that `name` is the default x2 model (temporary file, then rename).
fn set_default(dir: &std::path::Path, name: &str) {
    let path = dir.join("manifest.toml");
    let text = std::fs::read_to_string(&path).expect("manifest");
    let mut out = String::new();
    for table in text.split("[[model]]").filter(|t| !t.trim().is_empty()) {
        let body: String = table.lines().filter(|l| !l.starts_with("default")).map(|l| format!("{l}\n")).collect();
        out.push_str(&format!("[[model]]\ndefault = {}{body}", body.contains(&format!("name = \"{name}\""))));
    }
    let tmp = dir.join("manifest.toml.tmp");
    std::fs::write(&tmp, out).expect("write");
    std::fs::rename(&tmp, &path).expect("rename");
}

struct Sample {
    video_s: f64,
    wall_s: f64,
    rss_kib: u64,
    fds: u64,
}

fn soak(minutes: u64, swap_every_s: u64) -> (Vec<Sample>, gst::Structure, u64) {
    common::init();
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let dir = model_dir(&[
        Entry { name: "a", source: &models.join("nerve-sr-x2.onnx"), scale: 2, frames: 1 },
        Entry { name: "b", source: &models.join("nerve-sr-x2-s2d.onnx"), scale: 2, frames: 1 },
    ]);
    set_default(&dir, "a");
    let frames = minutes * 60 * FPS;
    let desc = format!(
        "videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,width=64,height=36,framerate={FPS}/1,format=I420 ! \
         x264enc tune=zerolatency speed-preset=ultrafast key-int-max=60 threads=1 ! rtph264pay name=pay mtu=120 ! \
         rtpjitterbuffer do-lost=true latency=50 ! nervesalvage ! rtph264depay ! avdec_h264 max-threads=1 ! \
         nerverecover stats-interval=0 ! nervesr name=sr threads=1 stats-interval=0 model-location=\"{}\" watch-interval=20 ! \
         fakesink name=sink sync=false",
        dir.display()
    );
    let pipeline = gst::parse::launch(&desc).expect("pipeline").downcast::<gst::Pipeline>().expect("pipeline");
    // 1% of the packets lost, at fixed places.
    let n = Arc::new(AtomicU64::new(0));
    let c = n.clone();
    pipeline.by_name("pay").expect("pay").static_pad("src").expect("src").add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        if c.fetch_add(1, Ordering::Relaxed) % 100 == 37 { gst::PadProbeReturn::Drop } else { gst::PadProbeReturn::Ok }
    });
    let shown = Arc::new(AtomicU64::new(0));
    let s = shown.clone();
    pipeline.by_name("sink").expect("sink").static_pad("sink").expect("pad").add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        s.fetch_add(1, Ordering::Relaxed);
        gst::PadProbeReturn::Ok
    });
    let done = Arc::new(AtomicBool::new(false));
    // Swaps go by video time (the stream runs many times faster than real time).
    let swapper = {
        let (done, dir, shown) = (done.clone(), dir.clone(), shown.clone());
        let every = swap_every_s * FPS;
        std::thread::spawn(move || {
            let (mut which, mut next) = (0, every);
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
                if shown.load(Ordering::Relaxed) >= next {
                    which = 1 - which;
                    set_default(&dir, ["a", "b"][which]);
                    next += every;
                }
            }
        })
    };
    let started = Instant::now();
    pipeline.set_state(gst::State::Playing).expect("play");
    let bus = pipeline.bus().expect("bus");
    let mut samples = Vec::new();
    let ended = loop {
        let (rss_kib, fds) = rss_and_fds();
        samples.push(Sample { video_s: shown.load(Ordering::Relaxed) as f64 / FPS as f64, wall_s: started.elapsed().as_secs_f64(), rss_kib, fds });
        if let Some(msg) = bus.timed_pop_filtered(gst::ClockTime::from_mseconds(100), &[gst::MessageType::Eos, gst::MessageType::Error]) {
            break msg;
        }
        assert!(started.elapsed() < Duration::from_secs(minutes * 60 * 2 + 300), "the soak did not finish");
    };
    done.store(true, Ordering::Relaxed);
    let stats = pipeline.by_name("sr").expect("sr").property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).expect("stop");
    let _ = swapper.join();
    assert!(matches!(ended.view(), gst::MessageView::Eos(_)), "{ended:?}");
    (samples, stats, shown.load(Ordering::Relaxed))
}

/// Slopes over the samples after the first tenth of the stream (allocator pools and ONNX
/// Runtime's arena settle there): (RSS MiB per hour of video, fds per hour of video).
fn slopes(samples: &[Sample]) -> (f64, f64) {
    let end = samples.last().map_or(0.0, |s| s.video_s);
    let steady: Vec<&Sample> = samples.iter().filter(|s| s.video_s >= end / 10.0).collect();
    let rss: Vec<(f64, f64)> = steady.iter().map(|s| (s.video_s / 3600.0, s.rss_kib as f64 / 1024.0)).collect();
    let fds: Vec<(f64, f64)> = steady.iter().map(|s| (s.video_s / 3600.0, s.fds as f64)).collect();
    (slope(&rss), slope(&fds))
}

fn run_and_report(minutes: u64, rss_bound_mib_per_hour: f64) {
    let (samples, stats, shown) = soak(minutes, SWAP_EVERY_S);
    let (rss_slope, fd_slope) = slopes(&samples);
    let last = samples.last().expect("samples");
    let swaps = stats.get::<u64>("model-swaps").expect("stat");
    let report = serde_json::json!({
        "video_minutes": minutes,
        "frames_shown": shown,
        "wall_s": last.wall_s,
        "model_swaps": swaps,
        "swaps_refused": stats.get::<u64>("swaps-refused").expect("stat"),
        "rss_mib_first": samples[0].rss_kib as f64 / 1024.0,
        "rss_mib_last": last.rss_kib as f64 / 1024.0,
        "rss_mib_max": samples.iter().map(|s| s.rss_kib).max().unwrap_or(0) as f64 / 1024.0,
        "rss_slope_mib_per_video_hour": rss_slope,
        "fds_first": samples[0].fds,
        "fds_last": last.fds,
        "fds_max": samples.iter().map(|s| s.fds).max().unwrap_or(0),
        "fd_slope_per_video_hour": fd_slope,
        "samples": samples.iter().map(|s| [s.video_s, s.wall_s, s.rss_kib as f64, s.fds as f64]).collect::<Vec<_>>(),
    });
    let path = std::env::var("NERVE_SOAK_REPORT")
        .unwrap_or_else(|_| format!("{}/../target/soak-report-{minutes}min.json", env!("CARGO_MANIFEST_DIR")));
    std::fs::write(&path, serde_json::to_string_pretty(&report).expect("json")).expect("write the report");
    println!(
        "soak: {minutes} min of video ({shown} frames) in {:.0} s, {swaps} live swaps; RSS {:.1} -> {:.1} MiB (max {:.1}), slope {rss_slope:.2} MiB per video hour; fds {} -> {} , slope {fd_slope:.2} per video hour; report {path}",
        last.wall_s,
        samples[0].rss_kib as f64 / 1024.0,
        last.rss_kib as f64 / 1024.0,
        report["rss_mib_max"].as_f64().unwrap_or(0.0),
        samples[0].fds,
        last.fds,
    );
    assert_eq!(shown, minutes * 60 * FPS, "one frame out per frame in (nerverecover fills what was lost)");
    // The manifest changes every SWAP_EVERY_S of video; the watcher may fold two changes into one.
    let asked = minutes * 60 / SWAP_EVERY_S - 1;
    assert!(swaps >= asked / 2, "{swaps} live swaps for {asked} manifest changes");
    assert!(rss_slope < rss_bound_mib_per_hour, "RSS grows {rss_slope:.2} MiB per hour of video (bound {rss_bound_mib_per_hour})");
    // File descriptors: none may leak per swap (a leak of one per swap would show as dozens).
    let settled = samples[samples.len() / 10].fds;
    assert!(last.fds <= settled + 4, "fds grew from {settled} to {}", last.fds);
}

/// CI: 10 minutes of video; the slope over so short a run is noisy, so the bound is generous
/// (a leak of a frame per swap or per second of video would still exceed it).
#[test]
fn soak_short() {
    run_and_report(std::env::var("NERVE_SOAK_SHORT_MINUTES").ok().and_then(|v| v.parse().ok()).unwrap_or(10), 32.0);
}

/// The hour (`scripts/soak.sh`): bound 1 MiB per hour of video.
#[test]
#[ignore = "an hour of video: scripts/soak.sh"]
fn soak_long() {
    run_and_report(std::env::var("NERVE_SOAK_MINUTES").ok().and_then(|v| v.parse().ok()).unwrap_or(60), 1.0);
}
