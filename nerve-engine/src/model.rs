//! A loaded model: an ONNX Runtime session checked against its manifest entry.

use std::time::{Duration, Instant};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

use super::manifest::{self, ResolvedModel};
use super::provider::Provider;
use super::{EngineError, guard, library};

/// How to build a session.
#[derive(Debug, Clone, Default)]
pub struct SessionConfig {
    pub provider: Provider,
    /// Intra-op threads; 0 lets ONNX Runtime choose (one per physical core).
    pub threads: u32,
    /// Explicit ONNX Runtime library path, if the user gave one.
    pub library: Option<std::path::PathBuf>,
    /// Horizontal bands a frame is split into, each run by its own session at the same time
    /// ([`Model::run`]), the threads shared between them; 0 = automatic (on the CPU one per
    /// thread: `threads`, else every logical core, at most [`MAX_AUTO_BANDS`]; one elsewhere),
    /// 1 = the whole frame at once.
    pub bands: u32,
}

/// The most bands automatic banding uses.
pub const MAX_AUTO_BANDS: usize = 4;

pub struct Model {
    pub spec: ResolvedModel,
    /// Whole frames, with every thread the config gives.
    session: Session,
    /// One one-thread session per band (empty: bands off). Apart from `session`, so a frame
    /// that runs whole still has all its threads.
    band_sessions: Vec<Session>,
    /// Rows each band reads beyond its own on either side (0: bands off); see [`Model::halo`].
    halo: usize,
    /// Each band's input rows, reused frame after frame.
    band_inputs: Vec<Vec<f32>>,
    /// The bands' outputs put together.
    banded_output: Vec<f32>,
    /// Bands chosen automatically: each frame size is tried both ways first ([`Trial`]).
    auto_bands: bool,
    trial: Option<Trial>,
    last_bands: usize,
    /// The provider actually in use (the CPU after a fallback).
    pub provider: Provider,
    /// Things the user should hear about but that did not stop loading (provider fallback, ...).
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("spec", &self.spec).field("provider", &self.provider).finish()
    }
}

/// Side of the square frame run once at load time to check the scale the network really has.
const PROBE: usize = 16;

/// ONNX Runtime's environment for `config`, with the warning every loader gives when another
/// library was loaded first.
pub(crate) fn environment(config: &SessionConfig) -> Result<(&'static ort::environment::Environment, Vec<String>), EngineError> {
    let (env, other_lib) = library::environment(config.library.as_deref())?;
    let warnings = other_lib
        .map(|path| format!("ONNX Runtime is already loaded from {} in this process; the requested library is ignored", path.display()))
        .into_iter()
        .collect();
    Ok((env, warnings))
}

/// The untrusted-model checks (guard::check_model) with the error every loader reports.
pub(crate) fn refuse_untrusted(bytes: &[u8], dir: &std::path::Path, path: &std::path::Path) -> Result<(), EngineError> {
    guard::check_model(bytes, dir).map_err(|why| {
        let verdict = if guard::is_malformed(&why) { "is not a loadable ONNX model" } else { "is refused" };
        EngineError::Model(format!("{} {verdict}: {why}", path.display()))
    })
}

