//! Helpers shared by the end-to-end tests in this directory: GStreamer set-up with both nerve
//! plugins registered statically, the real test material (../shared/data, or `NERVE_DATA`) and
//! what to do when it is missing, pipeline runs that collect bus messages, the loopback DASH
//! server (`dash`) and the docs checker (`doccheck`).
//!
//! Missing inputs: a test FAILS when the environment variable `CI` is set, and otherwise passes
//! with a `SKIP:` line on stderr (a developer checkout without ../shared/data).

pub mod dash;
pub mod doccheck;

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

use gst::prelude::*;

/// `gst::init()` and both nerve plugins, registered statically (the same code as the .so files,
/// linked into the test binary; nothing is loaded from GST_PLUGIN_PATH for them).
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("GStreamer initialises");
        gstnerve::plugin_register_static().expect("the nerve plugin registers");
        gstnerveabr::plugin_register_static().expect("the nerveabr plugin registers");
    });
}

/// The repository root (this crate lives in `<root>/tests`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The shared test material: `NERVE_DATA`, else `../shared/data` beside the repository.
pub fn data_dir() -> PathBuf {
    std::env::var_os("NERVE_DATA").map_or_else(|| repo_root().join("../shared/data"), PathBuf::from)
}

/// Whether this runs under CI (the variable `CI` is set, whatever its value).
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Something a test needs is missing: under CI that fails the test; elsewhere it prints `SKIP:`
/// and the caller returns.
pub fn missing(what: &str) {
    assert!(!in_ci(), "{what} is missing (CI is set, so this fails instead of skipping)");
    eprintln!("SKIP: {what} is missing (set CI to make this a failure)");
}

/// A file of the shared data, or `None` after [`missing`] when it is not there.
pub fn input(rel: &str) -> Option<PathBuf> {
    let path = data_dir().join(rel);
    if path.is_file() {
        Some(path)
    } else {
        missing(&format!("test input {} (NERVE_DATA or ../shared/data)", path.display()));
        None
    }
}

/// How a pipeline run ended, with every element message it posted (in order).
#[derive(Debug, Default)]
pub struct Outcome {
    pub eos: bool,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub elements: Vec<(String, gst::Structure)>,
}

impl Outcome {
    /// The element messages named `name`, in order.
    pub fn messages(&self, name: &str) -> Vec<&gst::Structure> {
        self.elements.iter().filter(|(_, s)| s.name() == name).map(|(_, s)| s).collect()
    }

    /// The last message named `name` (e.g. the stats an element posts at EOS).
    pub fn last(&self, name: &str) -> Option<&gst::Structure> {
        self.messages(name).last().copied()
    }

    /// Panics with the errors unless the run reached EOS without any.
    pub fn assert_clean_eos(&self, what: &str) {
        assert!(self.errors.is_empty(), "{what}: error messages: {:#?}", self.errors);
        assert!(self.eos, "{what}: no EOS (warnings: {:#?})", self.warnings);
    }
}

/// Collects bus messages until EOS, an error or `deadline`.
pub fn wait(bus: &gst::Bus, deadline: Duration) -> Outcome {
    let start = Instant::now();
    let mut out = Outcome::default();
    while let Some(left) = deadline.checked_sub(start.elapsed()) {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_nseconds(left.as_nanos() as u64)) else { break };
        if record(&mut out, &msg) {
            break;
        }
    }
    out
}

/// Records one message; true when it ends the run (EOS or error).
pub fn record(out: &mut Outcome, msg: &gst::Message) -> bool {
    let src = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
    match msg.view() {
        gst::MessageView::Eos(_) => {
            out.eos = true;
            true
        }
        gst::MessageView::Error(e) => {
            out.errors.push(format!("{src}: {} ({:?})", e.error(), e.debug()));
            true
        }
        gst::MessageView::Warning(w) => {
            out.warnings.push(format!("{src}: {} ({:?})", w.error(), w.debug()));
            false
        }
        gst::MessageView::Element(e) => {
            if let Some(s) = e.structure() {
                out.elements.push((src, s.to_owned()));
            }
            false
        }
        _ => false,
    }
}

/// A `u64` field of a stats structure; panics naming the field when absent.
pub fn field(s: &gst::Structure, name: &str) -> u64 {
    s.get::<u64>(name).unwrap_or_else(|e| panic!("{} has no u64 field {name}: {e} ({s})", s.name()))
}

/// Counts the buffers crossing `pad` (a probe, so it sees exactly what the pad passes).
pub fn count_buffers(pad: &gst::Pad) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let n = std::sync::Arc::new(AtomicU64::new(0));
    let n2 = n.clone();
    pad.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, move |_, info| {
        let count = match &info.data {
            Some(gst::PadProbeData::Buffer(_)) => 1,
            Some(gst::PadProbeData::BufferList(l)) => l.len() as u64,
            _ => 0,
        };
        n2.fetch_add(count, Ordering::SeqCst);
        gst::PadProbeReturn::Ok
    });
    n
}

/// A frame that reached an appsink: its timestamp in ns (`u64::MAX` when it has none) and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkFrame {
    pub pts: u64,
    pub size: (i32, i32),
}

/// Records every sample `sink` gets, in order (the appsink's callback pulls each at once, so the
/// pipeline never waits on the test).
pub fn record_frames(sink: &gst_app::AppSink) -> std::sync::Arc<std::sync::Mutex<Vec<SinkFrame>>> {
    let frames: std::sync::Arc<std::sync::Mutex<Vec<SinkFrame>>> = std::sync::Arc::default();
    let frames2 = frames.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let pts = sample.buffer().and_then(|b| b.pts()).map_or(u64::MAX, |t| t.nseconds());
                let size = sample.caps().map_or((0, 0), size_of);
                if let Ok(mut f) = frames2.lock() {
                    f.push(SinkFrame { pts, size });
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    frames
}

/// (width, height) of video caps.
pub fn size_of(caps: &gst::CapsRef) -> (i32, i32) {
    let s = caps.structure(0).expect("caps with a structure");
    (s.get::<i32>("width").expect("width"), s.get::<i32>("height").expect("height"))
}

/// Elapsed time of a test, printed at its end (the suite keeps an eye on its wall time).
pub struct Timer(&'static str, Instant);

impl Timer {
    pub fn start(name: &'static str) -> Self {
        Self(name, Instant::now())
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        eprintln!("{}: {:.1} s", self.0, self.1.elapsed().as_secs_f64());
    }
}
