// SPDX-License-Identifier: MPL-2.0
/**
 * SECTION:element-nervesr
 *
 * Neural super-resolution of decoded video: frames come out `scale` times larger. Luma goes
 * through an ONNX model (a residual on a Catmull-Rom upscale), chroma is upscaled classically;
 * I420 and NV12 in and out. Late frames (QoS) are upscaled classically instead of being dropped.
 *
 * The model can change while playing: set `model`, or point `model-location` at a directory
 * whose manifest.toml the element follows (the registry materialises aliases there). The new
 * model loads in the background and takes over between two frames; one that fails to load or
 * fails its sha256 check is refused with a warning and the running one stays.
 *
 * With `scale=0` the element fits every input size to the size negotiated downstream (a
 * capsfilter or the sink): a DASH/HLS rung switch changes the input, never the output. For each
 * input size it runs the model of the largest factor k (2, 3 or 4) with k x input <= output, and a
 * classical Catmull-Rom resample covers what remains (540p -> 720p is classical alone; 270p -> 720p
 * is the x2 model, then 540p -> 720p): it never upscales further than the output and throws
 * pixels away. An input already at the output size passes through (and may harvest).
 *
 * `nerveabr` switches the model on and off per fragment with a `nerveabr-enhance` custom
 * downstream event (field `enhance`, boolean) sent right before the fragment's first frame; every
 * change of how frames are made is posted as a `nervesr-switch` element message (`pts`,
 * `enhanced`, `model-scale`, `reason`, `in-width`, `in-height`, `out-width`, `out-height`).
 *
 * At `scale=1` (a rung at or above display size) frames pass through untouched, and with
 * `harvest-location` set the element stores a bounded number of detailed luma patches per minute
 * in the on-device episodic memory, as training data for the low rungs. With `shadow-model` set,
 * a candidate model is judged there beside the champion: sampled patches of the real frame are
 * degraded as a low rung is, both models run on them on a worker thread (never delaying a frame;
 * a busy worker drops samples) and their PSNR-Y against the real patch goes into the stats.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 filesrc location=in.mp4 ! decodebin ! videoconvert ! nervesr scale=2 ! videoconvert ! autovideosink
 * ]|
 *
 * Since: 0.1
 */
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_base::prelude::*;
use gst_video::prelude::*;
use gst_video::subclass::prelude::*;

use crate::engine::convert::{luma_to_tensor, tensor_to_luma_summarised};
use crate::engine::guard::OutputSummary;
use crate::engine::resample::{PlaneGeometry, Resampler};
use super::harvest::{HarvestConfig, Harvester};
use super::shadow::{Shadow, ShadowConfig};
use super::swap::{LoadRequest, Loaded, Swapper};
use crate::engine::{self, EngineError, Model, Provider, SessionConfig};
use crate::sync::lock;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new("nervesr", gst::DebugColorFlags::empty(), Some("nerve neural super-resolution"))
});

const DEFAULT_SCALE: u32 = 2;
const DEFAULT_THREADS: u32 = 0;
/// `bands=0`: one band per inference thread on the CPU (see `SessionConfig::bands`).
const DEFAULT_BANDS: u32 = 0;
const MAX_BANDS: u32 = 16;
const DEFAULT_STATS_INTERVAL: u32 = 30;
const DEFAULT_WATCH_INTERVAL_MS: u32 = 1000;
const DEFAULT_HARVEST_BUDGET: u32 = 30;
const DEFAULT_HARVEST_PATCH: u32 = 128;
const DEFAULT_SHADOW_BUDGET: u32 = 30;
const DEFAULT_SHADOW_SCALE: u32 = 2;
const DEFAULT_SHADOW_CRF: u32 = 23;
/// `processing-latency=-1`: declare the model's time per frame, measured when the caps are set.
const LATENCY_MEASURED: i32 = -1;
const DEFAULT_PROCESSING_LATENCY: i32 = LATENCY_MEASURED;
/// The most a stream may be held back for the model, in milliseconds.
const MAX_PROCESSING_LATENCY_MS: i32 = 10_000;
/// Side of the shadow's high-resolution patches (before rounding to the scale's 4:2:0 grid).
const SHADOW_PATCH: u32 = 128;
/// `scale=0`: fit each input to the negotiated output size.
const SCALE_FIT: u32 = 0;
/// The custom downstream event by which nerveabr switches enhancement per fragment.
pub const ENHANCE_EVENT: &str = "nerveabr-enhance";
/// Warn about failing inference at most this often (in frames), not on every frame.
const ERROR_WARN_INTERVAL: u64 = 100;

#[derive(Debug, Clone)]
struct Settings {
    model: String,
    scale: u32,
    provider: Provider,
    threads: u32,
    bands: u32,
    ort_library: Option<String>,
    stats_interval: u32,
    enhance: bool,
    model_location: Option<String>,
    watch_interval: u32,
    harvest_location: Option<String>,
    harvest_budget: u32,
    harvest_patch: u32,
    shadow_model: Option<String>,
    shadow_budget: u32,
    shadow_scale: u32,
    shadow_crf: u32,
    processing_latency: i32,
}

impl Settings {
    fn load_request(&self) -> LoadRequest {
        LoadRequest {
            spec: self.model.clone(),
            location: self.model_location.as_ref().map(PathBuf::from),
            scale: self.scale,
            rows: 0,
            session: SessionConfig {
                provider: self.provider,
                threads: self.threads,
                library: self.ort_library.as_ref().map(PathBuf::from),
                bands: self.bands,
            },
        }
    }

    /// The load request for a model of factor `k` on inputs of `rows` rows: `model` when it names
    /// a model of that factor (fit mode; at a fixed scale it always does), else the manifest's
    /// default for that factor and size.
    fn request_for(&self, k: u32, rows: u32) -> LoadRequest {
        let mut request = self.load_request();
        request.scale = k;
        request.rows = rows;
        if !request.spec.is_empty() && request.resolve().is_err() {
            request.spec.clear();
        }
        request
    }

