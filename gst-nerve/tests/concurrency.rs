//! Many pipelines in one process (`cargo test --release -p gst-nerve --test concurrency`):
//! 16 `appsrc ! nervesr ! appsink` pipelines on 16 threads share one ONNX Runtime environment;
//! each is started, paused and resumed, has its model swapped, and is torn down mid-stream at
//! random (seeded). No deadlock (every wait has a deadline, and a watchdog fails the test), no
//! cross-talk: every frame that comes out equals, bit for bit, what a solo run of the same
//! stream through the model that made it gave (the shipped CPU models with one intra-op thread
//! are deterministic: `solo_runs_are_deterministic` checks that first).
//!
//! CI runs 2 rounds of 16 pipelines; `NERVE_CONCURRENCY_ROUNDS=100` runs the 100 rounds
//! and `NERVE_CONCURRENCY_SEED=<n>` another schedule; `NERVE_CONCURRENCY_PAUSES=0` leaves the
//! pauses out.
//!
//! The appsinks do not preroll (`async=false`): with GStreamer 1.22.0 a pipeline whose sink
//! prerolls can stay PAUSED with PLAYING pending for good when PLAYING, PAUSED and PLAYING
//! follow each other before the first preroll, whatever the element in the middle:
//! `upstream_pause_race` shows it with `identity` in place of `nervesr` (about 2% of runs), and
//! never with a sink that does not preroll (docs/reliability.md#concurrency).

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use gst::prelude::*;

const PIPELINES: usize = 16;
const FRAMES: usize = 24;
const WIDTH: u32 = 64;
const HEIGHT: u32 = 36;
/// The two shipped x2 models the pipelines swap between (found through the source tree's
/// models/manifest.toml).
const MODELS: [&str; 2] = ["nerve-sr-x2", "nerve-sr-x2-s2d"];
/// A run that has not finished in this time is deadlocked.
const DEADLINE: Duration = Duration::from_secs(300);

/// A small deterministic generator (xorshift64*): the schedule must replay from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Stream `s`'s frame `f`: I420, a moving pattern different for every stream.
fn input_frame(s: usize, f: usize) -> gst::Buffer {
    let info = common::info(gst_video::VideoFormat::I420, WIDTH, HEIGHT);
    let mut b = common::frame(&info, |x, y| ((x * (3 + s) + y * (7 + 2 * s) + f * 5 + s * 31) % 220 + 16) as u8, (100 + s * 3) as u8, (150 - s * 2) as u8);
    let buffer = b.get_mut().expect("fresh");
    buffer.set_pts(gst::ClockTime::from_mseconds(f as u64 * 40));
    buffer.set_duration(gst::ClockTime::from_mseconds(40));
    b
}

fn caps() -> gst::Caps {
    common::info(gst_video::VideoFormat::I420, WIDTH, HEIGHT).to_caps().expect("caps")
}

struct Pipeline {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    sink: gst_app::AppSink,
    sr: gst::Element,
}

fn pipeline(model: &str) -> Pipeline {
    common::init();
    let pipeline = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder().caps(&caps()).format(gst::Format::Time).build();
    let sr = gst::ElementFactory::make("nervesr").property("model", model).property("threads", 1u32).property("scale", 2u32).build().expect("nervesr");
    let sink = gst_app::AppSink::builder().sync(false).build();
    // no preroll: see the module's comment and `upstream_pause_race`
    sink.set_property("async", false);
    pipeline.add_many([src.upcast_ref(), &sr, sink.upcast_ref()]).expect("add");
    gst::Element::link_many([src.upcast_ref(), &sr, sink.upcast_ref()]).expect("link");
    Pipeline { pipeline, src, sink, sr }
}

fn bytes(sample: &gst::Sample) -> Vec<u8> {
    sample.buffer().expect("buffer").map_readable().expect("map").to_vec()
}

/// A solo run: every frame of stream `s` through `model`, in order, nothing else running.
fn solo(s: usize, model: &str) -> Vec<Vec<u8>> {
    let p = pipeline(model);
    p.pipeline.set_state(gst::State::Playing).expect("play");
    for f in 0..FRAMES {
        p.src.push_buffer(input_frame(s, f)).expect("push");
    }
    p.src.end_of_stream().expect("eos");
    let mut out = Vec::new();
    while let Some(sample) = p.sink.try_pull_sample(gst::ClockTime::from_seconds(30)) {
        out.push(bytes(&sample));
    }
    let enhanced = p.sr.property::<gst::Structure>("stats").get::<u64>("frames-enhanced").expect("stat");
    p.pipeline.set_state(gst::State::Null).expect("stop");
    assert_eq!(out.len(), FRAMES, "solo run of stream {s} through {model}");
    assert_eq!(enhanced, FRAMES as u64, "every solo frame goes through the model");
    out
}

