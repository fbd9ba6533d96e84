//! Shadow mode: a candidate model is judged beside the champion on what this viewer watches,
//! without touching a single frame of the stream.
//!
//! At scale 1 (a rung at display size) the frames are the real high-resolution picture, the
//! ground truth for the low rungs the device will stream later. At a bounded rate (samples per
//! minute of video) the streaming thread copies one detailed luma patch and hands it to a worker
//! thread over a bounded queue; when the worker is busy the sample is dropped and counted, so the
//! streaming thread never waits. The worker makes the low-rung input exactly as harvested pairs
//! are made for training (`learning/.../data/degrade.py`): bicubic (Catmull-Rom) downscale by the models
//! scale, then the real codec (x264 at `crf`, the patches of a batch encoded as frames of one
//! short video), then decode. Both models run on that input (one ONNX Runtime thread each) and
//! are scored against the real patch: PSNR-Y per model, their difference is the candidate's gain.

use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gst::prelude::*;

use super::harvest::patch_stats;
use super::swap::LoadRequest;
use crate::engine::Model;
use crate::engine::convert::luma_to_tensor;
use crate::sync::lock;

/// Candidate positions looked at per sample, as the harvester does.
const CANDIDATES: usize = 8;
/// Flatter patches say nothing about a model.
const MIN_STD: f64 = 4.0;
/// Patches encoded together as one short video (the codec sees a sequence, as in training).
const BATCH: usize = 4;
/// Samples waiting for the worker at most; more are dropped (and counted).
const QUEUE: usize = 8;
const DEFAULT_FRAME_NS: u64 = 33_333_333;

#[derive(Debug, Clone)]
pub struct ShadowConfig {
    /// The candidate, resolved the way `model` is (a name, an .onnx path, or a directory with a
    /// manifest.toml whose default for the scale is taken).
    pub candidate: LoadRequest,
    /// The champion: what `model` / `model-location` would run on the low rungs.
    pub champion: LoadRequest,
    /// Samples per minute of video.
    pub budget: u32,
    /// Side of the high-resolution patch (a multiple of 2 x scale).
    pub patch: u32,
    /// x264 quality of the simulated low rung (CRF); 0 encodes nothing (downscale only).
    pub crf: u32,
}

/// What the shadow has learnt so far; read into `nervesr-stats`.
#[derive(Debug, Clone, Default)]
pub struct ShadowStats {
    pub candidate: String,
    pub candidate_sha256: String,
    pub champion: String,
    pub samples: u64,
    pub dropped: u64,
    champion_psnr_sum: f64,
    candidate_psnr_sum: f64,
    champion_time: Duration,
    candidate_time: Duration,
    /// Low-resolution megapixels run through each model.
    megapixels: f64,
    /// "x264" or "none" (no encoder here: downscale only).
    pub codec: String,
    /// Why the shadow stopped, if it did (a model that does not load, ...).
    pub error: Option<String>,
}

impl ShadowStats {
    pub fn champion_psnr(&self) -> f64 {
        self.mean(self.champion_psnr_sum)
    }
    pub fn candidate_psnr(&self) -> f64 {
        self.mean(self.candidate_psnr_sum)
    }
    /// Candidate minus champion, dB PSNR-Y, over the same samples.
    pub fn gain_db(&self) -> f64 {
        self.candidate_psnr() - self.champion_psnr()
    }
    /// Inference milliseconds per low-resolution megapixel: the candidate's real-time cost
    /// against the champion's, independent of the patch size.
    pub fn champion_ms_per_mpx(&self) -> f64 {
        per_mpx(self.champion_time, self.megapixels)
    }
    pub fn candidate_ms_per_mpx(&self) -> f64 {
        per_mpx(self.candidate_time, self.megapixels)
    }
    fn mean(&self, sum: f64) -> f64 {
        if self.samples == 0 { 0.0 } else { sum / self.samples as f64 }
    }
}

fn per_mpx(t: Duration, mpx: f64) -> f64 {
    if mpx > 0.0 { t.as_secs_f64() * 1000.0 / mpx } else { 0.0 }
}

struct Sample {
    pixels: Vec<u8>,
    side: usize,
}

pub struct Shadow {
    config: ShadowConfig,
    tx: Option<SyncSender<Sample>>,
    worker: Option<thread::JoinHandle<()>>,
    stats: Arc<Mutex<ShadowStats>>,
    next_due: Option<u64>,
    frames: u64,
    rng: u64,
}