    /// Shadow mode's two models at the low rung's scale, one ONNX Runtime thread each: the
    /// champion is what `model` / `model-location` name, the candidate `shadow-model` (a
    /// directory stands for its manifest's default, as a registry alias is materialised).
    fn shadow_config(&self) -> Option<ShadowConfig> {
        let candidate = self.shadow_model.as_ref()?;
        let mut champion = self.load_request();
        champion.scale = self.shadow_scale;
        champion.session.threads = 1;
        champion.session.bands = 1;
        let dir = PathBuf::from(candidate);
        let (spec, location) = if dir.is_dir() { (String::new(), Some(dir)) } else { (candidate.clone(), None) };
        let candidate = LoadRequest { spec, location, ..champion.clone() };
        let grid = 2 * self.shadow_scale;
        Some(ShadowConfig {
            candidate,
            champion,
            budget: self.shadow_budget,
            patch: SHADOW_PATCH / grid * grid,
            crf: self.shadow_crf,
        })
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: String::new(),
            scale: DEFAULT_SCALE,
            provider: Provider::Cpu,
            threads: DEFAULT_THREADS,
            bands: DEFAULT_BANDS,
            ort_library: None,
            stats_interval: DEFAULT_STATS_INTERVAL,
            enhance: true,
            model_location: None,
            watch_interval: DEFAULT_WATCH_INTERVAL_MS,
            harvest_location: None,
            harvest_budget: DEFAULT_HARVEST_BUDGET,
            harvest_patch: DEFAULT_HARVEST_PATCH,
            shadow_model: None,
            shadow_budget: DEFAULT_SHADOW_BUDGET,
            shadow_scale: DEFAULT_SHADOW_SCALE,
            shadow_crf: DEFAULT_SHADOW_CRF,
            processing_latency: DEFAULT_PROCESSING_LATENCY,
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Counters {
    enhanced: u64,
    classical: u64,
    errors: u64,
    inference: Duration,
    /// True while the last frame went the classical way because of QoS.
    falling_back: bool,
    swaps: u64,
    swaps_refused: u64,
    /// Frames whose model output was not a picture (NaN/Inf, black, blown) and went classical.
    output_faults: u64,
}

/// Per-format plane handling, fixed when caps are set.
struct Geometry {
    in_w: usize,
    in_h: usize,
    out_w: usize,
    out_h: usize,
    /// Luma classical upscale (the fallback path).
    luma: Resampler,
    /// Chroma: one resampler used for both I420 planes, or for NV12's interleaved UV plane.
    chroma: Resampler,
    chroma_planes: Vec<u32>,
    /// The model's factor for this input (1: no model, classical only).
    k: u32,
    /// Fit mode, when k x input falls short of the output: the model's luma lands here and is
    /// resampled to the output.
    mid: Option<(Vec<u8>, Resampler)>,
}

#[derive(Default)]
struct State {
    model: Option<Model>,
    geometry: Option<Geometry>,
    /// Previous LR luma tensors, oldest first, for models that take more than one frame.
    history: VecDeque<Vec<f32>>,
    input: Vec<f32>,
    counters: Counters,
    /// Set while harvesting (scale 1 with a harvest-location).
    harvester: Option<Harvester>,
    /// Set while a candidate is judged in shadow (scale 1 with a shadow-model).
    shadow: Option<Shadow>,
    /// Fit mode: loaded models of the factors not in use now (a rung switch back is instant).
    spare: Vec<Model>,
    /// What nerveabr said for the current fragment (None: no nerveabr, enhance).
    abr_enhance: Option<bool>,
    /// How the last frame was made (enhanced, model factor, reason), to post switches.
    made: Option<(bool, u32, &'static str)>,
    /// Input and output size of the current caps.
    sizes: (u32, u32, u32, u32),
    /// sha256 of the last model whose faulty output was reported (once per model).
    fault_reported: Option<String>,
}

/// QoS as last reported by downstream; written from the source pad's event thread.
#[derive(Default)]
struct Qos {
    earliest: Option<gst::ClockTime>,
    /// The model's time per frame, measured when the caps were set (`processing-latency=-1`).
    measured: Option<gst::ClockTime>,
}

#[derive(Default)]
pub struct NerveSr {
    settings: Mutex<Settings>,
    state: Mutex<State>,
    qos: Mutex<Qos>,
    swapper: Mutex<Swapper>,
    /// sha256 of the model in use, for the model-location watcher to compare against.
    active_sha: Arc<Mutex<Option<String>>>,
}

#[glib::object_subclass]
impl ObjectSubclass for NerveSr {
    const NAME: &'static str = "GstNerveSr";
    type Type = super::NerveSr;
    type ParentType = gst_video::VideoFilter;
}

impl ObjectImpl for NerveSr {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb(
                        "A model name from the manifest (models/manifest.toml, or NERVE_MODEL_PATH), a path to an \
                         .onnx file with a manifest.toml beside it, or empty for the shipped default model of `scale` \
                         (for the input's size: a manifest may name a faster default for inputs of many rows, \
                         default_from_rows, chosen when the caps arrive). Changing it while playing loads the new \
                         model in the background and swaps it in between two frames; a model that fails to load is \
                         refused with a warning and the running one stays",
                    )
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("model-location")
                    .nick("Model location")
                    .blurb(
                        "A directory with a manifest.toml to take models from and to follow: when its manifest changes \
                         to name other model bytes (e.g. a registry alias moved), the new model is swapped in live. \
                         `model` then names an entry of that manifest (empty: its default for `scale`)",
                    )
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("watch-interval")
                    .nick("Watch interval")
                    .blurb("How often model-location's manifest is checked, in milliseconds")
                    .minimum(10)
                    .maximum(3_600_000)
                    .default_value(DEFAULT_WATCH_INTERVAL_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("harvest-location")
                    .nick("Harvest location")
                    .blurb(
                        "Episodic memory directory to store training patches in while a rung at display size plays \
                         (scale=1); empty: harvest nothing. Patches never leave the device",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("harvest-budget")
                    .nick("Harvest budget")
                    .blurb("Patches harvested per minute of video at most (disk per minute = budget x patch^2 bytes)")
                    .minimum(1)
                    .maximum(600)
                    .default_value(DEFAULT_HARVEST_BUDGET)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("harvest-patch")
                    .nick("Harvest patch size")
                    .blurb("Side of the square luma patches harvested, in pixels")
                    .minimum(32)
                    .maximum(512)
                    .default_value(DEFAULT_HARVEST_PATCH)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("shadow-model")
                    .nick("Shadow model")
                    .blurb(
                        "A candidate model judged beside the champion (`model`) while a rung at display size plays \
                         (scale=1): sampled patches of the real frame are degraded as a low rung is (Catmull-Rom downscale \
                         by shadow-scale, x264 at shadow-crf), both models run on them off the streaming thread and are \
                         scored against the real patch (shadow-* fields of the stats). A name, an .onnx path, or a \
                         directory whose manifest.toml's default is taken; empty: no shadow",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("shadow-budget")
                    .nick("Shadow budget")
                    .blurb("Shadow samples per minute of video at most (a busy worker drops samples, never frames)")
                    .minimum(1)
                    .maximum(600)
                    .default_value(DEFAULT_SHADOW_BUDGET)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("shadow-scale")
                    .nick("Shadow scale")
                    .blurb("Scale of the low rung the shadowed models serve (both must be models of this scale)")
                    .minimum(2)
                    .maximum(4)
                    .default_value(DEFAULT_SHADOW_SCALE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("shadow-crf")
                    .nick("Shadow CRF")
                    .blurb("x264 quality of the simulated low rung (0: downscale only, no codec)")
                    .maximum(51)
                    .default_value(DEFAULT_SHADOW_CRF)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("scale")
                    .nick("Scale")
                    .blurb(
                        "Upscale factor: output frames are `scale` times wider and higher; 1 passes frames through \
                         untouched (a rung at display size: the time to harvest); 0 fits every input to the output \
                         size negotiated downstream (the model of the largest factor k with k x input <= output, then a \
                         classical resample; pass-through at the output size), so rung switches never change the output",
                    )
                    .minimum(0)
                    .maximum(4)
                    .default_value(DEFAULT_SCALE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("provider", Provider::Cpu)
                    .nick("Execution provider")
                    .blurb("Where ONNX Runtime runs the model; an unavailable provider warns and falls back to the CPU")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("threads")
                    .nick("Threads")
                    .blurb("ONNX Runtime intra-op threads (0 = one per physical core)")
                    .maximum(256)
                    .default_value(DEFAULT_THREADS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("bands")
                    .nick("Bands")
                    .blurb(
                        "Horizontal bands each frame is split into, run at once, each by its own ONNX Runtime session with \
                         the rows the model reads beyond the band (the output is the whole frame's, checked when the model \
                         loads), the threads shared between them; 0 = automatic: on the CPU provider one band per inference \
                         thread (threads, or every core when threads is 0; at most 4) for inputs of 480 rows or more, used for \
                         a frame size when its first frames ran faster in bands than whole (each way tried on them); one \
                         band on the other providers; 1 = whole frames. Frames under four margins per band run whole",
                    )
                    .maximum(MAX_BANDS)
                    .default_value(DEFAULT_BANDS)
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
                glib::ParamSpecInt::builder("processing-latency")
                    .nick("Processing latency")
                    .blurb(
                        "Time each frame spends in the model, in milliseconds, added to the latency the element \
                         reports (LATENCY query) so that in a live pipeline a clock-synchronised sink waits for it \
                         instead of finding every frame late and sending QoS upstream; -1 measures it (a warm-up run of \
                         the model when the caps are set, announced with a LATENCY message); 0 reports none. Ignored \
                         where no model runs (scale=1, pass-through)",
                    )
                    .minimum(LATENCY_MEASURED)
                    .maximum(MAX_PROCESSING_LATENCY_MS)
                    .default_value(DEFAULT_PROCESSING_LATENCY)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("stats-interval")
                    .nick("Statistics interval")
                    .blurb("Post a nervesr-stats element message every N frames (0 = only at EOS)")
                    .default_value(DEFAULT_STATS_INTERVAL)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("enhance")
                    .nick("Enhance")
                    .blurb(
                        "Run the model; false upscales every frame classically (switchable while playing, e.g. by \
                         nerveabr to save power)",
                    )
                    .default_value(true)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "Counters: frames-enhanced, frames-classical, inference-errors, mean-inference-ms, \
                         falling-back, model, model-sha256, provider, model-swaps, swaps-refused, harvested-patches, \
                         harvested-bytes, model-scale, abr-enhance; with a shadow-model: shadow-model, shadow-model-sha256, shadow-champion, \
                         shadow-samples, shadow-dropped, shadow-champion-psnr, shadow-candidate-psnr, shadow-gain-db, \
                         shadow-champion-ms-per-mpx, shadow-candidate-ms-per-mpx, shadow-codec, shadow-error",
                    )
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        let text = || value.get::<Option<String>>().ok().flatten().filter(|p| !p.is_empty());
        // ok: GObject checked each value's type against its pspec before calling us.
        match pspec.name() {
            "model" | "model-location" => {
                if pspec.name() == "model" {
                    s.model = text().unwrap_or_default();
                } else {
                    s.model_location = text();
                }
                let settings = s.clone();
                drop(s);
                self.model_settings_changed(&settings);
                return;
            }
            "watch-interval" => s.watch_interval = value.get().unwrap_or(DEFAULT_WATCH_INTERVAL_MS),
            "harvest-location" => s.harvest_location = text(),
            "harvest-budget" => s.harvest_budget = value.get().unwrap_or(DEFAULT_HARVEST_BUDGET),
            "harvest-patch" => s.harvest_patch = value.get().unwrap_or(DEFAULT_HARVEST_PATCH),
            "shadow-model" => s.shadow_model = text(),
            "shadow-budget" => s.shadow_budget = value.get().unwrap_or(DEFAULT_SHADOW_BUDGET),
            "shadow-scale" => s.shadow_scale = value.get().unwrap_or(DEFAULT_SHADOW_SCALE),
            "shadow-crf" => s.shadow_crf = value.get().unwrap_or(DEFAULT_SHADOW_CRF),
            "scale" => s.scale = value.get().unwrap_or(DEFAULT_SCALE),
            "provider" => s.provider = value.get().unwrap_or_default(),
            "threads" => s.threads = value.get().unwrap_or(DEFAULT_THREADS),
            "bands" => s.bands = value.get().unwrap_or(DEFAULT_BANDS),
            "ort-library" => s.ort_library = value.get::<Option<String>>().ok().flatten().filter(|p| !p.is_empty()),
            "stats-interval" => s.stats_interval = value.get().unwrap_or(DEFAULT_STATS_INTERVAL),
            "processing-latency" => s.processing_latency = value.get().unwrap_or(DEFAULT_PROCESSING_LATENCY),
            "enhance" => s.enhance = value.get().unwrap_or(true),
            other => gst::warning!(CAT, imp = self, "no property {other}"),
        }
        gst::debug!(CAT, imp = self, "{} set to {:?}", pspec.name(), value);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = lock(&self.settings);
        match pspec.name() {
            "model" => s.model.to_value(),
            "model-location" => s.model_location.to_value(),
            "watch-interval" => s.watch_interval.to_value(),
            "harvest-location" => s.harvest_location.to_value(),
            "harvest-budget" => s.harvest_budget.to_value(),
            "harvest-patch" => s.harvest_patch.to_value(),
            "shadow-model" => s.shadow_model.to_value(),
            "shadow-budget" => s.shadow_budget.to_value(),
            "shadow-scale" => s.shadow_scale.to_value(),
            "shadow-crf" => s.shadow_crf.to_value(),
            "scale" => s.scale.to_value(),
            "provider" => s.provider.to_value(),
            "threads" => s.threads.to_value(),
            "bands" => s.bands.to_value(),
            "ort-library" => s.ort_library.to_value(),
            "stats-interval" => s.stats_interval.to_value(),
            "processing-latency" => s.processing_latency.to_value(),
            "enhance" => s.enhance.to_value(),
            "stats" => {
                drop(s);
                self.stats().to_value()
            }
            _ => glib::Value::from_type(pspec.value_type()),
        }
    }
}

impl GstObjectImpl for NerveSr {}

impl ElementImpl for NerveSr {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Nerve neural super-resolution",
                "Filter/Effect/Converter/Video/Scaler",
                "Upscales decoded video x2/x3/x4 with a real-time neural network (ONNX Runtime) on luma and a \
                 classical upscale on chroma; falls back to the classical upscale when the pipeline runs late",
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
            // ok: fixed names and directions; these cannot fail.
            vec![
                gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, &caps).unwrap(), // ok: static template
                gst::PadTemplate::new("sink", gst::PadDirection::Sink, gst::PadPresence::Always, &caps).unwrap(), // ok: static template
            ]
        });
        TEMPLATES.as_ref()
    }
}

/// Multiplies (towards the source pad) or divides (towards the sink pad) a width or height.
fn scale_dimension(value: &glib::SendValue, scale: i32, up: bool) -> Option<glib::SendValue> {
    if scale == SCALE_FIT as i32 {
        // Fit mode: any size on the other side (the model and the resample make it fit).
        return Some(gst::IntRange::new(1, i32::MAX).to_send_value());
    }
    if let Ok(v) = value.get::<i32>() {
        return if up {
            v.checked_mul(scale).map(|v| v.to_send_value())
        } else if v % scale == 0 {
            Some((v / scale).to_send_value())
        } else {
            None
        };
    }
    if let Ok(r) = value.get::<gst::IntRange<i32>>() {
        let (min, max) = if up {
            (r.min().saturating_mul(scale), r.max().saturating_mul(scale))
        } else {
            ((r.min() + scale - 1) / scale, r.max() / scale)
        };
        let min = min.max(1);
        return (min <= max).then(|| if min == max { min.to_send_value() } else { gst::IntRange::new(min, max).to_send_value() });
    }
    None
}

impl NerveSr {
    fn scale(&self) -> u32 {
        lock(&self.settings).scale
    }

    fn stats(&self) -> gst::Structure {
        let state = lock(&self.state);
        let c = &state.counters;
        let mean_ms = if c.enhanced > 0 { c.inference.as_secs_f64() * 1000.0 / c.enhanced as f64 } else { 0.0 };
        let (model, sha, provider) = state
            .model
            .as_ref()
            .map(|m| (m.spec.entry.name.clone(), m.spec.entry.sha256.clone(), m.provider.nick()))
            .unwrap_or_default();
        let harvested = state.harvester.as_ref().map(|h| h.counters).unwrap_or_default();
        let shadow = state.shadow.as_ref().map(Shadow::stats);
        let mut stats = gst::Structure::builder("nervesr-stats")
            .field("frames-enhanced", c.enhanced)
            .field("frames-classical", c.classical)
            .field("inference-errors", c.errors)
            .field("mean-inference-ms", mean_ms)
            .field("falling-back", c.falling_back)
            .field("model", model)
            .field("model-sha256", sha)
            .field("provider", provider)
            .field("model-swaps", c.swaps)
            .field("swaps-refused", c.swaps_refused)
            .field("output-faults", c.output_faults)
            .field("harvested-patches", harvested.patches)
            .field("harvested-bytes", harvested.bytes)
            .field("bands", state.model.as_ref().map_or(0, |m| m.bands_in_use() as u32))
            .field("model-scale", state.geometry.as_ref().map_or(0, |g| if state.model.is_some() { g.k } else { 0 }))
            .field("abr-enhance", state.abr_enhance.unwrap_or(true));
        if let Some(sh) = shadow {
            stats = stats
                .field("shadow-model", sh.candidate.as_str())
                .field("shadow-model-sha256", sh.candidate_sha256.as_str())
                .field("shadow-champion", sh.champion.as_str())
                .field("shadow-samples", sh.samples)
                .field("shadow-dropped", sh.dropped)
                .field("shadow-champion-psnr", sh.champion_psnr())
                .field("shadow-candidate-psnr", sh.candidate_psnr())
                .field("shadow-gain-db", sh.gain_db())
                .field("shadow-champion-ms-per-mpx", sh.champion_ms_per_mpx())
                .field("shadow-candidate-ms-per-mpx", sh.candidate_ms_per_mpx())
                .field("shadow-codec", sh.codec.as_str())
                .field("shadow-error", sh.error.unwrap_or_default());
        }
        stats.build()
    }

    /// At EOS: lets the shadow worker score what it was given, so the last stats are complete.
    /// (EOS waits for at most a few queued samples; no frame does.)
    fn settle_shadow(&self) {
        let shadow = lock(&self.state).shadow.take();
        if let Some(mut shadow) = shadow {
            shadow.finish();
            lock(&self.state).shadow = Some(shadow);
        }
    }

    fn post_stats(&self) {
        let msg = gst::message::Element::builder(self.stats()).src(&*self.obj()).build();
        let _ = self.obj().post_message(msg);
    }

    fn load_model(&self) -> Result<Model, gst::ErrorMessage> {
        let request = lock(&self.settings).load_request();
        let model = request.load().map_err(|e| match &e {
            EngineError::ModelMissing(_) => gst::error_msg!(gst::ResourceError::NotFound, ("{}", e)),
            EngineError::Library(_) => gst::error_msg!(gst::LibraryError::Init, ("{}", e)),
            _ => gst::error_msg!(gst::LibraryError::Settings, ("{}", e)),
        })?;
        self.loaded(&model);
        Ok(model)
    }

    /// Logs a model taking over and posts the warnings its loading produced.
    fn loaded(&self, model: &Model) {
        for w in &model.warnings {
            gst::element_imp_warning!(self, gst::LibraryError::Settings, ("{}", w));
        }
        *lock(&self.active_sha) = Some(model.spec.entry.sha256.clone());
        gst::info!(
            CAT,
            imp = self,
            "model '{}' (x{}, {} frame(s)) from {} on {}, {} session(s) for bands, {} rows of margin (ONNX Runtime: {})",
            model.spec.entry.name,
            model.scale(),
            model.frames(),
            model.spec.path.display(),
            model.provider.nick(),
            model.bands(),
            model.halo(),
            engine::library::loaded_path().map(|p| p.display().to_string()).unwrap_or_default()
        );
    }

    /// `model` or `model-location` changed: while running (a model is in use), load the new
    /// one in the background and follow the new location; before start, nothing to do.
    fn model_settings_changed(&self, settings: &Settings) {
        let (running, (k, rows)) = {
            let state = lock(&self.state);
            (state.model.is_some(), state.geometry.as_ref().map_or((0, 0), |g| (g.k, g.in_h as u32)))
        };
        if !running {
            return;
        }
        let request =
            if settings.scale == SCALE_FIT { settings.request_for(k, rows) } else { LoadRequest { rows, ..settings.load_request() } };
        let mut swapper = lock(&self.swapper);
        swapper.request(request.clone());
        self.follow(&mut swapper, settings, request);
    }

    /// Starts (or stops) watching `model-location`.
    fn follow(&self, swapper: &mut Swapper, settings: &Settings, request: LoadRequest) {
        match &settings.model_location {
            Some(dir) => {
                let active = self.active_sha.clone();
                let interval = Duration::from_millis(settings.watch_interval as u64);
                swapper.watch(PathBuf::from(dir), interval, request, move || lock(&active).clone());
            }
            None => swapper.unwatch(),
        }
    }

    /// Between two frames: puts a freshly loaded model in place, or reports why it was refused.
    fn take_swap(&self, state: &mut State) {
        let Some(loaded) = lock(&self.swapper).take() else { return };
        match loaded {
            Loaded::Ready(model) if state.geometry.as_ref().is_some_and(|g| g.k as usize != model.scale()) => {
                // Fit mode: loaded for a factor this input no longer uses (a rung switch since).
                state.spare.retain(|m| m.scale() != model.scale());
                state.spare.push(*model);
            }
            Loaded::Ready(model) => {
                let from = state.model.as_ref().map(|m| m.spec.entry.name.clone()).unwrap_or_default();
                self.loaded(&model);
                // History is luma of the current geometry: still valid, only its length may differ.
                while state.history.len() > model.frames().saturating_sub(1) {
                    state.history.pop_front();
                }
                gst::info!(CAT, imp = self, "swapped model '{from}' for '{}'", model.spec.entry.name);
                state.model = Some(*model);
                state.counters.swaps += 1;
            }
            Loaded::Refused(why) => {
                state.counters.swaps_refused += 1;
                gst::element_imp_warning!(self, gst::LibraryError::Settings, ("new model refused, keeping the current one: {}", why));
            }
        }
    }

    /// Runs the model twice on a grey frame of the current geometry and returns the second run's
    /// time: the first pays for ONNX Runtime's allocations, which no later frame does. Leaves the
    /// history alone (a temporal model sees only real frames).
    fn warm_up(state: &mut State) -> Option<gst::ClockTime> {
        let State { model, geometry, input, .. } = state;
        let (model, geo) = (model.as_mut()?, geometry.as_ref()?);
        if geo.k < 2 {
            return None;
        }
        let (w, h) = (geo.in_w, geo.in_h);
        input.clear();
        input.resize(model.frames() * w * h, 0.5);
        let mut took = None;
        for _ in 0..2 {
            let started = std::time::Instant::now();
            model.run(input, w, h, |_| {}).ok()?;
            took = Some(started.elapsed());
        }
        took.map(|t| gst::ClockTime::from_nseconds(t.as_nanos() as u64))
    }

    /// Keeps the measured model time and, when it changed, posts a LATENCY message so that the
    /// pipeline queries latency again and sinks give frames that much more time.
    fn measured_latency(&self, measured: Option<gst::ClockTime>) {
        let changed = {
            let mut qos = lock(&self.qos);
            std::mem::replace(&mut qos.measured, measured) != measured
        };
        gst::info!(CAT, imp = self, "processing latency (model, measured): {measured:?}");
        if changed {
            let _ = self.obj().post_message(gst::message::Latency::builder().src(&*self.obj()).build());
        }
    }

    /// What this element adds to the pipeline's latency: the model's time per frame, while a
    /// model runs (`processing-latency`: fixed, or measured when the caps were set).
    fn processing_latency(&self) -> gst::ClockTime {
        if self.obj().is_passthrough() {
            return gst::ClockTime::ZERO;
        }
        match lock(&self.settings).processing_latency {
            LATENCY_MEASURED => lock(&self.qos).measured.unwrap_or(gst::ClockTime::ZERO),
            ms => gst::ClockTime::from_mseconds(ms.max(0) as u64),
        }
    }

    /// Whether the frame at `pts` is already late according to downstream QoS.
    fn is_late(&self, pts: Option<gst::ClockTime>) -> bool {
        if !self.obj().is_qos() {
            return false;
        }
        let Some(earliest) = lock(&self.qos).earliest else { return false };
        let segment = self.obj().segment();
        let Some(segment) = segment.downcast_ref::<gst::format::Time>() else { return false };
        match segment.to_running_time(pts) {
            Some(running) => running <= earliest,
            None => false,
        }
    }

    /// Records how this frame was made; returns it when it differs from the previous frame's.
    fn made(&self, state: &mut State, enhanced: bool, k: u32, reason: &'static str) -> Option<(bool, u32, &'static str)> {
        let now = (enhanced, k, reason);
        (state.made.replace(now) != Some(now)).then_some(now)
    }

    /// `nervesr-switch`: from the frame at `pts` on, frames are made another way.
    fn post_switch(&self, pts: Option<gst::ClockTime>, (enhanced, k, reason): (bool, u32, &'static str), sizes: (u32, u32, u32, u32)) {
        gst::debug!(CAT, imp = self, "from {pts:?}: {} (x{k}, {reason})", if enhanced { "model" } else { "classical" });
        let s = gst::Structure::builder("nervesr-switch")
            .field("pts", pts.map_or(u64::MAX, |t| t.nseconds()))
            .field("enhanced", enhanced)
            .field("model-scale", k)
            .field("reason", reason)
            .field("in-width", sizes.0)
            .field("in-height", sizes.1)
            .field("out-width", sizes.2)
            .field("out-height", sizes.3)
            .build();
        let _ = self.obj().post_message(gst::message::Element::builder(s).src(&*self.obj()).build());
    }

    /// Puts the model for factor `k` and inputs of `rows` rows in place at a caps change: in fit
    /// mode the factor's model, at a fixed scale the default for the input's size (the manifest
    /// may name a faster default for large inputs, `default_from_rows`). A model put aside stays
    /// loaded, so a rung switch back is instant; one not loaded yet is loaded now (once per model
    /// and stream). Without a model for `k` the frames are made classically, with a warning.
    /// Called without the state lock held: loading posts messages, and a bus handler may read
    /// `stats`.
    fn place_model(&self, settings: &Settings, k: u32, rows: u32) {
        let request = settings.request_for(k, rows);
        // Resolved once: the bytes wanted, then loaded from the same entry (the manifest may
        // change meanwhile). When the manifest cannot say, any model of the factor will do.
        let resolved = request.resolve();
        let wanted = resolved.as_ref().ok().map(|r| r.entry.sha256.clone());
        let fits = |m: &Model| m.scale() == k as usize && wanted.as_ref().is_none_or(|sha| m.spec.entry.sha256 == *sha);
        {
            let mut guard = lock(&self.state);
            let state = &mut *guard;
            if state.model.as_ref().is_some_and(fits) {
                return;
            }
            if let Some(m) = state.model.take() {
                state.spare.retain(|s| s.spec.entry.sha256 != m.spec.entry.sha256);
                state.spare.push(m);
            }
            if k < 2 {
                return;
            }
            if let Some(name) = self.use_spare(state, fits) {
                gst::info!(CAT, imp = self, "model '{name}' for x{k} at {rows} rows (kept loaded)");
                return self.follow_location(settings, request);
            }
        }
        match resolved.and_then(|r| Model::load(r, &request.session)) {
            Ok(model) => {
                self.loaded(&model);
                lock(&self.state).model = Some(model);
            }
            Err(e) => {
                // A model of the factor already loaded beats the classical upscale.
                let kept = self.use_spare(&mut lock(&self.state), |m| m.scale() == k as usize);
                match kept {
                    Some(name) => gst::element_imp_warning!(self, gst::LibraryError::Settings, ("keeping model '{}' for x{}: {}", name, k, e)),
                    None => {
                        gst::element_imp_warning!(self, gst::LibraryError::Settings, ("no x{} model, upscaling classically: {}", k, e));
                        return;
                    }
                }
            }
        }
        self.follow_location(settings, request);
    }

    /// Puts the first spare model `pick` takes in use; its name, or None when none is taken.
    fn use_spare(&self, state: &mut State, pick: impl Fn(&Model) -> bool) -> Option<String> {
        let i = state.spare.iter().position(pick)?;
        let model = state.spare.swap_remove(i);
        *lock(&self.active_sha) = Some(model.spec.entry.sha256.clone());
        let name = model.spec.entry.name.clone();
        state.model = Some(model);
        Some(name)
    }

    /// Follows `model-location` (when set) with `request`.
    fn follow_location(&self, settings: &Settings, request: LoadRequest) {
        if settings.model_location.is_some() {
            let mut swapper = lock(&self.swapper);
            self.follow(&mut swapper, settings, request);
        }
    }

    fn reset_history(&self) {
        let mut state = lock(&self.state);
        state.history.clear();
    }
}

impl BaseTransformImpl for NerveSr {
    // Both: frames are transformed out of place, and at scale 1 (pass-through) the in-place hook
    // sees each frame read-only, for harvesting.
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::Both;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    // At scale 1 the element is in pass-through and harvests from the frames it lets by.
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        *lock(&self.qos) = Qos::default();
        if settings.scale <= 1 {
            // Pass-through at display size: no model, maybe harvesting. Fit mode loads its models
            // when it knows the sizes (set_info) and harvests while an input plays at the output size.
            let harvester = match &settings.harvest_location {
                Some(dir) => Some(
                    Harvester::new(HarvestConfig {
                        location: PathBuf::from(dir),
                        budget: settings.harvest_budget,
                        patch: settings.harvest_patch,
                    })
                    .map_err(|e| gst::error_msg!(gst::ResourceError::OpenWrite, ("{}", e)))?,
                ),
                None => None,
            };
            let shadow = match settings.shadow_config() {
                Some(config) => {
                    gst::info!(CAT, imp = self, "shadow: '{}' beside the champion", config.candidate.spec);
                    Some(Shadow::start(config).map_err(|e| gst::error_msg!(gst::CoreError::Thread, ("{}", e)))?)
                }
                None => None,
            };
            *lock(&self.state) = State { harvester, shadow, ..State::default() };
            return Ok(());
        }
        let model = self.load_model()?;
        *lock(&self.state) = State { model: Some(model), ..State::default() };
        if settings.model_location.is_some() {
            let mut swapper = lock(&self.swapper);
            self.follow(&mut swapper, &settings, settings.load_request());
        }
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        lock(&self.swapper).reset();
        let (harvester, shadow) = {
            let mut state = lock(&self.state);
            (state.harvester.take(), state.shadow.take())
        };
        *lock(&self.state) = State::default();
        drop(shadow);
        *lock(&self.active_sha) = None;
        *lock(&self.qos) = Qos::default();
        if let Some(mut h) = harvester {
            // Every patch handed to the writer is on disk once this returns.
            if let Err(e) = h.finish() {
                gst::element_imp_warning!(self, gst::ResourceError::Write, ("{}", e));
            }
        }
        Ok(())
    }

    fn transform_caps(
        &self,
        direction: gst::PadDirection,
        caps: &gst::Caps,
        filter: Option<&gst::Caps>,
    ) -> Option<gst::Caps> {
        let scale = self.scale() as i32;
        let up = direction == gst::PadDirection::Sink;
        let mut out = gst::Caps::new_empty();
        {
            let out = out.get_mut()?;
            for (s, features) in caps.iter_with_features() {
                let mut s = s.to_owned();
                let (Some(w), Some(h)) = (s.value("width").ok(), s.value("height").ok()) else {
                    out.append_structure_full(s, Some(features.to_owned()));
                    continue;
                };
                let (Some(w), Some(h)) = (scale_dimension(w, scale, up), scale_dimension(h, scale, up)) else {
                    continue;
                };
                s.set_value("width", w);
                s.set_value("height", h);
                out.append_structure_full(s, Some(features.to_owned()));
            }
        }
        gst::debug!(CAT, imp = self, "transformed {caps} ({direction:?}) into {out}");
        Some(match filter {
            Some(f) => f.intersect_with_mode(&out, gst::CapsIntersectMode::First),
            None => out,
        })
    }

    fn fixate_caps(&self, direction: gst::PadDirection, caps: &gst::Caps, othercaps: gst::Caps) -> gst::Caps {
        let scale = self.scale() as i32;
        let mut othercaps = othercaps;
        othercaps.truncate();
        if let (Some(s), Some(o)) = (caps.structure(0), othercaps.make_mut().structure_mut(0)) {
            if let (Ok(w), Ok(h)) = (s.get::<i32>("width"), s.get::<i32>("height")) {
                let (w, h) = if scale == SCALE_FIT as i32 {
                    // Unconstrained downstream: the input size (pass-through).
                    (w, h)
                } else if direction == gst::PadDirection::Sink {
                    (w.saturating_mul(scale), h.saturating_mul(scale))
                } else {
                    (w / scale, h / scale)
                };
                o.fixate_field_nearest_int("width", w);
                o.fixate_field_nearest_int("height", h);
            }
            if let Ok(format) = s.get::<&str>("format") {
                o.fixate_field_str("format", format);
            }
        }
        othercaps.fixate();
        othercaps
    }

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if direction != gst::PadDirection::Src || query.type_() != gst::QueryType::Latency {
            return BaseTransformImplExt::parent_query(self, direction, query);
        }
        // Upstream's latency plus the model's time: the model runs in the streaming thread, so a
        // frame leaves this element that much after it entered (as an encoder declares the frames
        // it holds, and as a live sink's processing-deadline, 20 ms by default, does not cover).
        if !BaseTransformImplExt::parent_query(self, direction, query) {
            return false;
        }
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            let (live, min, max) = q.result();
            let own = self.processing_latency();
            gst::debug!(CAT, imp = self, "latency: upstream {min} (live: {live}), own {own}");
            q.set(live, min + own, max.map(|m| m + own));
        }
        true
    }

    fn src_event(&self, event: gst::Event) -> bool {
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
            gst::log!(CAT, imp = self, "QoS: diff {diff} ns at {timestamp:?}, earliest {earliest:?}");
            lock(&self.qos).earliest = earliest;
            // Forwarded directly: the base class would start dropping late buffers, and here a late
            // frame is upscaled classically instead of being dropped.
            return self.obj().sink_pad().push_event(event);
        }
        self.parent_src_event(event)
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::FlushStop(_) => {
                self.reset_history();
                lock(&self.qos).earliest = None;
            }
            gst::EventView::StreamStart(_) => self.reset_history(),
            gst::EventView::Tag(tag) => {
                if let Some(h) = lock(&self.state).harvester.as_mut() {
                    let tags = tag.tag();
                    if let Some(codec) = tags.get::<gst::tags::VideoCodec>() {
                        h.info.codec = Some(codec.get().to_string());
                    }
                    let bitrate = tags.get::<gst::tags::Bitrate>().or_else(|| tags.get::<gst::tags::NominalBitrate>());
                    if let Some(b) = bitrate {
                        h.info.bitrate_kbps = Some(b.get() as f64 / 1000.0);
                    }
                }
            }
            gst::EventView::CustomDownstream(e) => {
                if let Some(s) = e.structure().filter(|s| s.name() == ENHANCE_EVENT) {
                    match s.get::<bool>("enhance") {
                        Ok(on) => {
                            gst::debug!(CAT, imp = self, "nerveabr: enhancement {}", if on { "on" } else { "off" });
                            lock(&self.state).abr_enhance = Some(on);
                        }
                        Err(e) => gst::warning!(CAT, imp = self, "{ENHANCE_EVENT} without a boolean 'enhance': {e}"),
                    }
                }
            }
            gst::EventView::Eos(_) => {
                self.settle_shadow();
                self.post_stats();
            }
            _ => {}
        }
        self.parent_sink_event(event)
    }
}

