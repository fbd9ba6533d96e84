// SPDX-License-Identifier: MPL-2.0
/**
 * SECTION:element-nerverecover
 *
 * Repairs decoded video damaged by packet loss. One frame comes out per expected timestamp:
 * frames the decoder never produced (timestamp gaps against the frame rate, GAP events) are
 * synthesised, frames flagged corrupted or with damaged blocks (found by a statistical detector:
 * sub-black slices and the damage predicted from them) are repaired from the frame shown before
 * (and from the next frame in `mode=lookahead`), clean frames pass through untouched (the same
 * buffer, bit-exact, no copy). Letterbox and pillarbox bars that the decoder's concealment of a
 * lost slice fills (the fill stays until a keyframe brings the slice back) are taken from the
 * frame shown before, in every plane, while the decoder keeps them filled (at most 5 s;
 * `keep-bars`). A GAP event without a duration (what `rtph264depay` sends for a lost packet)
 * marks the next frame as damaged somewhere, and so does a DISCONT frame that continues the
 * timestamps (data lost upstream); one that goes back or jumps far starts a new sequence. With
 * a recovery model from the manifest, such frames, and every frame while a repair is being
 * carried on, go through it: per 16x16 block it chooses between the decoder's frame, the
 * decoder's frame with the last correction carried on, and the frame shown before, and the block
 * takes that source in every plane; what the detector still sees lost in the result is then
 * repaired as without a model.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 filesrc location=../shared/data/videos/film_archival/chaplin.mp4 ! decodebin ! videoconvert ! \
 *   x264enc tune=zerolatency option-string=slices=4 ! rtph264pay mtu=1200 ! netsim drop-probability=0.05 ! \
 *   rtpjitterbuffer ! rtph264depay ! avdec_h264 ! nerverecover mode=lookahead ! videoconvert ! autovideosink
 * ]|
 *
 * Since: 0.1
 */
// Lock order: `settings`, `state` and `qos` are never held together; settings are copied out at
// the top of each streaming call; no lock is held while pushing or posting.
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_video::prelude::*;

use super::{INPUT_PLANES, Mode};
use super::bars::{Bars, BrokenBars};
use super::blend::{self, Source};
use super::detect::{Chroma, Detector, Picture, Plane};
use super::repair::{PlaneBlocks, PlaneMut, PlaneRef, blend_blocks, copy_lines, fill_vertical};
use super::timeline::Timeline;
use crate::engine::convert::{luma_to_tensor, tensor_to_luma};
use crate::engine::{self, EngineError, Model, Provider, SessionConfig, Task};
use crate::sync::lock;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new("nerverecover", gst::DebugColorFlags::empty(), Some("nerve lost-frame recovery"))
});

const DEFAULT_THREADS: u32 = 1;
const DEFAULT_STATS_INTERVAL: u32 = 30;
/// The `model` value that runs without any model (classical repair only).
const NO_MODEL: &str = "none";
const ERROR_WARN_INTERVAL: u64 = 100;
/// How long a broken bar is kept from the frame shown: longer than streaming's keyframe
/// intervals (2-4 s), after which the decoder would have brought the bar back if it were one.
const BAR_REPAIR_LIMIT: gst::ClockTime = gst::ClockTime::from_seconds(5);
/// The same in frames where the frame rate is unknown.
const BAR_REPAIR_FRAMES: u32 = 150;

#[derive(Debug, Clone)]
struct Settings {
    mode: Mode,
    model: String,
    provider: Provider,
    threads: u32,
    ort_library: Option<String>,
    stats_interval: u32,
    detect: bool,
    keep_bars: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            mode: Mode::LowLatency,
            model: String::new(),
            provider: Provider::Cpu,
            threads: DEFAULT_THREADS,
            ort_library: None,
            stats_interval: DEFAULT_STATS_INTERVAL,
            detect: true,
            keep_bars: true,
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Counters {
    frames_in: u64,
    frames_out: u64,
    clean: u64,
    repaired: u64,
    synthesised: u64,
    corrupted: u64,
    /// Frames with blocks concealed from their own surroundings (no earlier frame usable there).
    spatial: u64,
    /// 16x16 blocks changed, by the model's pass and by the detector's (a block the model changed
    /// and the detector then still found lost counts in both).
    blocks: u64,
    /// Frames with letterbox or pillarbox bars kept from the frame shown.
    bars: u64,
    gaps: u64,
    /// DISCONT frames within the sequence, taken as reported losses.
    disconts: u64,
    /// Frames for the slot just shown again (a decoder repeating a timestamp), dropped.
    repeats: u64,
    model_runs: u64,
    model_errors: u64,
    model_time: Duration,
}

/// Fixed when caps are set.
struct Geometry {
    info: gst_video::VideoInfo,
    planes: Vec<PlaneBlocks>,
}

struct State {
    mode: Mode,
    geometry: Option<Geometry>,
    timeline: Timeline,
    detector: Detector,
    bars: Bars,
    /// The `keep-bars` setting, copied in at each streaming call.
    keep_bars: bool,
    /// The last frame output: the source of every repair.
    shown: Option<gst::Buffer>,
    /// Lookahead: the frame waiting for its successor, and whether a loss was reported before it.
    pending: Option<(gst::Buffer, bool)>,
    /// The last frame as the decoder gave it (kept only with a model: its input).
    decoded: Option<gst::Buffer>,
    /// The frame shown last differs from the decoder's: the model runs on the next frame too,
    /// to carry the correction on.
    carrying: bool,
    segment: gst::FormattedSegment<gst::ClockTime>,
    model: Option<Model>,
    input: Vec<f32>,
    /// The model's last luma (reused allocation).
    model_out: Vec<u8>,
    counters: Counters,
    /// A packet was reported lost (a GAP event without duration) since the last frame arrived:
    /// the next frame is damaged somewhere even where the detector sees nothing.
    loss_since_frame: bool,
}

impl State {
    fn new(mode: Mode, model: Option<Model>) -> Self {
        Self {
            mode,
            geometry: None,
            timeline: Timeline::new(gst::ClockTime::ZERO),
            detector: Detector::default(),
            bars: Bars::default(),
            keep_bars: true,
            shown: None,
            pending: None,
            decoded: None,
            carrying: false,
            segment: gst::FormattedSegment::new(),
            model,
            input: Vec::new(),
            model_out: Vec::new(),
            counters: Counters::default(),
            loss_since_frame: false,
        }
    }