impl Shadow {
    /// Starts the worker; it loads both models itself, so that starting costs the streaming
    /// thread nothing. A model that fails to load shows as `error` in the stats.
    pub fn start(config: ShadowConfig) -> Result<Self, String> {
        let (tx, rx) = mpsc::sync_channel::<Sample>(QUEUE);
        let stats = Arc::new(Mutex::new(ShadowStats { candidate: config.candidate.spec.clone(), ..Default::default() }));
        let worker = {
            let (config, stats) = (config.clone(), stats.clone());
            thread::Builder::new()
                .name("nervesr-shadow".into())
                .spawn(move || {
                    if let Err(e) = work(&config, rx, &stats) {
                        lock(&stats).error = Some(e);
                    }
                })
                .map_err(|e| format!("cannot start the shadow worker: {e}"))?
        };
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
        Ok(Self { config, tx: Some(tx), worker: Some(worker), stats, next_due: None, frames: 0, rng: seed | 1 })
    }

    pub fn stats(&self) -> ShadowStats {
        lock(&self.stats).clone()
    }

    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Looks at one frame; when a sample is due, copies a detailed patch for the worker. Never
    /// blocks: a full queue drops the sample.
    pub fn frame(&mut self, luma: &[u8], stride: usize, width: usize, height: usize, pts: Option<u64>) {
        let now = pts.unwrap_or(self.frames * DEFAULT_FRAME_NS);
        self.frames += 1;
        let side = self.config.patch as usize;
        if self.next_due.is_some_and(|d| now < d) || width < side || height < side || self.tx.is_none() {
            return;
        }
        self.next_due = Some(now + 60_000_000_000 / self.config.budget.max(1) as u64);
        let mut best: Option<(usize, usize, f64)> = None;
        for _ in 0..CANDIDATES {
            let x = (self.next_random() % (width - side + 1) as u64) as usize;
            let y = (self.next_random() % (height - side + 1) as u64) as usize;
            let s = patch_stats(luma, stride, x, y, side, None);
            if s.std >= MIN_STD && best.is_none_or(|b| s.grad > b.2) {
                best = Some((x, y, s.grad));
            }
        }
        let Some((x, y, _)) = best else { return };
        let mut pixels = Vec::with_capacity(side * side);
        for row in y..y + side {
            pixels.extend_from_slice(&luma[row * stride + x..row * stride + x + side]);
        }
        let Some(tx) = self.tx.as_ref() else { return };
        match tx.try_send(Sample { pixels, side }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => lock(&self.stats).dropped += 1,
            // The worker stopped (its error is in the stats): stop sampling.
            Err(TrySendError::Disconnected(_)) => self.tx = None,
        }
    }

    /// Closes the queue and waits until the worker has scored what it was given.
    pub fn finish(&mut self) {
        self.tx.take();
        if let Some(w) = self.worker.take()
            && w.join().is_err()
        {
            lock(&self.stats).error = Some("the shadow worker panicked".into());
        }
    }
}

impl Drop for Shadow {
    fn drop(&mut self) {
        self.finish();
    }
}

fn work(config: &ShadowConfig, rx: mpsc::Receiver<Sample>, stats: &Mutex<ShadowStats>) -> Result<(), String> {
    let mut candidate = config.candidate.load().map_err(|e| format!("candidate: {e}"))?;
    let mut champion = config.champion.load().map_err(|e| format!("champion: {e}"))?;
    let scale = champion.scale();
    if candidate.scale() != scale {
        return Err(format!("the candidate is x{}, the champion x{scale}", candidate.scale()));
    }
    let codec = Codec::new(config.crf);
    {
        let mut s = lock(stats);
        s.candidate = candidate.spec.entry.name.clone();
        s.candidate_sha256 = candidate.spec.entry.sha256.clone();
        s.champion = champion.spec.entry.name.clone();
        s.codec = if codec.is_some() { "x264".into() } else { "none".into() };
    }
    let mut batch: Vec<Sample> = Vec::with_capacity(BATCH);
    loop {
        let next = rx.recv().ok();
        let closing = next.is_none();
        if let Some(sample) = next {
            batch.push(sample);
        }
        if batch.len() == BATCH || (closing && !batch.is_empty()) {
            score(&mut batch, scale, codec.as_ref(), &mut champion, &mut candidate, stats)?;
        }
        if closing {
            return Ok(());
        }
    }
}

