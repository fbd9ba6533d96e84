//! What the benchmarks share: decoding the frames they push, timing a pipeline fed by an
//! `appsrc` until its end of stream, the process's CPU time and the shared clips.
#![allow(dead_code)] // each bench uses its own subset

use std::time::{Duration, Instant};

use gst::prelude::*;

/// Runs `desc`, a launch line ending in `appsink name=sink`, to the end and returns every buffer.
pub fn decode(desc: &str) -> Vec<gst::Buffer> {
    let pipeline = gst::parse::launch(desc).expect("decode pipeline").downcast::<gst::Pipeline>().unwrap();
    let sink = pipeline.by_name("sink").unwrap().downcast::<gst_app::AppSink>().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut frames = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        frames.push(sample.buffer_owned().unwrap());
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(!frames.is_empty(), "nothing decoded from {desc}");
    frames
}

/// Builds `desc` (starting with `appsrc name=src`, whose queue may hold 64 MiB) and plays it.
pub fn start(desc: &str) -> (gst::Pipeline, gst_app::AppSrc) {
    let pipeline = gst::parse::launch(desc).expect("bench pipeline").downcast::<gst::Pipeline>().unwrap();
    let src = pipeline.by_name("src").unwrap().downcast::<gst_app::AppSrc>().unwrap();
    src.set_max_bytes(64 << 20);
    pipeline.set_state(gst::State::Playing).unwrap();
    (pipeline, src)
}

/// Ends `src`'s stream and waits until the pipeline has played everything; the time since
/// `started`. An error message panics, naming `what`. The pipeline stays playing (its elements'
/// stats can still be read) until the caller stops it.
pub fn finish(pipeline: &gst::Pipeline, src: &gst_app::AppSrc, started: Instant, what: &str) -> Duration {
    src.end_of_stream().unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus.timed_pop_filtered(gst::ClockTime::NONE, &[gst::MessageType::Eos, gst::MessageType::Error]).unwrap();
    let elapsed = started.elapsed();
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("{what}: {} ({:?})", e.error(), e.debug());
    }
    elapsed
}

/// CPU time of this process so far (user + system), for the benches that price a feature in CPU.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// `rel` under the shared data (`NERVE_DATA`, else ../shared/data beside the repository); exits
/// with a message when it is not there.
pub fn shared_clip(rel: &str) -> std::path::PathBuf {
    let data = std::env::var_os("NERVE_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    let clip = data.join(rel);
    if !clip.is_file() {
        eprintln!("{} not found: set NERVE_DATA", clip.display());
        std::process::exit(1);
    }
    clip
}

