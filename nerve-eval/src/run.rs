//! Pushing in-memory frames through a GStreamer pipeline fragment and collecting what comes out.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use gst::prelude::*;

use crate::frame::{Clip, Frame};

fn caps_of(clip: &Clip) -> Result<(gst_video::VideoInfo, String)> {
    let first = clip.frames.first().context("no frames")?;
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, first.width as u32, first.height as u32)
        .fps(clip.fps)
        .build()?;
    let caps = info.to_caps()?.to_string();
    Ok((info, caps))
}

fn push_all(src: &gst_app::AppSrc, clip: &Clip, info: &gst_video::VideoInfo) -> Result<()> {
    let frame_ns = 1_000_000_000u64 * clip.fps.denom().max(1) as u64 / clip.fps.numer().max(1) as u64;
    for (i, f) in clip.frames.iter().enumerate() {
        let mut b = f.to_buffer(info)?;
        let bm = b.get_mut().context("fresh buffer")?;
        bm.set_pts(gst::ClockTime::from_nseconds(i as u64 * frame_ns));
        bm.set_duration(gst::ClockTime::from_nseconds(frame_ns));
        src.push_buffer(b)?;
    }
    src.end_of_stream()?;
    Ok(())
}

fn pipeline(desc: &str) -> Result<(gst::Pipeline, gst_app::AppSrc)> {
    let p = gst::parse::launch(desc)
        .with_context(|| format!("cannot build `{desc}`"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    let src = p.by_name("src").context("appsrc")?.downcast::<gst_app::AppSrc>().map_err(|_| anyhow::anyhow!("appsrc"))?;
    src.set_max_bytes(0);
    Ok((p, src))
}

fn sink(p: &gst::Pipeline, name: &str) -> Result<gst_app::AppSink> {
    p.by_name(name).context("appsink")?.downcast::<gst_app::AppSink>().map_err(|_| anyhow::anyhow!("appsink"))
}

fn finish(p: &gst::Pipeline, what: &str) -> Result<()> {
    let bus = p.bus().context("bus")?;
    let msg = bus.timed_pop_filtered(gst::ClockTime::NONE, &[gst::MessageType::Eos, gst::MessageType::Error]);
    p.set_state(gst::State::Null)?;
    if let Some(msg) = msg
        && let gst::MessageView::Error(e) = msg.view() {
            bail!("{what}: {} ({:?})", e.error(), e.debug());
        }
    Ok(())
}

fn collect(sink: &gst_app::AppSink) -> Result<Vec<Frame>> {
    let mut out = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let info = gst_video::VideoInfo::from_caps(sample.caps().context("caps")?)?;
        let buffer = sample.buffer().context("buffer")?;
        let vf = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).map_err(|_| anyhow::anyhow!("map"))?;
        out.push(Frame::from_video(&vf, info.width() as usize, info.height() as usize)?);
    }
    Ok(out)
}

/// Runs the clip through `filter` (a gst-launch fragment producing video/x-raw) and returns the
/// I420 output frames and the wall time from the first push to EOS.
pub fn through(clip: &Clip, filter: &str) -> Result<(Vec<Frame>, Duration)> {
    through_timed(clip, filter).map(|(f, t, _)| (f, t))
}

/// CPU time (user + system) this process has used so far, all threads.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct we hand it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// `through`, also returning the CPU time the process spent meanwhile (all threads): on a machine
/// shared with other work, frames per CPU-second is steadier than frames per wall-clock second.
pub fn through_timed(clip: &Clip, filter: &str) -> Result<(Vec<Frame>, Duration, Duration)> {
    let cpu0 = cpu_time();
    let (info, caps) = caps_of(clip)?;
    let desc = format!(
        "appsrc name=src format=time caps=\"{caps}\" ! {filter} ! videoconvert ! video/x-raw,format=I420 ! appsink name=sink sync=false"
    );
    let (p, src) = pipeline(&desc)?;
    let out_sink = sink(&p, "sink")?;
    p.set_state(gst::State::Playing)?;
    let started = Instant::now();
    push_all(&src, clip, &info)?;
    let frames = collect(&out_sink)?;
    let took = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu0);
    finish(&p, filter)?;
    if frames.len() != clip.frames.len() {
        bail!("`{filter}` gave {} frames for {}", frames.len(), clip.frames.len());
    }
    Ok((frames, took, cpu))
}

/// How x264 spends bits on a rung.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RateControl {
    /// Constant quantizer `crf` (`pass=qual`): the CRF protocol of `nerve-eval sr`.
    Quality(u32),
    /// Average bitrate in kbit/s with x264enc's default VBV (`pass=cbr`, 600 ms buffer), as a
    /// streaming ladder encodes a rung of a fixed bitrate.
    Bitrate(u32),
}

impl RateControl {
    fn x264(self) -> String {
        match self {
            RateControl::Quality(crf) => format!("pass=qual quantizer={crf}"),
            RateControl::Bitrate(kbps) => format!("pass=cbr bitrate={kbps}"),
        }
    }
}

/// The low rung a streaming service sends: downscale by `scale` (Catmull-Rom bicubic), encode
/// with x264 at constant quality `crf` (preset medium), decode. Returns the decoded frames and
/// the stream's bitrate in kbit/s.
pub fn low_rung(clip: &Clip, scale: usize, crf: u32) -> Result<(Vec<Frame>, f64)> {
    let first = clip.frames.first().context("no frames")?;
    encode_rung(clip, (first.width / scale, first.height / scale), RateControl::Quality(crf))
}

/// A rung of `size` (width, height): downscale (Catmull-Rom bicubic; nothing when the size is
/// the clip's), encode with x264 (preset medium) under `rate`, decode. Returns the decoded frames
/// and the stream's measured bitrate in kbit/s.
pub fn encode_rung(clip: &Clip, size: (usize, usize), rate: RateControl) -> Result<(Vec<Frame>, f64)> {
    let (info, caps) = caps_of(clip)?;
    let (w, h) = size;
    if w < 16 || h < 16 || w > info.width() as usize || h > info.height() as usize {
        bail!("rung size {w}x{h} must be at least 16x16 and no larger than the clip ({}x{})", info.width(), info.height());
    }
    let desc = format!(
        "appsrc name=src format=time caps=\"{caps}\" ! videoscale method=catrom ! video/x-raw,width={w},height={h} ! \
         x264enc {} speed-preset=medium ! tee name=t ! queue ! appsink name=bits sync=false \
         t. ! queue ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=I420 ! appsink name=sink sync=false",
        rate.x264()
    );
    let (p, src) = pipeline(&desc)?;
    let (bits, frames_sink) = (sink(&p, "bits")?, sink(&p, "sink")?);
    p.set_state(gst::State::Playing)?;
    push_all(&src, clip, &info)?;
    let frames = collect(&frames_sink)?;
    let mut bytes = 0usize;
    while let Ok(s) = bits.pull_sample() {
        bytes += s.buffer().map(|b| b.size()).unwrap_or(0);
    }
    finish(&p, "x264 rung")?;
    let seconds = clip.frames.len() as f64 * clip.fps.denom() as f64 / clip.fps.numer() as f64;
    Ok((frames, bytes as f64 * 8.0 / 1000.0 / seconds))
}

/// The same frames with a new frame sequence: used to feed decoded rungs on.
pub fn clip_of(frames: Vec<Frame>, fps: gst::Fraction) -> Clip {
    Clip { frames, fps }
}