impl VideoFilterImpl for NerveSr {
    fn transform_frame_ip_passthrough(
        &self,
        frame: &gst_video::VideoFrameRef<&gst::BufferRef>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let pts = frame.buffer().pts();
        let mut state = lock(&self.state);
        let switched = self.made(&mut state, false, 0, "pass-through");
        let Ok(luma) = frame.plane_data(0) else { return Ok(gst::FlowSuccess::Ok) };
        let stride = frame.plane_stride()[0] as usize;
        let pts_ns = pts.map(|t| t.nseconds());
        if let Some(shadow) = state.shadow.as_mut() {
            shadow.frame(luma, stride, frame.width() as usize, frame.height() as usize, pts_ns);
        }
        let mut stopped = None;
        if let Some(harvester) = state.harvester.as_mut()
            && let Err(e) = harvester.frame(luma, stride, frame.width() as usize, frame.height() as usize, pts_ns)
        {
            // The video goes on; only harvesting stops.
            state.harvester = None;
            stopped = Some(e);
        }
        let sizes = state.sizes;
        drop(state);
        if let Some(e) = stopped {
            gst::element_imp_warning!(self, gst::ResourceError::Write, ("harvesting stopped: {}", e));
        }
        if let Some(made) = switched {
            self.post_switch(pts, made, sizes);
        }
        Ok(gst::FlowSuccess::Ok)
    }