impl Model {
    pub fn load(spec: ResolvedModel, config: &SessionConfig) -> Result<Self, EngineError> {
        let (env, mut warnings) = environment(config)?;
        let bytes = manifest::read_verified(&spec)?;
        // The sha256 says the file is the one the manifest names, not that its author is trusted.
        refuse_untrusted(&bytes, &spec.dir, &spec.path)?;
        let builder = || -> Result<_, EngineError> {
            let mut b = Session::builder(env)
                .map_err(|e| EngineError::Model(format!("cannot create a session: {e}")))?
                .with_optimization_level(GraphOptimizationLevel::Level3)
                .map_err(|e| EngineError::Model(e.to_string()))?;
            if config.threads > 0 {
                b = b.with_intra_threads(config.threads as usize).map_err(|e| EngineError::Model(e.to_string()))?;
            }
            Ok(b)
        };
        let mut provider = config.provider;
        let mut b = builder()?;
        match provider.dispatch() {
            Ok(None) => {}
            Ok(Some(ep)) => match b.with_execution_providers([ep]) {
                Ok(with_ep) => b = with_ep,
                Err(e) => {
                    warnings.push(format!("provider '{}' failed to register ({e}); running on the CPU", provider.nick()));
                    provider = Provider::Cpu;
                    b = builder()?;
                }
            },
            Err(why) => {
                warnings.push(format!("{why}; running on the CPU"));
                provider = Provider::Cpu;
            }
        }
        let commit = |mut b: ort::session::builder::SessionBuilder| {
            b.commit_from_memory(&bytes)
                .map_err(|e| EngineError::Model(format!("{} is not a loadable ONNX model: {e}", spec.path.display())))
        };
        // the threads to share between bands: those asked for, else every logical core
        let threads = if config.threads > 0 {
            config.threads as usize
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        };
        let bands = match config.bands {
            0 if provider == Provider::Cpu => threads.min(MAX_AUTO_BANDS),
            0 => 1,
            n => n as usize,
        };
        let session = commit(b)?;
        let mut band_sessions = Vec::new();
        if bands > 1 {
            let per_band = (threads / bands).max(1);
            for _ in 0..bands {
                let mut b = builder()?.with_intra_threads(per_band).map_err(|e| EngineError::Model(e.to_string()))?;
                if let Ok(Some(ep)) = provider.dispatch() {
                    b = b.with_execution_providers([ep]).map_err(|e| EngineError::Model(e.to_string()))?;
                }
                band_sessions.push(commit(b)?);
            }
        }
        let mut model = Self {
            spec,
            session,
            band_sessions,
            halo: 0,
            band_inputs: Vec::new(),
            banded_output: Vec::new(),
            auto_bands: config.bands == 0,
            trial: None,
            last_bands: 1,
            provider,
            warnings,
        };
        model.check_signature()?;
        model.probe()?;
        if !model.band_sessions.is_empty() {
            match model.find_halo()? {
                Some(halo) => model.halo = halo,
                None => {
                    model.warnings.push(format!(
                        "'{}' reads further than {MAX_HALO} rows around a pixel; frames run whole, not in bands",
                        model.spec.entry.name
                    ));
                    model.band_sessions.clear();
                }
            }
        }
        Ok(model)
    }

    /// Bands a frame can run in at once (1: whole frames only).
    pub fn bands(&self) -> usize {
        self.band_sessions.len().max(1)
    }

    /// The bands the last frame ran in (1: whole).
    pub fn bands_in_use(&self) -> usize {
        self.last_bands
    }

    /// Rows a band reads beyond its own: found at load time as the smallest multiple of
    /// [`HALO_STEP`] with which two bands give the whole frame's output exactly on three noise
    /// frames of different contrast (a model's reach is not in its manifest, and an int8 model's
    /// reach depends on the picture: its rounding hides small far effects). Every row of margin
    /// is computed twice, so the margin is no larger than the check needs.
    pub fn halo(&self) -> usize {
        self.halo
    }

    /// The bands `height` rows are run in: as many as there are sessions, each at least four
    /// halos high.
    fn band_count(&self, height: usize) -> usize {
        if self.halo == 0 {
            return 1;
        }
        self.band_sessions.len().min(height / (4 * self.halo)).max(1)
    }

