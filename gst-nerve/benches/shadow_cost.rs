//! What shadow mode costs playback: a real playback pipeline (720p Big Buck Bunny, VP8/VP9
//! decode) through `nervesr scale=1`, without and with a candidate in shadow, as frames per
//! second of the streaming thread (wall clock, as fast as it decodes) and CPU time per second of
//! video. The shadow's worker runs beside the stream; the target is that the stream's fps does
//! not drop measurably (ratio with / without >= 0.97 on an idle machine).
//!
//! `cargo bench -p gst-nerve --bench shadow_cost` (needs ../shared/data); prints one line per
//! budget and writes gst-nerve/results/shadow-cost.json.

use std::path::Path;
use std::time::{Duration, Instant};

use gst::prelude::*;

mod common;
use common::cpu_time;

const CLIP: &str = "videos/animation/big_buck_bunny_0_30.webm";
const ROUNDS: usize = 7;


struct Run {
    wall: Duration,
    cpu: Duration,
    frames: u64,
    video_s: f64,
    samples: u64,
}

/// Plays the clip once; `shadow` is the candidate and budget, if any.
fn play(clip: &Path, shadow: Option<(&str, u32)>) -> Run {
    let extra = shadow.map(|(m, b)| format!("shadow-model={m} shadow-budget={b}")).unwrap_or_default();
    let launch = format!(
        "filesrc location={} ! decodebin ! videoconvert ! video/x-raw,format=I420 ! nervesr name=sr scale=1 stats-interval=0 \
         {extra} ! fakesink name=sink sync=false",
        clip.display()
    );
    let pipeline = gst::parse::launch(&launch).expect("pipeline").downcast::<gst::Pipeline>().expect("a pipeline");
    let (before, started) = (cpu_time(), Instant::now());
    pipeline.set_state(gst::State::Playing).expect("plays");
    let bus = pipeline.bus().expect("bus");
    let mut samples = 0;
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{} ({:?})", e.error(), e.debug()),
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure().filter(|s| s.name() == "nervesr-stats") {
                    samples = s.get::<u64>("shadow-samples").unwrap_or(0);
                    if let Ok(err) = s.get::<&str>("shadow-error") {
                        assert!(err.is_empty(), "shadow failed: {err}");
                    }
                }
            }
            _ => {}
        }
    }
    let wall = started.elapsed();
    let sink = pipeline.by_name("sink").expect("sink");
    let frames = sink.property::<gst::Structure>("stats").get::<u64>("rendered").unwrap_or(0);
    let video_s = pipeline.query_position::<gst::ClockTime>().map(|p| p.seconds_f64()).unwrap_or(30.0);
    pipeline.set_state(gst::State::Null).expect("stops");
    Run { wall, cpu: cpu_time() - before, frames, video_s, samples }
}

fn main() {
    gst::init().expect("gst");
    gstnerve::plugin_register_static().expect("plugin");
    let clip = common::shared_clip(CLIP);
    // The candidate: the int8 x2 model beside the default x2 champion.
    let candidate = "nerve-sr-x2-int8";
    println!("shadow cost: {CLIP}, decode + nervesr scale=1 + fakesink, {ROUNDS} alternating rounds, candidate {candidate}");
    let mut rows = Vec::new();
    for budget in [30u32, 120] {
        let (mut off_wall, mut on_wall, mut off_cpu, mut on_cpu) = (Duration::ZERO, Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let (mut frames, mut video, mut samples) = (0u64, 0.0, 0u64);
        // Per-round ratios: a busy neighbour slows a round, not one side of all rounds; the
        // median of the rounds is the figure.
        let mut ratios = Vec::new();
        for _ in 0..ROUNDS {
            let off = play(&clip, None);
            let on = play(&clip, Some((candidate, budget)));
            assert_eq!(off.frames, on.frames, "the shadow must not drop frames");
            (off_wall, on_wall, off_cpu, on_cpu) = (off_wall + off.wall, on_wall + on.wall, off_cpu + off.cpu, on_cpu + on.cpu);
            ratios.push(off.wall.as_secs_f64() / on.wall.as_secs_f64());
            frames += off.frames;
            video += off.video_s;
            samples += on.samples;
        }
        let fps = |wall: Duration| frames as f64 / wall.as_secs_f64();
        ratios.sort_by(f64::total_cmp);
        let ratio = ratios[ratios.len() / 2];
        println!(
            "budget {budget:>3} samples/min: {:.0} fps without, {:.0} fps with shadow (median round ratio {ratio:.3}); CPU {:.3} -> {:.3} s per s of \
             video; {} samples scored per round",
            fps(off_wall),
            fps(on_wall),
            off_cpu.as_secs_f64() / video,
            on_cpu.as_secs_f64() / video,
            samples / ROUNDS as u64
        );
        rows.push(serde_json::json!({
            "budget_per_min": budget,
            "fps_without": fps(off_wall),
            "fps_with": fps(on_wall),
            "fps_ratio_median_round": ratio,
            "fps_ratio_rounds": ratios,
            "cpu_s_per_video_s_without": off_cpu.as_secs_f64() / video,
            "cpu_s_per_video_s_with": on_cpu.as_secs_f64() / video,
            "samples_per_round": samples / ROUNDS as u64,
        }));
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/shadow-cost.json");
    let json = serde_json::json!({"clip": CLIP, "candidate": candidate, "rounds": ROUNDS, "rows": rows});
    if let Err(e) = std::fs::create_dir_all(out.parent().unwrap()).and_then(|_| std::fs::write(&out, serde_json::to_string_pretty(&json).unwrap())) {
        eprintln!("cannot write {}: {e}", out.display());
    }
    println!("wrote {}", out.display());
}