    fn set_info(
        &self,
        incaps: &gst::Caps,
        in_info: &gst_video::VideoInfo,
        outcaps: &gst::Caps,
        out_info: &gst_video::VideoInfo,
    ) -> Result<(), gst::LoggableError> {
        let settings = lock(&self.settings).clone();
        let (in_w, in_h) = (in_info.width() as usize, in_info.height() as usize);
        let (out_w, out_h) = (out_info.width() as usize, out_info.height() as usize);
        lock(&self.state).sizes = (in_info.width(), in_info.height(), out_info.width(), out_info.height());
        let fit = settings.scale == SCALE_FIT;
        let passthrough = settings.scale == 1 || (fit && (in_w, in_h) == (out_w, out_h) && incaps == outcaps);
        self.obj().set_passthrough(passthrough);
        if passthrough {
            let mut state = lock(&self.state);
            if let Some(h) = state.harvester.as_mut() {
                h.info.description = format!("{}x{} {}", in_info.width(), in_info.height(), incaps);
            }
            // At the output size no model runs: park it for the next switch to a low rung.
            if let Some(m) = state.model.take() {
                state.spare.push(m);
            }
            state.geometry = None;
            return Ok(());
        }
        // The model's factor: fixed, or in fit mode the largest one that does not overshoot.
        let k = if fit {
            (2..=4usize).rev().find(|&k| k * in_w <= out_w && k * in_h <= out_h).unwrap_or(1)
        } else {
            if out_w != in_w * settings.scale as usize || out_h != in_h * settings.scale as usize {
                return Err(gst::loggable_error!(CAT, "output {outcaps} is not {} times the input {incaps}", settings.scale));
            }
            settings.scale as usize
        };
        if in_info.format() != out_info.format() {
            return Err(gst::loggable_error!(CAT, "input and output formats differ: {incaps} vs {outcaps}"));
        }
        let plane = |info: &gst_video::VideoInfo, p: u32, comps| PlaneGeometry {
            width: info.comp_width(p as u8) as usize,
            height: info.comp_height(p as u8) as usize,
            comps,
        };
        let (chroma_planes, comps) = match in_info.format() {
            gst_video::VideoFormat::I420 => (vec![1, 2], 1),
            gst_video::VideoFormat::Nv12 => (vec![1], 2),
            other => return Err(gst::loggable_error!(CAT, "unsupported format {other:?}")),
        };
        let mid = (k > 1 && (k * in_w, k * in_h) != (out_w, out_h)).then(|| {
            let src = PlaneGeometry { width: k * in_w, height: k * in_h, comps: 1 };
            (vec![0u8; k * in_w * k * in_h], Resampler::new(src, plane(out_info, 0, 1)))
        });
        let geometry = Geometry {
            in_w,
            in_h,
            out_w,
            out_h,
            luma: Resampler::new(plane(in_info, 0, 1), plane(out_info, 0, 1)),
            chroma: Resampler::new(plane(in_info, 1, comps), plane(out_info, 1, comps)),
            chroma_planes,
            k: k as u32,
            mid,
        };
        // Fit mode: the factor's model; a fixed scale with no model named: the default for this
        // input's size, which may be a faster model than the one loaded at start.
        if fit || settings.model.is_empty() {
            self.place_model(&settings, k as u32, in_h as u32);
        }
        let mut state = lock(&self.state);
        state.geometry = Some(geometry);
        // A new geometry makes the previous frames meaningless for a temporal model.
        state.history.clear();
        gst::info!(CAT, imp = self, "{in_w}x{in_h} -> {out_w}x{out_h} {:?}, model x{k}", in_info.format());
        if settings.processing_latency == LATENCY_MEASURED {
            let measured = Self::warm_up(&mut state);
            drop(state);
            self.measured_latency(measured);
        }
        Ok(())
    }