    fn find_halo(&mut self) -> Result<Option<usize>, EngineError> {
        let (w, h) = (48, 2 * MAX_HALO + 2 * BAND_ALIGN);
        let frames = self.frames();
        // three noise frames of different contrast: an int8 model's rounding can hide a small
        // far effect on one picture, rarely on all three
        let probes: Vec<Vec<f32>> = [(0x2545_f491_4f6c_dd1du64, 1.0f32), (0x9e37_79b9_7f4a_7c15, 0.25), (0x1234_5678_9abc_def1, 0.05)]
            .into_iter()
            .map(|(mut seed, contrast)| {
                (0..frames * w * h)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        0.5 + contrast * ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
                    })
                    .collect()
            })
            .collect();
        let mut wholes = Vec::with_capacity(probes.len());
        for input in &probes {
            let mut whole = Vec::new();
            self.run_whole(input, w, h, |out| whole.extend_from_slice(out))?;
            wholes.push(whole);
        }
        'halo: for halo in (HALO_STEP..=MAX_HALO).step_by(HALO_STEP) {
            for (input, whole) in probes.iter().zip(&wholes) {
                let mut banded = vec![0.0; whole.len()];
                self.run_banded(input, w, h, 2, halo, &mut banded, w * self.scale(), |band: &[f32], part: &mut [f32]| {
                    part.copy_from_slice(band)
                })?;
                if banded != *whole {
                    continue 'halo;
                }
            }
            return Ok(Some(halo));
        }
        Ok(None)
    }

    pub fn frames(&self) -> usize {
        self.spec.entry.frames as usize
    }

    pub fn scale(&self) -> usize {
        self.spec.entry.scale as usize
    }

    /// The graph's declared inputs and outputs must match the manifest entry.
    fn check_signature(&self) -> Result<(), EngineError> {
        let e = &self.spec.entry;
        let mismatch = |what: String| {
            EngineError::Shape(format!("{} contradicts its manifest entry '{}': {what}", self.spec.path.display(), e.name))
        };
        let inputs = self.session.inputs();
        if inputs.len() != 1 {
            return Err(mismatch(format!("{} inputs, expected 1", inputs.len())));
        }
        let input = &inputs[0];
        if input.name() != e.input.name {
            return Err(mismatch(format!("input is named '{}', manifest says '{}'", input.name(), e.input.name)));
        }
        let Some(output) = self.session.outputs().iter().find(|o| o.name() == e.output.name) else {
            return Err(mismatch(format!("no output named '{}'", e.output.name)));
        };
        let dims = |o: &ort::value::Outlet| o.dtype().tensor_shape().map(|s| s.iter().copied().collect::<Vec<i64>>());
        let (Some(ind), Some(outd)) = (dims(input), dims(output)) else {
            return Err(mismatch("input or output is not a tensor".into()));
        };
        let check = |d: &[i64], channels: i64, which: &str| -> Result<(), EngineError> {
            if d.len() != 4 {
                return Err(mismatch(format!("{which} has rank {}, expected 4 (NCHW)", d.len())));
            }
            if d[0] > 1 {
                return Err(mismatch(format!("{which} batch is {}, expected 1 or dynamic", d[0])));
            }
            if d[1] >= 0 && d[1] != channels {
                return Err(mismatch(format!("{which} has {} channels, expected {channels}", d[1])));
            }
            if d[2] >= 0 || d[3] >= 0 {
                return Err(mismatch(format!("{which} has a fixed size {}x{}; height and width must be dynamic", d[3], d[2])));
            }
            Ok(())
        };
        check(&ind, e.frames as i64, "input")?;
        check(&outd, 1, "output")
    }

    /// Runs a small frame through the network and checks the output size against the scale.
    fn probe(&mut self) -> Result<(), EngineError> {
        let input = vec![0.5f32; self.frames() * PROBE * PROBE];
        self.run(&input, PROBE, PROBE, |_| ()).map_err(|e| match e {
            EngineError::Shape(m) => EngineError::Shape(format!("{m} (manifest entry '{}')", self.spec.entry.name)),
            other => other,
        })?;
        Ok(())
    }

    /// Runs the model on `frames` stacked `width` x `height` luma tensors and hands the
    /// `scale`-times larger output to `consume`. Returns the time spent inside ONNX Runtime.
    ///
    /// With several sessions the frame runs as horizontal bands at once, each on its own thread
    /// with the rows its halo needs on either side, and the bands' own rows put together: the
    /// same output as the whole frame (checked at load). One ONNX Runtime session with two
    /// threads synchronises them at every operator, and the operators between convolutions run
    /// on one; two one-thread sessions on two halves do neither.
    pub fn run(
        &mut self,
        input: &[f32],
        width: usize,
        height: usize,
        consume: impl FnOnce(&[f32]),
    ) -> Result<Duration, EngineError> {
        let n = self.bands_for(width, height);
        let banded = n > 1;
        // the trial times the whole call, `consume` included: bands leave their output where
        // another core wrote it, and reading it costs the caller more than ONNX Runtime's own
        let started = Instant::now();
        let took = if banded {
            let mut gathered = std::mem::take(&mut self.banded_output);
            gathered.resize(self.scale() * self.scale() * width * height, 0.0);
            let stride = self.scale() * width;
            let result = self
                .run_banded(input, width, height, n, self.halo, &mut gathered, stride, |band: &[f32], part: &mut [f32]| {
                    part.copy_from_slice(band)
                })
                .map(|(took, _)| took);
            if result.is_ok() {
                consume(&gathered);
            }
            self.banded_output = gathered;
            result?
        } else {
            self.run_whole(input, width, height, consume)?
        };
        self.trial_record(banded, started.elapsed());
        Ok(took)
    }

    /// [`Model::run`] with the output written straight into `out`, a plane of `scale * height`
    /// rows `stride` elements apart (`stride` >= `scale * width`): `write` gets rows of the
    /// output and the plane's rows they go to (the same count, the last possibly short of its
    /// stride's padding) and returns what the caller wants back of them. In bands each band's
    /// rows go to `write` on that band's own thread, so turning the output into pixels (and
    /// checking it) runs beside the other bands instead of after them all on one core, and the
    /// output is never put together as floats. Returns the time inside ONNX Runtime and what
    /// `write` returned, top rows first (one entry for a whole frame).
    pub fn run_into<T: Send, R: Send>(
        &mut self,
        input: &[f32],
        width: usize,
        height: usize,
        out: &mut [T],
        stride: usize,
        write: impl Fn(&[f32], &mut [T]) -> R + Sync,
    ) -> Result<(Duration, Vec<R>), EngineError> {
        let scale = self.scale();
        let (out_w, out_h) = (scale * width, scale * height);
        if stride < out_w || out.len() < (out_h.max(1) - 1) * stride + out_w {
            return Err(EngineError::Shape(format!(
                "a {out_w}x{out_h} output does not fit a plane of {} elements {stride} a row",
                out.len()
            )));
        }
        let n = self.bands_for(width, height);
        let banded = n > 1;
        let started = Instant::now();
        let result = if banded {
            self.run_banded(input, width, height, n, self.halo, out, stride, write)?
        } else {
            let mut got = None;
            let took = self.run_whole(input, width, height, |data| got = Some(write(data, out)))?;
            (took, got.into_iter().collect())
        };
        self.trial_record(banded, started.elapsed());
        Ok(result)
    }

    /// The bands this frame runs in (1: whole), remembered for [`Model::bands_in_use`].
    fn bands_for(&mut self, width: usize, height: usize) -> usize {
        let n = self.band_count(height);
        let banded = n > 1 && (!self.auto_bands || (height >= MIN_AUTO_ROWS && self.trial_says((width, height))));
        self.last_bands = if banded { n } else { 1 };
        self.last_bands
    }

    /// Whether automatic banding runs this frame in bands: the verdict for the size, or, while
    /// the size is on trial, the way with fewer timings so far (whole frames first).
    fn trial_says(&mut self, size: (usize, usize)) -> bool {
        let trial = match &mut self.trial {
            Some(t) if t.size == size => t,
            other => other.insert(Trial { size, whole: Vec::new(), banded: Vec::new(), verdict: None }),
        };
        trial.verdict.unwrap_or(trial.banded.len() < trial.whole.len())
    }

    fn trial_record(&mut self, banded: bool, took: Duration) {
        let Some(t) = self.trial.as_mut().filter(|t| t.verdict.is_none()) else { return };
        if banded { &mut t.banded } else { &mut t.whole }.push(took);
        if t.whole.len() > TRIAL_RUNS && t.banded.len() > TRIAL_RUNS {
            // the first run of each way pays for allocations: left out
            let median = |v: &mut Vec<Duration>| {
                v.remove(0);
                v.sort();
                v[v.len() / 2]
            };
            let (whole, banded) = (median(&mut t.whole), median(&mut t.banded));
            t.verdict = Some(banded < whole);
        }
    }

    /// `n` bands, each with `halo` rows more on either side, on threads of their own (the first on the
    /// caller's): band `i`'s output rows go to `write` with the rows of `out` (rows `stride`
    /// apart) that they cover.
    #[allow(clippy::too_many_arguments)]
    fn run_banded<T: Send, R: Send>(
        &mut self,
        input: &[f32],
        width: usize,
        height: usize,
        n: usize,
        halo: usize,
        out: &mut [T],
        stride: usize,
        write: impl Fn(&[f32], &mut [T]) -> R + Sync,
    ) -> Result<(Duration, Vec<R>), EngineError> {
        let (frames, scale) = (self.frames(), self.scale());
        debug_assert_eq!(input.len(), frames * width * height);
        let mut edges: Vec<usize> = (0..=n).map(|i| i * height / n / BAND_ALIGN * BAND_ALIGN).collect();
        edges[n] = height;
        self.band_inputs.resize_with(n, Vec::new);
        let mut parts = Vec::with_capacity(n);
        let mut rest = out;
        for i in 0..n {
            let rows = (edges[i + 1] - edges[i]) * scale;
            let (part, tail) = rest.split_at_mut((rows * stride).min(rest.len()));
            parts.push(part);
            rest = tail;
        }
        let names = (self.spec.entry.input.name.as_str(), self.spec.entry.output.name.as_str());
        let shape = BandShape { width, height, frames, scale, halo };
        let write = &write;
        let started = Instant::now();
        let results: Vec<Result<R, EngineError>> = std::thread::scope(|s| {
            let mut jobs = self.band_sessions.iter_mut().zip(self.band_inputs.iter_mut()).zip(parts).enumerate();
            let first = jobs.next();
            let spawned: Vec<_> = jobs
                .map(|(i, ((session, buf), part))| {
                    let rows = (edges[i], edges[i + 1]);
                    s.spawn(move || run_band(session, buf, input, shape, rows, names, |band| write(band, part)))
                })
                .collect();
            let mut results = Vec::with_capacity(n);
            if let Some((i, ((session, buf), part))) = first {
                results.push(run_band(session, buf, input, shape, (edges[i], edges[i + 1]), names, |band| write(band, part)));
            }
            results.extend(
                spawned
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Err(EngineError::Inference("a band's thread panicked".into())))),
            );
            results
        });
        let took = started.elapsed();
        Ok((took, results.into_iter().collect::<Result<Vec<R>, _>>()?))
    }

    /// The whole frame on the first session, its output straight from ONNX Runtime's buffer.
    fn run_whole(
        &mut self,
        input: &[f32],
        width: usize,
        height: usize,
        consume: impl FnOnce(&[f32]),
    ) -> Result<Duration, EngineError> {
        let names = (self.spec.entry.input.name.as_str(), self.spec.entry.output.name.as_str());
        let shape = BandShape { width, height, frames: self.frames(), scale: self.scale(), halo: 0 };
        infer(&mut self.session, input, shape, height, names, consume)
    }
}