/// What one randomly driven run of stream `s` did.
#[derive(Debug, Default)]
struct Run {
    pushed: usize,
    swaps: usize,
    pauses: usize,
    torn_down: bool,
    /// Times the output changed model (a swap that took effect while frames flowed).
    changes: usize,
}

/// One run of stream `s`: starts on a random model, pushes frames with random pauses, swaps
/// and an early teardown, and checks every output frame against the solo references.
fn random_run(s: usize, rng: &mut Rng, refs: &[[Vec<Vec<u8>>; 2]]) -> Result<Run, String> {
    let pauses = pauses_on();
    let mut model = rng.below(2) as usize;
    let p = pipeline(MODELS[model]);
    p.pipeline.set_state(gst::State::Playing).map_err(|e| format!("play: {e}"))?;
    let mut run = Run::default();
    let teardown_at = rng.chance(25).then(|| rng.below(FRAMES as u64) as usize);
    let mut out = Vec::new();
    let first_model = model;
    for f in 0..FRAMES {
        if teardown_at == Some(f) {
            run.torn_down = true;
            break;
        }
        if rng.chance(8) {
            model = 1 - model;
            p.sr.set_property("model", MODELS[model]);
            run.swaps += 1;
        }
        if pauses && rng.chance(5) {
            p.pipeline.set_state(gst::State::Paused).map_err(|e| format!("pause: {e}"))?;
            std::thread::sleep(Duration::from_millis(rng.below(20)));
            p.pipeline.set_state(gst::State::Playing).map_err(|e| format!("resume: {e}"))?;
            run.pauses += 1;
        }
        p.src.push_buffer(input_frame(s, f)).map_err(|e| format!("push {f}: {e:?}"))?;
        run.pushed += 1;
        // Drain what is ready, so that frames and swaps interleave.
        while let Some(sample) = p.sink.try_pull_sample(gst::ClockTime::ZERO) {
            out.push(sample);
        }
    }
    if !run.torn_down {
        p.src.end_of_stream().map_err(|e| format!("eos: {e:?}"))?;
        while let Some(sample) = p.sink.try_pull_sample(gst::ClockTime::from_seconds(60)) {
            out.push(sample);
        }
        if out.len() != FRAMES {
            let bus = p.pipeline.bus().expect("bus");
            let errors: Vec<String> = std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Warning]))
                .map(|m| match m.view() {
                    gst::MessageView::Error(e) => format!("error {} ({:?})", e.error(), e.debug()),
                    gst::MessageView::Warning(w) => format!("warning {} ({:?})", w.error(), w.debug()),
                    _ => String::new(),
                })
                .collect();
            let (_, state, pending) = p.pipeline.state(gst::ClockTime::ZERO);
            let stats = p.sr.property::<gst::Structure>("stats");
            return Err(format!(
                "stream {s}: {} frames out of {FRAMES} ({run:?}); pipeline {state:?} (pending {pending:?}); nervesr {stats}; bus: {errors:?}",
                out.len()
            ));
        }
    }
    p.pipeline.set_state(gst::State::Null).map_err(|e| format!("stop: {e}"))?;
    // Every frame is wholly one model's solo output for this very frame of this stream; the
    // first is the starting model's, and the model changes no more often than it was swapped.
    let mut current = first_model;
    let mut changes = 0;
    for sample in &out {
        let pts = sample.buffer().and_then(|b| b.pts()).ok_or("no timestamp")?;
        let f = (pts.mseconds() / 40) as usize;
        let data = bytes(sample);
        let made_by = (0..2).find(|&m| refs[s][m].get(f) == Some(&data));
        let Some(m) = made_by else {
            return Err(format!("stream {s} frame {f}: not bit-identical to either model's solo output"));
        };
        if m != current {
            changes += 1;
            current = m;
        }
    }
    if changes > run.swaps {
        return Err(format!("stream {s}: the model changed {changes} times for {} swaps", run.swaps));
    }
    run.changes = changes;
    if out.len() > run.pushed {
        return Err(format!("stream {s}: {} frames out for {} pushed", out.len(), run.pushed));
    }
    Ok(run)
}

