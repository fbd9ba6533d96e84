//! Throughput of `nervesr` x2 (640x360 I420 -> 1280x720) with the default model, beside
//! `videoscale method=lanczos` in the same run; the conversion overhead alone (model excluded);
//! the pipeline's peak resident memory; and x4 (320x180 -> 1280x720) with the default x4 model
//! and with the Vid4 one; then every x2 model of the shipped manifest (the quality/speed
//! frontier's speed axis); then the sizes phones show: 960x540 -> 1920x1080 and 1280x720 ->
//! 2560x1440 with the default x2 model and every int8 variant of the manifest, each in bands (the
//! element's default: one band per core, `bands=0`) and whole (`bands=1`) one after the other.
//! Run with `cargo bench -p gst-nerve`
//! (the 1-minute load average is printed: a loaded machine gives lower figures).
//!
//! Frames are real video (the bundled talking-head sample, downscaled to 640x360), decoded once
//! and pushed from memory so the decoder's cost is not counted.

use std::path::Path;
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstnerve::engine::manifest::Task;

mod common;

const FRAMES: usize = 300;
const W: usize = 640;
const H: usize = 360;

fn sample_frames(w: usize, h: usize) -> Vec<gst::Buffer> {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/talking_head_720p.mp4");
    let desc = format!(
        "filesrc location={} ! qtdemux ! h264parse ! avdec_h264 ! videoscale method=bilinear ! videoconvert ! \
         video/x-raw,format=I420,width={w},height={h} ! appsink name=sink sync=false",
        sample.display()
    );
    common::decode(&desc)
}

/// Pushes FRAMES frames of w x h through `filter` into a fakesink as fast as possible; returns fps.
fn run(filter: &str, frames: &[gst::Buffer], (w, h): (usize, usize)) -> f64 {
    let desc = format!(
        "appsrc name=src format=time is-live=false caps=video/x-raw,format=I420,width={w},height={h},framerate=30/1 ! \
         {filter} ! fakesink sync=false"
    );
    let (pipeline, src) = common::start(&desc);
    let started = Instant::now();
    for i in 0..FRAMES {
        let mut b = frames[i % frames.len()].copy();
        let b_mut = b.make_mut();
        b_mut.set_pts(gst::ClockTime::from_mseconds(i as u64 * 33));
        src.push_buffer(b).unwrap();
    }
    let elapsed = common::finish(&pipeline, &src, started, filter);
    pipeline.set_state(gst::State::Null).unwrap();
    FRAMES as f64 / elapsed.as_secs_f64()
}

fn conversion_overhead(frame: &gst::Buffer) -> Duration {
    use gstnerve::engine::convert::{luma_to_tensor, tensor_to_luma};
    use gstnerve::engine::resample::{PlaneGeometry, Resampler};
    let map = frame.map_readable().unwrap();
    let (luma, chroma) = map.split_at(W * H);
    let mut tensor = vec![0f32; W * H];
    let out_tensor = vec![0.5f32; 4 * W * H];
    let mut out_luma = vec![0u8; 4 * W * H];
    let mut out_chroma = vec![0u8; W * H];
    let g = |w, h| PlaneGeometry { width: w, height: h, comps: 1 };
    let mut chroma_up = Resampler::new(g(W / 2, H / 2), g(W, H));
    let n = 200;
    let started = Instant::now();
    for _ in 0..n {
        luma_to_tensor(luma, W, W, H, &mut tensor);
        tensor_to_luma(&out_tensor, 2 * W, 2 * H, &mut out_luma, 2 * W);
        for plane in [&chroma[..W * H / 4], &chroma[W * H / 4..]] {
            chroma_up.run(plane, W / 2, &mut out_chroma, W);
        }
    }
    started.elapsed() / n
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    gst::init().unwrap();
    gstnerve::plugin_register_static().unwrap();
    let frames = sample_frames(W, H);
    if std::env::args().any(|a| a == "--child-memory") {
        // Run alone in a fresh process so its peak memory is the pipeline's own.
        let fps = run("nervesr", &frames, (W, H));
        println!("{fps:.1} {}", peak_rss_kib());
        return;
    }
    let lanczos = run("videoscale method=lanczos ! video/x-raw,width=1280,height=720", &frames, (W, H));
    let nervesr = run("nervesr", &frames, (W, H));
    let nervesr_whole = run("nervesr bands=1", &frames, (W, H));
    let small = sample_frames(W / 2, H / 2);
    let x4 = |filter: &str| run(filter, &small, (W / 2, H / 2));
    let (x4_default, x4_bi) = (x4("nervesr scale=4"), x4("nervesr scale=4 model=nerve-sr-x4-bi"));
    let overhead = conversion_overhead(&frames[0]);
    let child = std::process::Command::new(std::env::current_exe().unwrap()).arg("--child-memory").output().unwrap();
    let child_out = String::from_utf8_lossy(&child.stdout);
    let peak_mib = child_out.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN) / 1024.0;
    println!("nervesr x2 benchmark: {FRAMES} frames of 640x360 I420 -> 1280x720, default model, {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    println!("  nervesr (default model)      {nervesr:7.1} fps (whole frames, bands=1: {nervesr_whole:.1})");
    println!("  videoscale method=lanczos    {lanczos:7.1} fps");
    println!("  conversion overhead          {:7.2} ms/frame (luma in/out + chroma upscale, model excluded)", overhead.as_secs_f64() * 1e3);
    println!("  peak resident memory         {peak_mib:7.1} MiB (nervesr pipeline alone, whole process)");
    println!("  nervesr x4, 320x180 -> 1280x720, default x4 model   {x4_default:7.1} fps");
    println!("  nervesr x4, 320x180 -> 1280x720, nerve-sr-x4-bi     {x4_bi:7.1} fps");
    // Each x2 model of the manifest, in the same run (so on the same machine load).
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/manifest.toml");
    let manifest = gstnerve::engine::manifest::Manifest::load(&manifest).expect("shipped manifest");
    println!("  x2 models, 640x360 -> 1280x720:");
    for m in manifest.models.iter().filter(|m| m.task == Task::SuperResolution && m.scale == 2) {
        let fps = run(&format!("nervesr model={}", m.name), &frames, (W, H));
        println!("    {:<28} {fps:7.1} fps{}", m.name, if m.default { "  (default)" } else { "" });
    }
    // Phone-sized output: the 540p rung to 1080p, and 720p to 1440p.
    for (w, h) in [(960, 540), (1280, 720)] {
        let frames = sample_frames(w, h);
        println!("  x2 models, {w}x{h} -> {}x{}:", 2 * w, 2 * h);
        // The default for this size (the manifest may name a faster one for large inputs) and the
        // int8 variants (entries with a parent): the only ones near real time here.
        let sized = gstnerve::engine::manifest::resolve_sized_in("", Task::SuperResolution, 2, h as u32, std::slice::from_ref(&manifest.dir))
            .map(|r| r.entry.name)
            .unwrap_or_default();
        let int8 = manifest.models.iter().filter(|m| m.task == Task::SuperResolution && m.scale == 2 && m.parent.is_some() && m.name != sized);
        for model in std::iter::once("").chain(int8.map(|m| m.name.as_str())) {
            let fps = run(&format!("nervesr model=\"{model}\""), &frames, (w, h));
            let whole = run(&format!("nervesr model=\"{model}\" bands=1"), &frames, (w, h));
            let name = if model.is_empty() { format!("default: {sized}") } else { model.to_string() };
            println!("    {name:<28} {fps:7.1} fps (whole frames, bands=1: {whole:.1})");
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("  load average (1, 5, 15 min): {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
}