/// Automatic banding tries whole frames and bands this many times each (after one run each
/// that is not counted) on the first frames of a size, then keeps the faster for that size:
/// bands pay for a folded (space-to-depth) student at 540p and more, and cost a full-resolution
/// network or a small frame up to 15% (measured on 2 cores, docs/research/2026-12-07-sr-bands.md).
const TRIAL_RUNS: usize = 4;

/// Automatic banding leaves frames lower than this whole: below 480 rows (the x4 model at 180,
/// the x3 at 240, the x2 default at 360) bands were as fast or slower in every run on 2 cores,
/// by more than the trial's own timings show (the pipeline around the model pays too).
pub const MIN_AUTO_ROWS: usize = 480;

/// Which way the first frames of one size ran fastest.
struct Trial {
    size: (usize, usize),
    whole: Vec<Duration>,
    banded: Vec<Duration>,
    /// `Some(true)`: bands for this size from now on.
    verdict: Option<bool>,
}

/// Band edges fall on multiples of this many rows, and halos on multiples of [`HALO_STEP`]: a
/// model that folds 2x2 or 4x4 pixels into channels (space-to-depth) sees every band on the whole
/// frame's grid.
pub const BAND_ALIGN: usize = 8;
pub const HALO_STEP: usize = 4;

/// The farthest a band's halo is searched for; a model reaching further runs whole frames.
pub const MAX_HALO: usize = 48;