    /// Forgets the stream's past (flush, discontinuity): nothing is repaired from before it.
    fn forget(&mut self) {
        self.timeline.reset();
        self.detector.reset();
        self.bars.reset();
        self.shown = None;
        self.pending = None;
        self.decoded = None;
        self.carrying = false;
        self.loss_since_frame = false;
    }
}

pub struct NerveRecover {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// Downstream's earliest useful running time (QoS): later frames skip the model.
    qos: Mutex<Option<gst::ClockTime>>,
}

/// A readable mapping of `buffer` as `info`, or None (logged by the caller).
fn map<'a>(buffer: &'a gst::BufferRef, info: &gst_video::VideoInfo) -> Option<gst_video::VideoFrameRef<&'a gst::BufferRef>> {
    gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, info).ok()
}

fn luma<'a>(frame: &'a gst_video::VideoFrameRef<&gst::BufferRef>) -> Option<Plane<'a>> {
    Some(Plane { data: frame.plane_data(0).ok()?, stride: frame.plane_stride()[0] as usize })
}

/// Luma and chroma as the detector reads them (I420: two chroma planes; NV12: one interleaved).
fn picture<'a>(frame: &'a gst_video::VideoFrameRef<&gst::BufferRef>) -> Option<Picture<'a>> {
    let y = luma(frame)?;
    let stride = frame.plane_stride().get(1).copied().unwrap_or(0) as usize;
    let chroma = match frame.format() {
        gst_video::VideoFormat::Nv12 => frame.plane_data(1).ok().map(|uv| Chroma { u: uv, v: uv.get(1..).unwrap_or(&[]), stride, step: 2 }),
        _ => match (frame.plane_data(1), frame.plane_data(2)) {
            (Ok(u), Ok(v)) => Some(Chroma { u, v, stride, step: 1 }),
            _ => None,
        },
    };
    Some(Picture { y, chroma })
}

fn plane_ref<'a>(frame: &'a gst_video::VideoFrameRef<&gst::BufferRef>, p: usize) -> Option<PlaneRef<'a>> {
    Some(PlaneRef { data: frame.plane_data(p as u32).ok()?, stride: frame.plane_stride()[p] as usize })
}

#[glib::object_subclass]
impl ObjectSubclass for NerveRecover {
    const NAME: &'static str = "GstNerveRecover";
    type Type = super::NerveRecover;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        // ok: the templates exist (pad_templates below), these cannot fail.
        let sink_templ = klass.pad_template("sink").expect("sink template"); // ok: static template
        let src_templ = klass.pad_template("src").expect("src template"); // ok: static template
        let sinkpad = gst::Pad::builder_from_template(&sink_templ)
            .chain_function(|pad, parent, buffer| {
                NerveRecover::catch_panic_pad_function(parent, || Err(gst::FlowError::Error), |imp| imp.chain(pad, buffer))
            })
            .event_function(|pad, parent, event| {
                NerveRecover::catch_panic_pad_function(parent, || false, |imp| imp.sink_event(pad, event))
            })
            .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
            .build();
        let srcpad = gst::Pad::builder_from_template(&src_templ)
            .event_function(|pad, parent, event| {
                NerveRecover::catch_panic_pad_function(parent, || false, |imp| imp.src_event(pad, event))
            })
            .query_function(|pad, parent, query| {
                NerveRecover::catch_panic_pad_function(parent, || false, |imp| imp.src_query(pad, query))
            })
            .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
            .build();
        Self {
            sinkpad,
            srcpad,
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(None),
            qos: Mutex::new(None),
        }
    }
}

