//! Helpers shared by the element tests: fixture model directories and raw video frames.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use gst::prelude::*;
use gst_check::Harness;
use gst_video::prelude::*;
use sha2::{Digest, Sha256};

pub fn init() {
    use std::sync::Once;
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("GStreamer initialises");
        gstnerve::plugin_register_static().expect("the nerve plugin registers");
    });
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// One manifest entry to write: (model name, file, scale, frames).
pub struct Entry<'a> {
    pub name: &'a str,
    pub source: &'a Path,
    pub scale: u32,
    pub frames: u32,
}

/// A fresh directory holding copies of the given model files and a manifest describing them
/// (with their real sha256). Returns the directory.
pub fn model_dir(entries: &[Entry]) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("nerve-test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut manifest = String::new();
    for e in entries {
        let file = format!("{}.onnx", e.name);
        let bytes = std::fs::read(e.source).expect("fixture readable");
        std::fs::write(dir.join(&file), &bytes).expect("copy fixture");
        let sha: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        manifest.push_str(&format!(
            "[[model]]\nname = \"{}\"\nfile = \"{file}\"\ntask = \"super-resolution\"\nscale = {}\nframes = {}\n\
             sha256 = \"{sha}\"\ninput = {{ name = \"lr\", layout = \"NCHW\", planes = \"Y\" }}\n\
             output = {{ name = \"hr\", layout = \"NCHW\", planes = \"Y\" }}\n\n",
            e.name, e.scale, e.frames
        ));
    }
    std::fs::write(dir.join("manifest.toml"), manifest).expect("write manifest");
    dir
}

pub fn nearest_model() -> PathBuf {
    model_dir(&[Entry { name: "nearest", source: &fixture("nearest_x2.onnx"), scale: 2, frames: 1 }]).join("nearest.onnx")
}

/// A frame whose planes are filled by `luma(x, y)` and constant chroma.
pub fn frame(info: &gst_video::VideoInfo, luma: impl Fn(usize, usize) -> u8, u: u8, v: u8) -> gst::Buffer {
    let buffer = gst::Buffer::with_size(info.size()).expect("buffer");
    let mut frame = gst_video::VideoFrame::from_buffer_writable(buffer, info).expect("map");
    let (w, h) = (info.width() as usize, info.height() as usize);
    let stride = frame.plane_stride()[0] as usize;
    let y = frame.plane_data_mut(0).expect("luma");
    for row in 0..h {
        for col in 0..w {
            y[row * stride + col] = luma(col, row);
        }
    }
    match info.format() {
        gst_video::VideoFormat::I420 => {
            frame.plane_data_mut(1).expect("u").fill(u);
            frame.plane_data_mut(2).expect("v").fill(v);
        }
        gst_video::VideoFormat::Nv12 => {
            for pair in frame.plane_data_mut(1).expect("uv").chunks_mut(2) {
                pair[0] = u;
                if pair.len() > 1 {
                    pair[1] = v;
                }
            }
        }
        other => panic!("no fixture frames for {other:?}"),
    }
    frame.into_buffer()
}

pub fn info(format: gst_video::VideoFormat, w: u32, h: u32) -> gst_video::VideoInfo {
    gst_video::VideoInfo::builder(format, w, h).fps(gst::Fraction::new(30, 1)).build().expect("video info")
}

/// The luma plane of a frame, packed without stride padding.
pub fn luma_of(frame: &gst_video::VideoFrame<gst_video::video_frame::Readable>) -> Vec<u8> {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let stride = frame.plane_stride()[0] as usize;
    let y = frame.plane_data(0).expect("luma");
    (0..h).flat_map(|r| y[r * stride..r * stride + w].to_vec()).collect()
}

/// Starts `nervesr` with the given properties outside any pipeline, expecting the start to fail,
/// and returns the error message it posted.
pub fn start_error(props: &[(&str, &str)]) -> String {
    start_error_of("nervesr", props)
}

/// [`start_error`] for any element of the plugin.
pub fn start_error_of(factory: &str, props: &[(&str, &str)]) -> String {
    init();
    let mut builder = gst::ElementFactory::make(factory);
    for (k, v) in props {
        builder = builder.property_from_str(k, v);
    }
    let element = builder.build().expect("the element exists");
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    assert!(element.set_state(gst::State::Paused).is_err(), "start must fail");
    let msg = bus.pop_filtered(&[gst::MessageType::Error]).expect("an error message is posted");
    let _ = element.set_state(gst::State::Null);
    match msg.view() {
        gst::MessageView::Error(e) => format!("{} ({})", e.error(), e.debug().unwrap_or_default()),
        _ => unreachable!(),
    }
}

/// `nervesr` with the given properties in a harness; fails this test (not the process) when
/// the element does not start.
pub fn harness(props: &[(&str, &str)]) -> Harness {
    init();
    let mut builder = gst::ElementFactory::make("nervesr");
    for (k, v) in props {
        builder = builder.property_from_str(k, v);
    }
    let element = builder.build().expect("nervesr");
    // The harness aborts the whole test process when the element fails to start; check first
    // so that a failure is this test's own, with the element's message.
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    if element.set_state(gst::State::Paused).is_err() {
        let msg = match bus.pop_filtered(&[gst::MessageType::Error]).as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Error(e)) => format!("{} ({:?})", e.error(), e.debug()),
            _ => String::new(),
        };
        panic!("nervesr does not start: {msg}");
    }
    element.set_state(gst::State::Null).expect("stops");
    element.set_bus(None);
    Harness::with_element(&element, Some("sink"), Some("src"))
}

pub fn push_frame(h: &mut Harness, info: &gst_video::VideoInfo, pts_ms: u64, luma: impl Fn(usize, usize) -> u8) -> gst_video::VideoFrame<gst_video::video_frame::Readable> {
    let mut buffer = frame(info, luma, 90, 160);
    {
        let b = buffer.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(pts_ms));
        b.set_duration(gst::ClockTime::from_mseconds(33));
    }
    assert_eq!(h.push(buffer), Ok(gst::FlowSuccess::Ok));
    let out = h.pull().expect("one output buffer per input buffer");
    let caps = h.sinkpad().expect("harness sink pad").current_caps().expect("negotiated caps");
    let out_info = gst_video::VideoInfo::from_caps(&caps).expect("video caps");
    gst_video::VideoFrame::from_buffer_readable(out, &out_info).expect("map output")
}

pub fn stats(h: &Harness) -> gst::Structure {
    h.element().expect("element").property::<gst::Structure>("stats")
}

/// One counter of the element's `stats`.
pub fn stat(h: &Harness, field: &str) -> u64 {
    stats(h).get::<u64>(field).expect("field")
}