#[derive(Clone, Copy)]
struct BandShape {
    width: usize,
    height: usize,
    frames: usize,
    scale: usize,
    halo: usize,
}

/// One band: its rows `core` with `halo` more on either side (inside the frame) through
/// `session`, the output of its own rows to `write`.
fn run_band<R>(
    session: &mut Session,
    buf: &mut Vec<f32>,
    input: &[f32],
    s: BandShape,
    core: (usize, usize),
    names: (&str, &str),
    write: impl FnOnce(&[f32]) -> R,
) -> Result<R, EngineError> {
    let (top, bottom) = (core.0.saturating_sub(s.halo), (core.1 + s.halo).min(s.height));
    let (rows, area) = (bottom - top, s.width * s.height);
    buf.clear();
    for f in 0..s.frames {
        buf.extend_from_slice(&input[f * area + top * s.width..f * area + bottom * s.width]);
    }
    let out_row = s.scale * s.width;
    let (skip, len) = ((core.0 - top) * s.scale * out_row, (core.1 - core.0) * s.scale * out_row);
    let mut got = None;
    infer(session, buf, s, rows, names, |data| got = Some(write(&data[skip..skip + len])))?;
    got.ok_or_else(|| EngineError::Inference("a band gave no output".into()))
}

/// `input` (`shape.frames` stacked planes of `rows` x `shape.width`) through `session`, its
/// checked `shape.scale`-times larger output to `consume` straight from ONNX Runtime's buffer.
/// Returns the time inside ONNX Runtime.
fn infer(
    session: &mut Session,
    input: &[f32],
    shape: BandShape,
    rows: usize,
    (input_name, output_name): (&str, &str),
    consume: impl FnOnce(&[f32]),
) -> Result<Duration, EngineError> {
    let (width, scale) = (shape.width, shape.scale);
    debug_assert_eq!(input.len(), shape.frames * width * rows);
    let tensor = TensorRef::from_array_view(([1usize, shape.frames, rows, width], input))
        .map_err(|e| EngineError::Inference(format!("cannot wrap the input: {e}")))?;
    let started = Instant::now();
    let outputs = session.run(ort::inputs![input_name => tensor]).map_err(|e| EngineError::Inference(e.to_string()))?;
    let elapsed = started.elapsed();
    let value = outputs.get(output_name).ok_or_else(|| EngineError::Inference(format!("no output '{output_name}'")))?;
    let (got, data) = value
        .try_extract_tensor::<f32>()
        .map_err(|e| EngineError::Shape(format!("output is not a float tensor: {e}")))?;
    let expected = [1i64, 1, (rows * scale) as i64, (width * scale) as i64];
    if got.iter().copied().ne(expected) {
        return Err(EngineError::Shape(format!(
            "a {width}x{rows} input gave an output of shape {:?}, expected {expected:?} for scale {scale}",
            got.iter().collect::<Vec<_>>()
        )));
    }
    consume(data);
    Ok(elapsed)
}