impl ObjectImpl for NerveRecover {
    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        // ok: fresh pads with unique names on a new element; adding cannot fail.
        obj.add_pad(&self.sinkpad).expect("add sink pad"); // ok: see above
        obj.add_pad(&self.srcpad).expect("add src pad"); // ok: see above
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecEnum::builder_with_default("mode", Mode::LowLatency)
                    .nick("Mode")
                    .blurb(
                        "low-latency repairs from past frames only (no added latency); lookahead also uses the next \
                         frame and holds each frame back by one frame duration (reported in the latency query)",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb(
                        "A recovery model from the manifest (models/manifest.toml, or NERVE_MODEL_PATH), a path to an .onnx \
                         file with a manifest.toml beside it, empty for the shipped default of the mode (classical repair \
                         when none is shipped), or \"none\" for classical repair only",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("provider", Provider::Cpu)
                    .nick("Execution provider")
                    .blurb("Where ONNX Runtime runs the model; an unavailable provider warns and falls back to the CPU")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("threads")
                    .nick("Threads")
                    .blurb("ONNX Runtime intra-op threads (0 = one per physical core); the model only runs on damaged frames")
                    .maximum(256)
                    .default_value(DEFAULT_THREADS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("ort-library")
                    .nick("ONNX Runtime library")
                    .blurb(
                        "Path to libonnxruntime.so; empty searches ORT_DYLIB_PATH, the project's set-up, the onnxruntime \
                         Python wheel and the system paths",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("detect")
                    .nick("Detect damage")
                    .blurb(
                        "Look for damaged blocks in frames that are not flagged corrupted (false: only missing and \
                         corrupted-flagged frames are repaired)",
                    )
                    .default_value(true)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("keep-bars")
                    .nick("Keep bars")
                    .blurb(
                        "Keep letterbox and pillarbox bars black where the decoder's concealment of a lost slice fills \
                         them (they stay filled until a keyframe brings the slice back): the filled lines come from the \
                         frame shown, while the decoder keeps them filled, for at most 5 s",
                    )
                    .default_value(true)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("stats-interval")
                    .nick("Statistics interval")
                    .blurb("Post a nerverecover-stats element message every N input frames (0 = only at EOS)")
                    .default_value(DEFAULT_STATS_INTERVAL)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "Counters: frames-in, frames-out, frames-clean, frames-repaired, frames-synthesised, \
                         frames-corrupted, frames-spatial, blocks-repaired, frames-bars-kept, gap-events, discont-frames, frames-repeated, model-runs, model-errors, \
                         mean-model-ms, mode, model",
                    )
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        // ok: GObject checked each value's type against its pspec before calling us.
        match pspec.name() {
            "mode" => s.mode = value.get().unwrap_or_default(),
            "model" => s.model = value.get::<Option<String>>().ok().flatten().unwrap_or_default(),
            "provider" => s.provider = value.get().unwrap_or_default(),
            "threads" => s.threads = value.get().unwrap_or(DEFAULT_THREADS),
            "ort-library" => s.ort_library = value.get::<Option<String>>().ok().flatten().filter(|p| !p.is_empty()),
            "detect" => s.detect = value.get().unwrap_or(true),
            "keep-bars" => s.keep_bars = value.get().unwrap_or(true),
            "stats-interval" => s.stats_interval = value.get().unwrap_or(DEFAULT_STATS_INTERVAL),
            other => gst::warning!(CAT, imp = self, "no property {other}"),
        }
        gst::info!(CAT, imp = self, "{} set to {:?}", pspec.name(), value);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = lock(&self.settings);
        match pspec.name() {
            "mode" => s.mode.to_value(),
            "model" => s.model.to_value(),
            "provider" => s.provider.to_value(),
            "threads" => s.threads.to_value(),
            "ort-library" => s.ort_library.to_value(),
            "detect" => s.detect.to_value(),
            "keep-bars" => s.keep_bars.to_value(),
            "stats-interval" => s.stats_interval.to_value(),
            "stats" => {
                drop(s);
                self.stats().to_value()
            }
            _ => glib::Value::from_type(pspec.value_type()),
        }
    }
}

impl GstObjectImpl for NerveRecover {}

impl ElementImpl for NerveRecover {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Nerve lost-frame recovery",
                "Filter/Effect/Video",
                "Outputs one frame per expected timestamp: synthesises frames lost in transmission, repairs damaged \
                 blocks from neighbouring frames (optionally with a neural model), passes clean frames through untouched",
                "nerve developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst_video::VideoCapsBuilder::new()
                .format_list([gst_video::VideoFormat::I420, gst_video::VideoFormat::Nv12])
                .build();
            vec![
                gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, &caps).unwrap(), // ok: static template
                gst::PadTemplate::new("sink", gst::PadDirection::Sink, gst::PadPresence::Always, &caps).unwrap(), // ok: static template
            ]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(&self, transition: gst::StateChange) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::ReadyToPaused {
            let mode = lock(&self.settings).mode;
            match self.load_model() {
                Ok(model) => *lock(&self.state) = Some(State::new(mode, model)),
                Err(e) => {
                    self.post_error_message(e);
                    return Err(gst::StateChangeError);
                }
            }
            *lock(&self.qos) = None;
        }
        let ret = self.parent_change_state(transition)?;
        if transition == gst::StateChange::PausedToReady {
            *lock(&self.state) = None;
            *lock(&self.qos) = None;
        }
        Ok(ret)
    }
}

/// What to output, in order, once the state lock is released.
type Outputs = Vec<gst::Buffer>;

impl NerveRecover {
    fn stats(&self) -> gst::Structure {
        let state = lock(&self.state);
        let (c, mode, model) = match state.as_ref() {
            Some(s) => (
                s.counters.clone(),
                s.mode,
                s.model.as_ref().map(|m| m.spec.entry.name.clone()).unwrap_or_else(|| NO_MODEL.into()),
            ),
            None => (Counters::default(), lock(&self.settings).mode, String::new()),
        };
        let mean_ms = if c.model_runs > 0 { c.model_time.as_secs_f64() * 1000.0 / c.model_runs as f64 } else { 0.0 };
        gst::Structure::builder("nerverecover-stats")
            .field("frames-in", c.frames_in)
            .field("frames-out", c.frames_out)
            .field("frames-clean", c.clean)
            .field("frames-repaired", c.repaired)
            .field("frames-synthesised", c.synthesised)
            .field("frames-corrupted", c.corrupted)
            .field("frames-spatial", c.spatial)
            .field("blocks-repaired", c.blocks)
            .field("frames-bars-kept", c.bars)
            .field("gap-events", c.gaps)
            .field("discont-frames", c.disconts)
            .field("frames-repeated", c.repeats)
            .field("model-runs", c.model_runs)
            .field("model-errors", c.model_errors)
            .field("mean-model-ms", mean_ms)
            .field("mode", if mode == Mode::Lookahead { "lookahead" } else { "low-latency" })
            .field("model", model)
            .build()
    }