    fn transform_frame(
        &self,
        inframe: &gst_video::VideoFrameRef<&gst::BufferRef>,
        outframe: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let pts = inframe.buffer().pts();
        let late = self.is_late(pts);
        let discont = inframe.buffer().flags().contains(gst::BufferFlags::DISCONT);
        let (interval, enhance, fit) = {
            let s = lock(&self.settings);
            (s.stats_interval as u64, s.enhance, s.scale == SCALE_FIT)
        };
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        self.take_swap(state);
        let Some(geo) = state.geometry.as_mut() else {
            gst::element_imp_error!(self, gst::CoreError::Negotiation, ["no caps before the first frame"]);
            return Err(gst::FlowError::NotNegotiated);
        };
        // Fit mode may have no model for this input (a factor below 2, or one that did not load):
        // then every frame is made classically.
        if state.model.is_none() && !fit {
            gst::element_imp_error!(self, gst::CoreError::StateChange, ["no model loaded"]);
            return Err(gst::FlowError::Error);
        }
        if discont {
            state.history.clear();
        }
        let (w, h) = (geo.in_w, geo.in_h);
        let y_in = inframe.plane_data(0).map_err(|_| gst::FlowError::Error)?;
        let in_stride = inframe.plane_stride()[0] as usize;
        let out_stride = outframe.plane_stride()[0] as usize;
        let abr_on = state.abr_enhance != Some(false);

        let mut reason = "model";
        let mut enhanced = false;
        // (model, sha256, why): a model's first faulty output, reported once the lock is released.
        let mut faulty: Option<(String, String, String)> = None;
        let mut frames = 1;
        if let Some(model) = state.model.as_mut() {
            frames = model.frames();
            let area = w * h;
            // The current frame's tensor goes last; the model's earlier slots take the history,
            // padded with the oldest frame available (the current one at a stream start).
            state.input.resize(frames * area, 0.0);
            let (past, current) = state.input.split_at_mut((frames - 1) * area);
            luma_to_tensor(y_in, in_stride, w, h, current);
            for (slot, dst) in past.chunks_exact_mut(area).enumerate() {
                let missing = (frames - 1).saturating_sub(state.history.len());
                let src = if slot < missing {
                    state.history.front().map(Vec::as_slice).unwrap_or(current)
                } else {
                    &state.history[slot - missing]
                };
                dst.copy_from_slice(src);
            }
            if !enhance {
                reason = "disabled";
            } else if !abr_on {
                reason = "abr";
            } else if late {
                reason = "late";
            } else {
                let y_out = outframe.plane_data_mut(0).map_err(|_| gst::FlowError::Error)?;
                let (out_w, out_h) = (geo.out_w, geo.out_h);
                let (k, mid) = (geo.k as usize, &mut geo.mid);
                // An output that is not a picture (NaN/Inf, black, blown: a broken or hostile
                // model) never leaves: its luma is written over classically below.
                let current = &state.input[(frames - 1) * area..];
                // Where the model's luma goes: the frame, or (output larger than k x input) the
                // middle plane that is then resampled to the frame. In bands each band writes
                // and summarises its own rows on its own thread.
                let (dst, dst_w, dst_stride) = match mid.as_mut() {
                    Some((plane, _)) => (plane.as_mut_slice(), k * w, k * w),
                    None => {
                        debug_assert_eq!((out_w, out_h), (k * w, k * h));
                        (&mut *y_out, out_w, out_stride)
                    }
                };
                let result = model.run_into(&state.input, w, h, dst, dst_stride, |hr, rows| {
                    tensor_to_luma_summarised(hr, dst_w, hr.len() / dst_w, rows, dst_stride)
                });
                let mut fault = None;
                let result = result.map(|(took, summaries)| {
                    let summary = summaries.into_iter().reduce(OutputSummary::then).unwrap_or(OutputSummary::of(&[]));
                    fault = engine::guard::check_summary(current, summary).err();
                    took
                });
                if let (Ok(_), None, Some((plane, finish))) = (&result, &fault, mid.as_mut()) {
                    finish.run(plane, k * w, y_out, out_stride);
                }
                match result {
                    Ok(_) if fault.is_some() => {
                        reason = "output-fault";
                        state.counters.output_faults += 1;
                        let sha = model.spec.entry.sha256.clone();
                        if state.fault_reported.as_deref() != Some(sha.as_str()) {
                            state.fault_reported = Some(sha.clone());
                            faulty = Some((model.spec.entry.name.clone(), sha, fault.map(|f| f.to_string()).unwrap_or_default()));
                        }
                    }
                    Ok(took) => {
                        state.counters.inference += took;
                        enhanced = true;
                    }
                    Err(e) => {
                        reason = "error";
                        state.counters.errors += 1;
                        if state.counters.errors % ERROR_WARN_INTERVAL == 1 {
                            gst::element_imp_warning!(
                                self,
                                gst::StreamError::Failed,
                                ("inference failed ({} so far), upscaling classically: {}", state.counters.errors, e)
                            );
                        }
                    }
                }
            }
        } else {
            reason = "no-model";
        }
        if !enhanced {
            let y_out = outframe.plane_data_mut(0).map_err(|_| gst::FlowError::Error)?;
            geo.luma.run(y_in, in_stride, y_out, out_stride);
        }
        for &p in &geo.chroma_planes {
            let src = inframe.plane_data(p).map_err(|_| gst::FlowError::Error)?;
            let src_stride = inframe.plane_stride()[p as usize] as usize;
            let dst_stride = outframe.plane_stride()[p as usize] as usize;
            let dst = outframe.plane_data_mut(p).map_err(|_| gst::FlowError::Error)?;
            geo.chroma.run(src, src_stride, dst, dst_stride);
        }
        let k = geo.k;

        if frames > 1 {
            let area = w * h;
            let mut slot = if state.history.len() >= frames - 1 {
                state.history.pop_front().unwrap_or_default()
            } else {
                Vec::new()
            };
            slot.clear();
            slot.extend_from_slice(&state.input[(frames - 1) * area..]);
            state.history.push_back(slot);
        }

        let switched = self.made(state, enhanced, if enhanced { k } else { 0 }, reason);
        let sizes = state.sizes;
        let c = &mut state.counters;
        if enhanced {
            c.enhanced += 1;
        } else {
            c.classical += 1;
        }
        let changed = c.falling_back != late;
        c.falling_back = late;
        let total = c.enhanced + c.classical;
        drop(guard);
        if let Some((model, sha, why)) = faulty {
            gst::element_imp_warning!(self, gst::StreamError::Decode, ("model '{}' gives no picture, upscaling classically: {}", model, why));
            let s = gst::Structure::builder("nervesr-model-fault")
                .field("model", model.as_str())
                .field("model-sha256", sha.as_str())
                .field("reason", why.as_str())
                .build();
            let _ = self.obj().post_message(gst::message::Element::builder(s).src(&*self.obj()).build());
        }
        if let Some(made) = switched {
            self.post_switch(pts, made, sizes);
        }
        if changed {
            gst::debug!(CAT, imp = self, "{} the model", if late { "late: falling back from" } else { "caught up: back to" });
        }
        if changed || (interval > 0 && total.is_multiple_of(interval)) {
            self.post_stats();
        }
        Ok(gst::FlowSuccess::Ok)
    }
}