/// Degrades a batch of patches into the low rung and scores both models on it.
fn score(
    batch: &mut Vec<Sample>,
    scale: usize,
    codec: Option<&Codec>,
    champion: &mut Model,
    candidate: &mut Model,
    stats: &Mutex<ShadowStats>,
) -> Result<(), String> {
    let side = batch[0].side;
    batch.retain(|s| s.side == side);
    let lr_side = side / scale;
    let lrs = degrade(batch, lr_side, codec)?;
    for (sample, lr) in batch.iter().zip(&lrs) {
        let mut input = vec![0f32; lr_side * lr_side];
        luma_to_tensor(lr, lr_side, lr_side, lr_side, &mut input);
        let (champ_db, champ_t) = run_scored(champion, &input, lr_side, &sample.pixels)?;
        let (cand_db, cand_t) = run_scored(candidate, &input, lr_side, &sample.pixels)?;
        let mut s = lock(stats);
        s.samples += 1;
        s.champion_psnr_sum += champ_db;
        s.candidate_psnr_sum += cand_db;
        s.champion_time += champ_t;
        s.candidate_time += cand_t;
        s.megapixels += (lr_side * lr_side) as f64 / 1e6;
    }
    batch.clear();
    Ok(())
}

/// Runs one model on a low-resolution patch (repeated for a model that takes several frames: a
/// patch has no past) and returns its PSNR-Y against the real patch and its inference time.
fn run_scored(model: &mut Model, lr: &[f32], lr_side: usize, truth: &[u8]) -> Result<(f64, Duration), String> {
    let input: Vec<f32> = lr.iter().copied().cycle().take(lr.len() * model.frames()).collect();
    let mut db = 0.0;
    let took = model
        .run(&input, lr_side, lr_side, |hr| db = psnr(hr, truth))
        .map_err(|e| format!("{} failed: {e}", model.spec.entry.name))?;
    Ok((db, took))
}

/// PSNR of a unit-float output against 8-bit truth, after rounding the output to 8 bits as the
/// element does when it writes a frame.
pub fn psnr(out: &[f32], truth: &[u8]) -> f64 {
    let se: f64 = out
        .iter()
        .zip(truth)
        .map(|(&o, &t)| {
            let o = (o * 255.0 + 0.5).clamp(0.0, 255.0).floor() as f64;
            (o - t as f64).powi(2)
        })
        .sum();
    let mse = se / truth.len().max(1) as f64;
    if mse <= 1e-10 { 100.0 } else { 10.0 * (255.0f64 * 255.0 / mse).log10() }
}

/// The x264 rung: present only where GStreamer has x264enc and avdec_h264.
struct Codec {
    crf: u32,
}

impl Codec {
    fn new(crf: u32) -> Option<Self> {
        let have = |name| gst::ElementFactory::find(name).is_some();
        (crf > 0 && have("x264enc") && have("avdec_h264") && have("appsrc") && have("appsink")).then_some(Self { crf })
    }
}