    fn post_stats(&self) {
        let msg = gst::message::Element::builder(self.stats()).src(&*self.obj()).build();
        let _ = self.obj().post_message(msg);
    }

    fn load_model(&self) -> Result<Option<Model>, gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        let inputs = INPUT_PLANES as u32;
        let to_error = |e: EngineError| match &e {
            EngineError::ModelMissing(_) => gst::error_msg!(gst::ResourceError::NotFound, ("{}", e)),
            EngineError::Library(_) => gst::error_msg!(gst::LibraryError::Init, ("{}", e)),
            _ => gst::error_msg!(gst::LibraryError::Settings, ("{}", e)),
        };
        let resolved = if settings.model == NO_MODEL {
            None
        } else if settings.model.is_empty() {
            engine::manifest::find_default(|m| m.task == Task::Recovery && m.frames == inputs).map_err(to_error)?
        } else {
            Some(engine::manifest::resolve(&settings.model, Task::Recovery, 1).map_err(to_error)?)
        };
        let Some(resolved) = resolved else {
            gst::info!(CAT, imp = self, "no recovery model: classical repair only");
            return Ok(None);
        };
        let entry = &resolved.entry;
        if entry.task != Task::Recovery || entry.scale != 1 || entry.frames != inputs {
            return Err(gst::error_msg!(
                gst::LibraryError::Settings,
                (
                    "model '{}' is a {:?} model (scale {}, {} input planes); nerverecover ({:?}) needs a recovery model \
                     with scale 1 and {inputs} input planes",
                    entry.name,
                    entry.task,
                    entry.scale,
                    entry.frames,
                    settings.mode
                )
            ));
        }
        let config = SessionConfig {
            provider: settings.provider,
            threads: settings.threads,
            library: settings.ort_library.as_ref().map(PathBuf::from),
            // whole frames: banding was measured for the SR models only
            bands: 1,
        };
        let model = Model::load(resolved, &config).map_err(to_error)?;
        for w in &model.warnings {
            gst::element_imp_warning!(self, gst::LibraryError::Settings, ("{}", w));
        }
        gst::info!(CAT, imp = self, "loaded recovery model '{}' from {}", model.spec.entry.name, model.spec.path.display());
        Ok(Some(model))
    }

    fn is_late(&self, segment: &gst::FormattedSegment<gst::ClockTime>, pts: Option<gst::ClockTime>) -> bool {
        let Some(earliest) = *lock(&self.qos) else { return false };
        segment.to_running_time(pts).is_some_and(|running| running <= earliest)
    }

    fn set_caps(&self, caps: &gst::CapsRef) -> bool {
        let Ok(info) = gst_video::VideoInfo::from_caps(caps) else {
            gst::error!(CAT, imp = self, "cannot parse caps {caps}");
            return false;
        };
        let finfo = info.format_info();
        let planes = (0..info.n_planes() as usize)
            .map(|p| {
                let comp = if info.format() == gst_video::VideoFormat::Nv12 && p == 1 { 1 } else { p as u8 };
                let pixel_bytes = if info.format() == gst_video::VideoFormat::Nv12 && p == 1 { 2 } else { 1 };
                let (w, h) = (info.comp_width(comp) as usize, info.comp_height(comp) as usize);
                PlaneBlocks::new(w * pixel_bytes, h, finfo.w_sub()[comp as usize], finfo.h_sub()[comp as usize], pixel_bytes)
            })
            .collect();
        let frame = if info.fps().numer() > 0 {
            gst::ClockTime::SECOND
                .mul_div_floor(info.fps().denom() as u64, info.fps().numer() as u64)
                .unwrap_or(gst::ClockTime::ZERO)
        } else {
            gst::ClockTime::ZERO
        };
        let mut guard = lock(&self.state);
        let Some(state) = guard.as_mut() else { return false };
        // Decoders send new caps mid-stream for fields that change no pixel (interlace-mode
        // flipping on a damaged stream): the pictures held stay usable. A new size or format
        // makes them useless for repair. The timeline survives both while the frame rate holds,
        // so a frame for the slot just shown is still a repeat and a gap is still a gap.
        let same_picture = state.geometry.as_ref().is_some_and(|g| {
            g.info.format() == info.format() && g.info.width() == info.width() && g.info.height() == info.height()
        });
        let timeline = (state.timeline.frame() == frame).then(|| state.timeline.clone());
        if !same_picture {
            state.forget();
            state.detector = Detector::new(info.width() as usize, info.height() as usize);
            state.bars = Bars::new(info.width() as usize, info.height() as usize);
        }
        state.timeline = timeline.unwrap_or_else(|| Timeline::new(frame));
        gst::info!(CAT, imp = self, "{}x{} {:?}, one frame every {frame}", info.width(), info.height(), info.format());
        state.geometry = Some(Geometry { info, planes });
        true
    }

    fn chain(&self, _pad: &gst::Pad, mut buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (detect, keep_bars, interval) = {
            let s = lock(&self.settings);
            (s.detect, s.keep_bars, s.stats_interval as u64)
        };
        let mut guard = lock(&self.state);
        let Some(state) = guard.as_mut() else { return Err(gst::FlowError::Flushing) };
        state.keep_bars = keep_bars;
        if state.geometry.is_none() {
            drop(guard);
            gst::element_imp_error!(self, gst::CoreError::Negotiation, ["no caps before the first frame"]);
            return Err(gst::FlowError::NotNegotiated);
        }
        let late = self.is_late(&state.segment, buffer.pts());
        let mut outputs = Outputs::new();
        let discont = buffer.flags().contains(gst::BufferFlags::DISCONT);
        // One frame per expected timestamp: a second frame for the slot just shown (a decoder
        // that output two for one timestamp, as a damaged stream made avdec_h264 do) is dropped,
        // DISCONT or not. A DISCONT on it still says data was lost, so the next frame is taken
        // as after a loss; it does not start a new sequence one slot back (fuzzing found the
        // repeat passing when it came with DISCONT).
        if buffer.pts().is_some_and(|pts| state.timeline.repeats(pts)) {
            state.counters.frames_in += 1;
            state.counters.repeats += 1;
            if discont {
                state.counters.disconts += 1;
                state.loss_since_frame = true;
            }
            gst::debug!(CAT, imp = self, "a second frame for {:?}: dropped", buffer.pts());
            return Ok(gst::FlowSuccess::Ok);
        }
        if discont && state.counters.frames_in > 0 {
            if buffer.pts().is_some_and(|pts| state.timeline.continues(pts)) {
                // Data was lost upstream (what a depayloader or a live source marks): the frame
                // is reported damaged, and the slots before it are filled as for any gap.
                gst::debug!(CAT, imp = self, "DISCONT within the sequence at {:?}: a reported loss", buffer.pts());
                state.counters.disconts += 1;
                state.loss_since_frame = true;
            } else {
                // A new sequence (timestamps back or far ahead): nothing from before it may be
                // used to repair what follows.
                if let Some((pending, loss)) = state.pending.take() {
                    outputs.push(self.process(state, pending, None, detect, late, loss));
                }
                state.forget();
            }
        }
        state.counters.frames_in += 1;
        if buffer.pts().is_none() && !state.timeline.frame().is_zero() {
            // A frame without a timestamp (a decoder recovering from a lost IDR frame) takes the
            // next expected slot: only the metadata is written, the memory stays shared.
            // The very first frame starts at the segment's start.
            if let Some(next) = state.timeline.next_slot().or_else(|| state.segment.start()) {
                let b = buffer.make_mut();
                b.set_pts(next);
                b.set_duration(state.timeline.frame());
            }
        }
        let missing = buffer.pts().map(|pts| state.timeline.arrive(pts)).unwrap_or_default();
        let loss = std::mem::take(&mut state.loss_since_frame);
        match state.mode {
            Mode::LowLatency => {
                for ts in missing {
                    outputs.extend(self.hold(state, ts));
                }
                outputs.push(self.process(state, buffer, None, detect, late, loss));
            }
            Mode::Lookahead => {
                if let Some((pending, pending_loss)) = state.pending.take() {
                    outputs.push(self.process(state, pending, Some(&buffer), detect, late, pending_loss));
                    let n = missing.len() as u32;
                    for (k, ts) in missing.into_iter().enumerate() {
                        outputs.extend(self.interpolate(state, &buffer, ts, (k as u32 + 1) * 256 / (n + 1)));
                    }
                } else {
                    for ts in missing {
                        outputs.extend(self.hold(state, ts));
                    }
                }
                state.pending = Some((buffer, loss));
            }
        }
        state.counters.frames_out += outputs.len() as u64;
        let frames_in = state.counters.frames_in;
        drop(guard);
        if interval > 0 && frames_in % interval == 0 {
            self.post_stats();
        }
        for b in outputs {
            self.srcpad.push(b)?;
        }
        Ok(gst::FlowSuccess::Ok)
    }

    /// A missing frame with only the past to go on: the frame shown before, again (the same
    /// memory, only the timestamps differ).
    fn hold(&self, state: &mut State, pts: gst::ClockTime) -> Option<gst::Buffer> {
        let shown = state.shown.as_ref()?;
        let mut out = shown.copy();
        {
            let b = out.make_mut();
            b.set_pts(pts);
            b.set_dts(gst::ClockTime::NONE);
            b.set_duration(state.timeline.frame());
            b.unset_flags(gst::BufferFlags::DISCONT | gst::BufferFlags::CORRUPTED);
        }
        state.counters.synthesised += 1;
        gst::log!(CAT, imp = self, "synthesised missing frame at {pts} (held)");
        Some(out)
    }

    /// A missing frame between the frame shown and `next`: blended towards `next` by `weight`
    /// (1/256 steps), except in blocks where `next` itself looks damaged.
    fn interpolate(&self, state: &mut State, next: &gst::Buffer, pts: gst::ClockTime, weight: u32) -> Option<gst::Buffer> {
        let geo = state.geometry.as_ref()?;
        let Some(shown) = state.shown.clone() else { return self.hold(state, pts) };
        let mut out = shown.copy_deep().ok()?;
        {
            let b = out.make_mut();
            b.set_pts(pts);
            b.set_dts(gst::ClockTime::NONE);
            b.set_duration(state.timeline.frame());
            b.unset_flags(gst::BufferFlags::DISCONT | gst::BufferFlags::CORRUPTED);
            let (Some(prev), Some(nxt)) = (map(&shown, &geo.info), map(next, &geo.info)) else { return self.hold(state, pts) };
            let usable: Vec<bool> = match picture(&nxt) {
                Some(p) => {
                    // Bars the next frame breaks are not blended in either.
                    let broken = if state.keep_bars { state.bars.breaks(p.y) } else { BrokenBars::none(0, 0) };
                    (0..state.detector.cols() * state.detector.rows())
                        .map(|i| !state.detector.has_lost(p, i) && !broken.touches(state.detector.rect(i)))
                        .collect()
                }
                None => return self.hold(state, pts),
            };
            let Ok(mut dst) = gst_video::VideoFrameRef::from_buffer_ref_writable(b, &geo.info) else { return None };
            for (p, g) in geo.planes.iter().enumerate() {
                let stride = dst.plane_stride()[p] as usize;
                let (Some(a), Some(n)) = (plane_ref(&prev, p), plane_ref(&nxt, p)) else { continue };
                let Ok(data) = dst.plane_data_mut(p as u32) else { continue };
                blend_blocks(&mut PlaneMut { data, stride }, a, Some(n), weight, *g, &usable, state.detector.cols());
            }
        }
        state.counters.synthesised += 1;
        gst::log!(CAT, imp = self, "synthesised missing frame at {pts} (interpolated, weight {weight}/256)");
        Some(out)
    }

    /// A frame that arrived: passed through if clean, repaired otherwise. Becomes the frame shown.
    fn process(&self, state: &mut State, buffer: gst::Buffer, next: Option<&gst::Buffer>, detect: bool, late: bool, loss: bool) -> gst::Buffer {
        let modelled = if state.model.is_some() && !late && (loss || state.carrying) {
            self.model_repair(state, &buffer, loss)
        } else {
            None
        };
        state.carrying = matches!(modelled, Some(Some(_)));
        let out = match modelled {
            // The model chooses among frames that may all hold a lost slice's black or green
            // (a frame-threaded decoder leaves them): what the detector still sees lost in the
            // model's frame is repaired classically.
            Some(Some(out)) => self.repaired(state, &out, next, detect).unwrap_or(out),
            // The model kept the decoder's frame everywhere, or did not run: the detector and
            // the corrupted flag still get their say.
            _ => self.repaired(state, &buffer, next, detect).unwrap_or_else(|| buffer.clone()),
        };
        if out.as_ptr() != buffer.as_ptr() {
            state.counters.repaired += 1;
        }
        let out = if state.keep_bars {
            self.keep_bars(state, &buffer, out, loss)
        } else {
            state.bars.reset();
            out
        };
        if state.model.is_some() {
            state.decoded = Some(buffer);
        }
        state.shown = Some(out.clone());
        out
    }

    /// Takes the bars the decoder broke (after a reported loss or without a cut, then for as long
    /// as it keeps them broken) from the frame shown before, in every plane; then learns the bars
    /// of what goes out.
    fn keep_bars(&self, state: &mut State, decoded: &gst::Buffer, out: gst::Buffer, loss: bool) -> gst::Buffer {
        let Some(geo) = state.geometry.as_ref() else { return out };
        let limit = if state.timeline.frame().is_zero() {
            BAR_REPAIR_FRAMES
        } else {
            (BAR_REPAIR_LIMIT.nseconds() / state.timeline.frame().nseconds().max(1)).clamp(1, u32::MAX as u64) as u32
        };
        let Some(shown) = state.shown.clone() else {
            if let Some(y) = map(&out, &geo.info).as_ref().and_then(luma) {
                state.bars.learn(y);
            }
            return out;
        };
        let broken = match (map(decoded, &geo.info), map(&shown, &geo.info)) {
            (Some(d), Some(s)) => match (luma(&d), luma(&s)) {
                (Some(dy), Some(sy)) => state.bars.broken(dy, sy, loss, limit),
                _ => return out,
            },
            _ => return out,
        };
        let out = match broken.any().then(|| self.with_bars(geo, &out, &shown, &broken)).flatten() {
            Some(fixed) => {
                state.counters.bars += 1;
                gst::log!(CAT, imp = self, "kept {} bar lines at {:?}", broken.lines(), decoded.pts());
                fixed
            }
            None => out,
        };
        if let Some(y) = map(&out, &geo.info).as_ref().and_then(luma) {
            state.bars.learn(y);
        }
        out
    }

    fn with_bars(&self, geo: &Geometry, out: &gst::Buffer, shown: &gst::Buffer, broken: &BrokenBars) -> Option<gst::Buffer> {
        let src = map(shown, &geo.info)?;
        let mut fixed = out.copy_deep().ok()?;
        {
            let b = fixed.make_mut();
            b.unset_flags(gst::BufferFlags::CORRUPTED);
            let mut dst = gst_video::VideoFrameRef::from_buffer_ref_writable(b, &geo.info).ok()?;
            let (w, h) = (geo.info.width() as usize, geo.info.height() as usize);
            for (p, g) in geo.planes.iter().enumerate() {
                let stride = dst.plane_stride()[p] as usize;
                let Some(s) = plane_ref(&src, p) else { continue };
                let Ok(data) = dst.plane_data_mut(p as u32) else { continue };
                copy_lines(&mut PlaneMut { data, stride }, s, *g, w, h, &broken.rows, &broken.cols);
            }
        }
        Some(fixed)
    }

    fn repaired(&self, state: &mut State, buffer: &gst::Buffer, next: Option<&gst::Buffer>, detect: bool) -> Option<gst::Buffer> {
        let geo = state.geometry.as_ref()?;
        let corrupted = buffer.flags().contains(gst::BufferFlags::CORRUPTED);
        if corrupted {
            state.counters.corrupted += 1;
        }
        let Some(cur) = map(buffer, &geo.info) else {
            gst::warning!(CAT, imp = self, "cannot map a frame; passed through");
            return None;
        };
        let shown = state.shown.clone();
        let shown_frame = shown.as_ref().and_then(|b| map(b, &geo.info));
        let mut mask = if detect {
            state.detector.detect(picture(&cur)?, shown_frame.as_ref().and_then(picture)).to_vec()
        } else {
            vec![false; state.detector.cols() * state.detector.rows()]
        };
        if corrupted && !mask.iter().any(|&m| m) {
            // The decoder says the frame is damaged but not where: all of it is suspect.
            mask.fill(true);
        }
        let blocks = mask.iter().filter(|&&m| m).count() as u64;
        if blocks == 0 {
            state.counters.clean += 1;
            return None;
        }
        let next_frame = next.and_then(|b| map(b, &geo.info));
        let cols = state.detector.cols();
        let usable = |f: Option<&gst_video::VideoFrameRef<&gst::BufferRef>>, i: usize| {
            f.and_then(picture).is_some_and(|p| !state.detector.has_lost(p, i))
        };
        // Per damaged block, the best source available: both neighbours (lookahead), the frame
        // shown before, or, where neither is intact there, the block's own intact surroundings.
        let mut both = vec![false; mask.len()];
        let mut only_prev = vec![false; mask.len()];
        let mut spatial = vec![false; mask.len()];
        for (i, _) in mask.iter().enumerate().filter(|(_, m)| **m) {
            match (usable(shown_frame.as_ref(), i), usable(next_frame.as_ref(), i)) {
                (true, true) => both[i] = true,
                (true, false) => only_prev[i] = true,
                _ => spatial[i] = true,
            }
        }
        if spatial.iter().any(|&s| s) {
            state.counters.spatial += 1;
        }
        let mut out = buffer.copy_deep().ok()?;
        {
            let b = out.make_mut();
            b.unset_flags(gst::BufferFlags::CORRUPTED);
            let mut dst = gst_video::VideoFrameRef::from_buffer_ref_writable(b, &geo.info).ok()?;
            for (p, g) in geo.planes.iter().enumerate() {
                let stride = dst.plane_stride()[p] as usize;
                let prev = shown_frame.as_ref().and_then(|f| plane_ref(f, p));
                let n = next_frame.as_ref().and_then(|f| plane_ref(f, p));
                let Ok(data) = dst.plane_data_mut(p as u32) else { continue };
                let mut plane = PlaneMut { data, stride };
                if let Some(a) = prev {
                    blend_blocks(&mut plane, a, None, 0, *g, &only_prev, cols);
                    blend_blocks(&mut plane, a, n, 128, *g, &both, cols);
                }
                fill_vertical(&mut plane, *g, &spatial, cols, 128);
            }
        }
        state.counters.blocks += blocks;
        gst::log!(CAT, imp = self, "repaired {blocks} blocks at {:?}", buffer.pts());
        Some(out)
    }

    /// The recovery model's turn (a loss was reported before this frame, or a correction is being
    /// carried): `None` when it could not run (nothing shown yet, a model error), `Some(None)`
    /// when it kept the decoder's frame everywhere, else the frame to show.
    fn model_repair(&self, state: &mut State, buffer: &gst::Buffer, loss: bool) -> Option<Option<gst::Buffer>> {
        let geo = state.geometry.as_ref()?;
        let (shown, decoded) = (state.shown.clone()?, state.decoded.clone()?);
        let (Some(cur), Some(s_prev), Some(d_prev)) = (map(buffer, &geo.info), map(&shown, &geo.info), map(&decoded, &geo.info))
        else {
            return None;
        };
        let (w, h) = (geo.info.width() as usize, geo.info.height() as usize);
        let area = w * h;
        let model = state.model.as_mut()?;
        let input = &mut state.input;
        input.resize(INPUT_PLANES * area, 0.0);
        {
            let mut planes = input.chunks_exact_mut(area);
            for frame in [&cur, &d_prev, &s_prev] {
                let (Some(dst), Some(y)) = (planes.next(), luma(frame)) else { return None };
                luma_to_tensor(y.data, y.stride, w, h, dst);
            }
            planes.next()?.fill(if loss { 1.0 } else { 0.0 });
        }
        let mut chosen = std::mem::take(&mut state.model_out);
        chosen.resize(area, 0);
        match model.run(input, w, h, |out| tensor_to_luma(out, w, h, &mut chosen, w)) {
            Ok(took) => {
                state.counters.model_runs += 1;
                state.counters.model_time += took;
            }
            Err(e) => {
                state.counters.model_errors += 1;
                if state.counters.model_errors % ERROR_WARN_INTERVAL == 1 {
                    gst::element_imp_warning!(
                        self,
                        gst::StreamError::Failed,
                        ("recovery model failed ({} so far), repaired classically: {}", state.counters.model_errors, e)
                    );
                }
                state.model_out = chosen;
                return None;
            }
        }
        let (d, dp, sp) = (plane_ref(&cur, 0)?, plane_ref(&d_prev, 0)?, plane_ref(&s_prev, 0)?);
        let sources = blend::choose(&chosen, w, d, dp, sp, &state.detector);
        let of = |which: Source| sources.iter().map(|&s| s == which).collect::<Vec<bool>>();
        let (carried, held) = (of(Source::Carried), of(Source::Shown));
        let changed: Vec<bool> = carried.iter().zip(&held).map(|(a, b)| *a || *b).collect();
        let blocks = changed.iter().filter(|&&c| c).count() as u64;
        if blocks == 0 {
            state.model_out = chosen;
            return Some(None);
        }
        let mut out = buffer.copy_deep().ok()?;
        {
            let b = out.make_mut();
            b.unset_flags(gst::BufferFlags::CORRUPTED);
            let mut dst = gst_video::VideoFrameRef::from_buffer_ref_writable(b, &geo.info).ok()?;
            let cols = state.detector.cols();
            for (p, g) in geo.planes.iter().enumerate() {
                let stride = dst.plane_stride()[p] as usize;
                let (Some(dp), Some(sp)) = (plane_ref(&d_prev, p), plane_ref(&s_prev, p)) else { continue };
                let Ok(data) = dst.plane_data_mut(p as u32) else { continue };
                let mut plane = PlaneMut { data, stride };
                if p == 0 {
                    blend::write_luma(&mut plane, &chosen, w, &changed, &state.detector);
                } else {
                    blend::carry_blocks(&mut plane, dp, sp, *g, &carried, cols);
                    blend_blocks(&mut plane, sp, None, 0, *g, &held, cols);
                }
            }
        }
        state.model_out = chosen;
        state.counters.blocks += blocks;
        gst::log!(CAT, imp = self, "model repaired {blocks} blocks at {:?} (loss reported: {loss})", buffer.pts());
        Some(Some(out))
    }

    /// Flushes the lookahead frame (EOS, GAP) and returns what to push.
    fn drain(&self) -> Outputs {
        let (detect, keep_bars) = {
            let s = lock(&self.settings);
            (s.detect, s.keep_bars)
        };
        let mut guard = lock(&self.state);
        let Some(state) = guard.as_mut() else { return Outputs::new() };
        state.keep_bars = keep_bars;
        let Some((pending, loss)) = state.pending.take() else { return Outputs::new() };
        let out = self.process(state, pending, None, detect, false, loss);
        state.counters.frames_out += 1;
        vec![out]
    }

    fn push_all(&self, outputs: Outputs) -> bool {
        outputs.into_iter().all(|b| self.srcpad.push(b).is_ok())
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        gst::log!(CAT, obj = pad, "event {event:?}");
        match event.view() {
            gst::EventView::Caps(c) => {
                // The frame held back (lookahead) belongs to the old caps: out with it first.
                let outputs = self.drain();
                self.push_all(outputs);
                if !self.set_caps(c.caps()) {
                    return false;
                }
            }
            gst::EventView::Segment(s) => {
                if let Some(seg) = s.segment().downcast_ref::<gst::ClockTime>()
                    && let Some(state) = lock(&self.state).as_mut()
                {
                    state.segment = seg.clone();
                }
            }
            gst::EventView::FlushStop(_) => {
                if let Some(state) = lock(&self.state).as_mut() {
                    state.forget();
                }
                *lock(&self.qos) = None;
            }
            gst::EventView::StreamStart(_) => {
                if let Some(state) = lock(&self.state).as_mut() {
                    state.forget();
                }
            }
            gst::EventView::Gap(g) => {
                let (ts, duration) = g.get();
                let Some(duration) = duration.filter(|d| !d.is_zero()) else {
                    // A point in time, not a span: what the RTP depayloaders send (through the
                    // decoder) for each lost packet that `rtpjitterbuffer do-lost=true` reports,
                    // just before the frame that packet belonged to. That frame still comes,
                    // damaged: nothing is missing yet.
                    if let Some(state) = lock(&self.state).as_mut() {
                        state.counters.gaps += 1;
                        state.loss_since_frame = true;
                    }
                    return gst::Pad::event_default(pad, Some(&*self.obj()), event);
                };
                let mut outputs = self.drain();
                let mut guard = lock(&self.state);
                if let Some(state) = guard.as_mut() {
                    state.counters.gaps += 1;
                    state.timeline.start_at(ts);
                    let slots = state.timeline.missing_until(ts + duration);
                    let before = outputs.len();
                    for slot in slots {
                        outputs.extend(self.hold(state, slot));
                    }
                    state.counters.frames_out += (outputs.len() - before) as u64;
                }
                drop(guard);
                if !outputs.is_empty() {
                    // The gap is filled with frames: downstream gets those instead.
                    return self.push_all(outputs);
                }
            }
            gst::EventView::Eos(_) => {
                let outputs = self.drain();
                self.push_all(outputs);
                self.post_stats();
            }
            _ => {}
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    fn src_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        if let gst::EventView::Qos(qos) = event.view() {
            let (_type, _proportion, diff, timestamp) = qos.get();
            // Like GstVideoDecoder: when late, assume the next frames will be at least as late.
            let earliest = timestamp.map(|ts| {
                if diff > 0 {
                    ts + gst::ClockTime::from_nseconds(2 * diff as u64)
                } else {
                    ts.saturating_sub(gst::ClockTime::from_nseconds(diff.unsigned_abs()))
                }
            });
            *lock(&self.qos) = earliest;
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            if !self.sinkpad.peer_query(q.query_mut()) {
                return false;
            }
            let (live, min, max) = q.result();
            let extra = lock(&self.state)
                .as_ref()
                .filter(|s| s.mode == Mode::Lookahead)
                .map(|s| s.timeline.frame())
                .unwrap_or(gst::ClockTime::ZERO);
            q.set(live, min + extra, max.map(|m| m + extra));
            gst::debug!(CAT, imp = self, "latency: upstream {min} + {extra} (live {live})");
            return true;
        }
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }
}

