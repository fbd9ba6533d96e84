//! What harvesting costs during playback: CPU time of a real playback pipeline (720p Big Buck
//! Bunny, VP8/VP9 decode) through `nervesr scale=1`, without and with harvesting, as extra CPU
//! time per second of video (target: at most 5%), and the disk written per minute of video.
//!
//! `cargo bench -p gst-nerve --bench harvest_cost` (needs ../shared/data).

use std::path::Path;
use std::time::Duration;

use gst::prelude::*;

mod common;
use common::cpu_time;

const CLIP: &str = "videos/animation/big_buck_bunny_0_30.webm";
const ROUNDS: usize = 5;


/// Plays the clip once, as fast as it decodes; returns (CPU time, seconds of video).
fn play(clip: &Path, harvest: Option<(&Path, u32)>) -> (Duration, f64) {
    let extra = harvest
        .map(|(dir, budget)| format!("harvest-location={} harvest-budget={budget}", dir.display()))
        .unwrap_or_default();
    let launch = format!(
        "filesrc location={} ! decodebin ! videoconvert ! video/x-raw,format=I420 ! nervesr scale=1 {extra} ! fakesink sync=false",
        clip.display()
    );
    let pipeline = gst::parse::launch(&launch).expect("pipeline");
    let before = cpu_time();
    pipeline.set_state(gst::State::Playing).expect("plays");
    let bus = pipeline.bus().expect("bus");
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{} ({:?})", e.error(), e.debug()),
            _ => {}
        }
    }
    let position = pipeline.query_position::<gst::ClockTime>().map(|p| p.seconds_f64()).unwrap_or(30.0);
    pipeline.set_state(gst::State::Null).expect("stops");
    (cpu_time() - before, position)
}

fn store_bytes(dir: &Path) -> (u64, usize) {
    let Ok(entries) = std::fs::read_dir(dir.join("items")) else { return (0, 0) };
    let files: Vec<_> = entries.flatten().collect();
    let bytes = files.iter().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum();
    (bytes, files.iter().filter(|e| e.path().extension().is_some_and(|x| x == "json")).count())
}

fn main() {
    gst::init().expect("gst");
    gstnerve::plugin_register_static().expect("plugin");
    let clip = common::shared_clip(CLIP);
    println!("harvest cost: {CLIP}, decode + nervesr scale=1 + fakesink, {ROUNDS} alternating rounds");
    for budget in [30u32, 600] {
        let (mut off, mut on, mut video) = (Duration::ZERO, Duration::ZERO, 0.0);
        let dir = std::env::temp_dir().join(format!("nerve-harvest-bench-{}-{budget}", std::process::id()));
        for _ in 0..ROUNDS {
            let (cpu, secs) = play(&clip, None);
            off += cpu;
            video += secs;
            on += play(&clip, Some((&dir, budget))).0;
        }
        let (bytes, patches) = store_bytes(&dir);
        let minutes = video / 60.0;
        println!(
            "budget {budget:>3} patches/min: playback {:.3} s CPU per s of video, with harvesting {:.3} s: {:+.1}% CPU; \
             {patches} patches, {:.1} KiB written per minute of video",
            off.as_secs_f64() / video,
            on.as_secs_f64() / video,
            (on.as_secs_f64() / off.as_secs_f64() - 1.0) * 100.0,
            bytes as f64 / 1024.0 / minutes
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
