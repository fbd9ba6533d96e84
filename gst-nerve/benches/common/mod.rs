//! What the benchmarks share: decoding the frames they push.

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