fn pauses_on() -> bool {
    std::env::var("NERVE_CONCURRENCY_PAUSES").map_or(true, |v| v != "0")
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn solo_runs_are_deterministic() {
    for s in [0, 5] {
        for model in MODELS {
            assert_eq!(solo(s, model), solo(s, model), "stream {s} through {model} twice");
        }
    }
}

#[test]
fn sixteen_pipelines_at_random_give_their_solo_output_bit_for_bit() {
    let rounds = env_u64("NERVE_CONCURRENCY_ROUNDS", 2);
    let seed = env_u64("NERVE_CONCURRENCY_SEED", 29);
    // The references: each stream alone through each model.
    let refs: Vec<[Vec<Vec<u8>>; 2]> = (0..PIPELINES).map(|s| [solo(s, MODELS[0]), solo(s, MODELS[1])]).collect();
    assert!((0..PIPELINES).all(|s| refs[s][0] != refs[s][1]), "the two models must differ for a swap to be seen");
    let refs = std::sync::Arc::new(refs);
    let started = Instant::now();
    let (mut swaps, mut pauses, mut teardowns, mut frames, mut changes) = (0, 0, 0, 0, 0);
    for round in 0..rounds {
        let (tx, rx) = mpsc::channel();
        for s in 0..PIPELINES {
            let (tx, refs) = (tx.clone(), refs.clone());
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (round << 8 | s as u64) | 1);
            std::thread::spawn(move || {
                // A short random stagger, so that starts, swaps and teardowns overlap differently.
                std::thread::sleep(Duration::from_millis(rng.below(30)));
                let _ = tx.send((s, random_run(s, &mut rng, &refs)));
            });
        }
        drop(tx);
        for _ in 0..PIPELINES {
            let left = DEADLINE.checked_sub(started.elapsed()).unwrap_or_default();
            let (s, result) = rx.recv_timeout(left).unwrap_or_else(|_| panic!("round {round}: a pipeline is stuck after {:?} (deadlock)", started.elapsed()));
            let run = result.unwrap_or_else(|e| panic!("round {round} (seed {seed}), pipeline {s}: {e}"));
            swaps += run.swaps;
            pauses += run.pauses;
            teardowns += usize::from(run.torn_down);
            frames += run.pushed;
            changes += run.changes;
        }
    }
    println!(
        "{rounds} rounds of {PIPELINES} pipelines (seed {seed}): {frames} frames, {swaps} swaps ({changes} seen in the output), {pauses} pauses, {teardowns} early teardowns, all bit-identical to solo runs, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        changes > 0 && teardowns > 0 && (pauses > 0 || !pauses_on()),
        "the schedule exercised too little: {swaps} swaps ({changes} seen), {pauses} pauses, {teardowns} teardowns"
    );
}

/// The stall that made pauses opt-in until 2026-12-06, without `nervesr`: 16 threads x 40 rounds
/// of `appsrc ! identity ! appsink`, PLAYING with PAUSED / PLAYING pairs at random (5% per frame)
/// before and between pushes, as `random_run` does. With a prerolling (async) sink about 2% of
/// the runs put out nothing and stay PAUSED with PLAYING pending (setting PLAYING again does not
/// free them); with `async=false` none does. Upstream behaviour of GStreamer 1.22.0, kept to be
/// re-run on newer releases: `cargo test --release -p gst-nerve --test concurrency -- --ignored
/// upstream_pause_race` (about 2 minutes while the stall happens: each stuck run waits 10 s).
#[test]
#[ignore = "GStreamer's own behaviour, minutes long; run on demand"]
fn upstream_pause_race() {
    common::init();
    let one = |seed: u64, prerolls: bool| -> bool {
        let mut rng = Rng(seed | 1);
        let pipeline = gst::Pipeline::new();
        let src = gst_app::AppSrc::builder().caps(&caps()).format(gst::Format::Time).build();
        let mid = gst::ElementFactory::make("identity").build().expect("identity");
        let sink = gst_app::AppSink::builder().sync(false).build();
        sink.set_property("async", prerolls);
        pipeline.add_many([src.upcast_ref(), &mid, sink.upcast_ref()]).expect("add");
        gst::Element::link_many([src.upcast_ref(), &mid, sink.upcast_ref()]).expect("link");
        pipeline.set_state(gst::State::Playing).expect("play");
        let mut out = 0;
        for f in 0..FRAMES {
            if rng.chance(5) {
                pipeline.set_state(gst::State::Paused).expect("pause");
                std::thread::sleep(Duration::from_millis(rng.below(20)));
                pipeline.set_state(gst::State::Playing).expect("resume");
            }
            src.push_buffer(input_frame(0, f)).expect("push");
            while sink.try_pull_sample(gst::ClockTime::ZERO).is_some() {
                out += 1;
            }
        }
        src.end_of_stream().expect("eos");
        while sink.try_pull_sample(gst::ClockTime::from_seconds(10)).is_some() {
            out += 1;
        }
        pipeline.set_state(gst::State::Null).expect("stop");
        out == FRAMES
    };
    let stuck = |prerolls: bool| -> usize {
        (0..40u64)
            .map(|round| {
                let threads: Vec<_> = (0..PIPELINES as u64).map(|i| std::thread::spawn(move || one(round << 8 | i, prerolls))).collect();
                threads.into_iter().map(|t| usize::from(!t.join().unwrap_or(false))).sum::<usize>()
            })
            .sum()
    };
    let with_preroll = stuck(true);
    let without = stuck(false);
    println!("runs of 640 that put out nothing: {with_preroll} with a prerolling appsink, {without} with async=false");
    assert_eq!(without, 0, "a sink that does not preroll must never stall");
}
