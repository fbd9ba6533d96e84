//! Real clips from ../shared/data through real decoding pipelines and the shipped default model:
//! every frame comes out, at twice the size, in I420 and NV12, at even and odd sizes.

mod common;

use std::path::PathBuf;

use gst::prelude::*;

fn data(rel: &str) -> PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data").join(rel);
    assert!(p.exists(), "test data {} is missing (tests read ../shared/data)", p.display());
    p
}

/// Runs `source ! filter ! appsink` and returns (frames, width, height, format) of the output.
fn run_with(source: &str, filter: &str) -> (usize, i32, i32, String) {
    common::init();
    let desc = format!("{source} ! {filter} ! appsink name=sink sync=false");
    let pipeline = gst::parse::launch(&desc).unwrap().downcast::<gst::Pipeline>().unwrap();
    let sink = pipeline.by_name("sink").unwrap().downcast::<gst_app::AppSink>().unwrap();
    let bus = pipeline.bus().unwrap();
    let error = |bus: &gst::Bus| match bus.pop_filtered(&[gst::MessageType::Error]).as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Error(e)) => Some(format!("{} ({:?})", e.error(), e.debug())),
        _ => None,
    };
    if pipeline.set_state(gst::State::Playing).is_err() {
        panic!("{source}: does not start: {:?}", error(&bus));
    }
    let mut frames = 0;
    let mut caps = None;
    while let Ok(sample) = sink.pull_sample() {
        frames += 1;
        caps = sample.caps_owned();
    }
    if let Some(e) = error(&bus) {
        panic!("{source}: {e}");
    }
    pipeline.set_state(gst::State::Null).unwrap();
    let caps = caps.expect("at least one frame");
    let s = caps.structure(0).unwrap();
    (frames, s.get("width").unwrap(), s.get("height").unwrap(), s.get::<String>("format").unwrap())
}

/// Runs the source through nervesr, and checks it gives exactly as many frames as the source.
fn run(source: &str) -> (usize, i32, i32, String) {
    let (frames, ..) = run_with(source, "identity");
    let out = run_with(source, "nervesr");
    assert_eq!(out.0, frames, "nervesr must keep every frame");
    out
}

#[test]
fn a_real_clip_plays_through_at_twice_the_size_with_every_frame_kept() {
    let clip = data("videos/sports/armwrestling_demo.mp4");
    let source = format!(
        "filesrc location={} ! qtdemux ! h264parse ! avdec_h264 ! identity eos-after=40 ! videoconvert ! video/x-raw,format=I420",
        clip.display()
    );
    let (frames, w, h, format) = run(&source);
    assert!(frames >= 40, "{frames}");
    assert_eq!((w, h, format.as_str()), (680, 512, "I420"));
}

#[test]
fn nv12_at_an_odd_size_plays_through() {
    let clip = data("videos/natural_motion_texture/test_qcif_cabac.264");
    // 176x144 scaled to an odd 175x143, converted to NV12.
    let source = format!(
        "filesrc location={} ! h264parse ! avdec_h264 ! videoscale ! video/x-raw,width=175,height=143 ! videoconvert ! video/x-raw,format=NV12",
        clip.display()
    );
    assert_eq!(run(&source), (30, 350, 286, "NV12".into()));
}