/// High-resolution patches -> the low rung: bicubic (Catmull-Rom) downscale, then (with a codec) x264 at the
/// CRF and back, all patches as frames of one short video. Returns one `lr_side`² plane each.
fn degrade(batch: &[Sample], lr_side: usize, codec: Option<&Codec>) -> Result<Vec<Vec<u8>>, String> {
    let side = batch[0].side;
    let coded = match codec {
        Some(c) => format!(
            "x264enc pass=qual quantizer={} speed-preset=medium threads=1 \
             ! avdec_h264 max-threads=1 ! ",
            c.crf
        ),
        None => String::new(),
    };
    let launch = format!(
        "appsrc name=src format=time caps=video/x-raw,format=I420,width={side},height={side},framerate=30/1 \
         ! videoscale method=catrom ! video/x-raw,width={lr_side},height={lr_side} ! {coded}\
         appsink name=sink sync=false caps=video/x-raw,format=I420"
    );
    let pipeline = gst::parse::launch(&launch)
        .map_err(|e| format!("cannot build the degradation pipeline: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "the degradation pipeline is not a pipeline".to_string())?;
    let result = run_degrade(&pipeline, batch, lr_side);
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn run_degrade(pipeline: &gst::Pipeline, batch: &[Sample], lr_side: usize) -> Result<Vec<Vec<u8>>, String> {
    let src = pipeline.by_name("src").ok_or("no appsrc")?;
    let sink = pipeline.by_name("sink").ok_or("no appsink")?;
    pipeline.set_state(gst::State::Playing).map_err(|e| format!("the degradation pipeline does not start: {e}"))?;
    let frame = gst::ClockTime::from_nseconds(DEFAULT_FRAME_NS);
    // Luma is the patch, chroma neutral: I420 all the way, so that no colour-range conversion
    // (GRAY8 is full range, I420 limited) ever touches the luma.
    let i420 = |side: usize| {
        gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, side as u32, side as u32)
            .build()
            .map_err(|e| format!("no I420 layout for {side}x{side}: {e}"))
    };
    let (hr, lr) = (i420(batch[0].side)?, i420(lr_side)?);
    for (i, sample) in batch.iter().enumerate() {
        let side = sample.side;
        let mut data = vec![128u8; hr.size()];
        let (y0, ys) = (hr.offset()[0], hr.stride()[0] as usize);
        for r in 0..side {
            data[y0 + r * ys..y0 + r * ys + side].copy_from_slice(&sample.pixels[r * side..(r + 1) * side]);
        }
        let mut buffer = gst::Buffer::from_mut_slice(data);
        if let Some(b) = buffer.get_mut() {
            b.set_pts(frame * i as u64);
            b.set_duration(frame);
        }
        let flow = src.emit_by_name::<gst::FlowReturn>("push-buffer", &[&buffer]);
        if flow != gst::FlowReturn::Ok {
            return Err(format!("the degradation pipeline refused a patch: {flow:?}"));
        }
    }
    let _ = src.emit_by_name::<gst::FlowReturn>("end-of-stream", &[]);
    let mut out = Vec::with_capacity(batch.len());
    while out.len() < batch.len() {
        let Some(sample) = sink.emit_by_name::<Option<gst::Sample>>("try-pull-sample", &[&(10 * gst::ClockTime::SECOND)]) else {
            let why = pipeline
                .bus()
                .and_then(|bus| bus.pop_filtered(&[gst::MessageType::Error]))
                .and_then(|m| match m.view() {
                    gst::MessageView::Error(e) => Some(e.error().to_string()),
                    _ => None,
                })
                .unwrap_or_else(|| "no frame within 10 s".into());
            return Err(format!("the degradation pipeline gave {} of {} patches: {why}", out.len(), batch.len()));
        };
        let buffer = sample.buffer().ok_or("a sample without a buffer")?;
        let map = buffer.map_readable().map_err(|_| "an unreadable buffer")?;
        // The decoder's own layout (its strides may be padded) when it says, the default otherwise.
        let meta = buffer.meta::<gst_video::VideoMeta>();
        let (y0, stride) = match &meta {
            Some(m) => (m.offset()[0], m.stride()[0] as usize),
            None => (lr.offset()[0], lr.stride()[0] as usize),
        };
        if map.len() < y0 + stride * (lr_side - 1) + lr_side {
            return Err(format!("a {}-byte frame for a {lr_side}x{lr_side} patch", map.len()));
        }
        let plane: Vec<u8> =
            (0..lr_side).flat_map(|r| map[y0 + r * stride..y0 + r * stride + lr_side].iter().copied()).collect();
        out.push(plane);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_rounds_like_the_element_and_caps_identity() {
        let truth = [10u8, 20, 30, 40];
        let exact: Vec<f32> = truth.iter().map(|&t| t as f32 / 255.0).collect();
        assert_eq!(psnr(&exact, &truth), 100.0);
        let off: Vec<f32> = truth.iter().map(|&t| (t as f32 + 1.0) / 255.0).collect();
        assert!((psnr(&off, &truth) - 48.13).abs() < 0.01, "{}", psnr(&off, &truth));
    }

    #[test]
    fn stats_compare_the_same_samples() {
        let s = ShadowStats {
            samples: 4,
            champion_psnr_sum: 120.0,
            candidate_psnr_sum: 122.0,
            champion_time: Duration::from_millis(8),
            candidate_time: Duration::from_millis(16),
            megapixels: 0.004,
            ..Default::default()
        };
        assert_eq!((s.champion_psnr(), s.candidate_psnr(), s.gain_db()), (30.0, 30.5, 0.5));
        assert_eq!((s.champion_ms_per_mpx(), s.candidate_ms_per_mpx()), (2000.0, 4000.0));
        assert_eq!(ShadowStats::default().gain_db(), 0.0);
    }
}
