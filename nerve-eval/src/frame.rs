//! Planar 8-bit I420 frames held in memory, and decoding any video GStreamer reads into them.

use std::path::Path;

use anyhow::{Context, Result, bail};
use gst::prelude::*;
use gst_video::prelude::*;

/// An I420 frame without stride padding: Y (w x h), then U and V (ceil(w/2) x ceil(h/2)).
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Frame {
    pub fn chroma_size(&self) -> (usize, usize) {
        (self.width.div_ceil(2), self.height.div_ceil(2))
    }

    pub fn new(width: usize, height: usize) -> Self {
        let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
        Self { width, height, data: vec![128; width * height + 2 * cw * ch] }
    }

    pub fn y(&self) -> &[u8] {
        &self.data[..self.width * self.height]
    }

    pub fn y_mut(&mut self) -> &mut [u8] {
        let n = self.width * self.height;
        &mut self.data[..n]
    }

    pub fn u(&self) -> &[u8] {
        let (cw, ch) = self.chroma_size();
        let n = self.width * self.height;
        &self.data[n..n + cw * ch]
    }

    pub fn v(&self) -> &[u8] {
        let (cw, ch) = self.chroma_size();
        let n = self.width * self.height + cw * ch;
        &self.data[n..n + cw * ch]
    }

    /// The top-left `width` x `height` of the frame (how a size not divisible by a rung's scale
    /// is brought to one that is, as `decode` crops).
    pub fn crop(&self, width: usize, height: usize) -> Self {
        self.region(&crate::active::Region { x: 0, y: 0, width, height })
    }

    /// The part of the frame inside `r` (even offsets, as `active::Region` has; any size), every
    /// plane.
    pub fn region(&self, r: &crate::active::Region) -> Self {
        let (width, height) = (r.width.min(self.width.saturating_sub(r.x)), r.height.min(self.height.saturating_sub(r.y)));
        let mut out = Self::new(width, height);
        let (cw, ch) = out.chroma_size();
        let (scw, sch) = self.chroma_size();
        let n = self.width * self.height;
        let planes = [
            (0, self.width, r.x, r.y, 0, width, height),
            (n, scw, r.x / 2, r.y / 2, width * height, cw, ch),
            (n + scw * sch, scw, r.x / 2, r.y / 2, width * height + cw * ch, cw, ch),
        ];
        for (src_off, src_stride, x, y, dst_off, w, h) in planes {
            for row in 0..h {
                let s = src_off + (y + row) * src_stride + x;
                let d = dst_off + row * w;
                out.data[d..d + w].copy_from_slice(&self.data[s..s + w]);
            }
        }
        out
    }

    /// Copies a mapped I420 video frame, keeping its top-left `width` x `height`.
    pub fn from_video(frame: &gst_video::VideoFrameRef<&gst::BufferRef>, width: usize, height: usize) -> Result<Self> {
        let mut out = Self::new(width, height);
        let (cw, ch) = out.chroma_size();
        let mut offset = 0;
        for (p, (w, h)) in [(width, height), (cw, ch), (cw, ch)].into_iter().enumerate() {
            let stride = frame.plane_stride()[p] as usize;
            let plane = frame.plane_data(p as u32).context("plane")?;
            for row in 0..h {
                out.data[offset..offset + w].copy_from_slice(&plane[row * stride..row * stride + w]);
                offset += w;
            }
        }
        Ok(out)
    }

    /// Writes the frame into a GStreamer buffer laid out as `info` describes.
    pub fn to_buffer(&self, info: &gst_video::VideoInfo) -> Result<gst::Buffer> {
        let buffer = gst::Buffer::with_size(info.size())?;
        let mut vf = gst_video::VideoFrame::from_buffer_writable(buffer, info).map_err(|_| anyhow::anyhow!("map"))?;
        let (cw, ch) = self.chroma_size();
        let planes = [(self.y(), self.width, self.height), (self.u(), cw, ch), (self.v(), cw, ch)];
        for (p, (src, w, h)) in planes.into_iter().enumerate() {
            let stride = vf.plane_stride()[p] as usize;
            let dst = vf.plane_data_mut(p as u32)?;
            for row in 0..h {
                dst[row * stride..row * stride + w].copy_from_slice(&src[row * w..(row + 1) * w]);
            }
        }
        Ok(vf.into_buffer())
    }
}

/// A decoded clip: frames and frame rate.
#[derive(Clone, Debug)]
pub struct Clip {
    pub frames: Vec<Frame>,
    pub fps: gst::Fraction,
}

/// Decodes up to `max_frames` frames as a player shows them on a `width` x `height` display:
/// cropped to the display's aspect ratio (pixel aspect ratio honoured, `aspectratiocrop`), then
/// scaled to the display size with Catmull-Rom (`videoscale method=catrom`; nothing is done when
/// the clip already has that size). This is the reference every rung is scored against.
pub fn decode_display(path: &Path, max_frames: usize, width: usize, height: usize) -> Result<Clip> {
    if width < 16 || height < 16 {
        bail!("display {width}x{height} is too small");
    }
    let filter = format!(
        "aspectratiocrop aspect-ratio={width}/{height} ! videoscale method=catrom ! \
         video/x-raw,format=I420,width={width},height={height},pixel-aspect-ratio=1/1"
    );
    decode_with(path, max_frames, 1, &filter)
}

/// Decodes up to `max_frames` frames of any file GStreamer can play, as I420, cropped to a
/// multiple of `multiple` in each dimension (1 keeps the size).
pub fn decode(path: &Path, max_frames: usize, multiple: usize) -> Result<Clip> {
    decode_with(path, max_frames, multiple, "video/x-raw,format=I420")
}

/// `decode` for a headerless I420 file (`.yuv`), which carries neither its size nor its rate.
pub fn decode_raw(path: &Path, width: usize, height: usize, fps: u32, max_frames: usize, multiple: usize) -> Result<Clip> {
    let source = format!("rawvideoparse format=i420 width={width} height={height} framerate={fps}/1");
    decode_from(path, &source, max_frames, multiple, "video/x-raw,format=I420")
}

/// `decode` with `filter` (a gst-launch fragment ending in I420 caps) after `videoconvert`.
fn decode_with(path: &Path, max_frames: usize, multiple: usize, filter: &str) -> Result<Clip> {
    decode_from(path, "decodebin", max_frames, multiple, filter)
}

/// Frames of `path` read by `source` (a gst-launch fragment after filesrc), then `filter`.
fn decode_from(path: &Path, source: &str, max_frames: usize, multiple: usize, filter: &str) -> Result<Clip> {
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    let desc = format!(
        "filesrc location=\"{}\" ! {source} ! videoconvert ! {filter} ! appsink name=sink sync=false",
        path.display()
    );
    let pipeline = gst::parse::launch(&desc)?.downcast::<gst::Pipeline>().map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    let sink = pipeline.by_name("sink").context("appsink")?.downcast::<gst_app::AppSink>().map_err(|_| anyhow::anyhow!("appsink"))?;
    pipeline.set_state(gst::State::Playing)?;
    let mut frames = Vec::new();
    let mut fps = gst::Fraction::new(25, 1);
    while frames.len() < max_frames {
        let Ok(sample) = sink.pull_sample() else { break };
        let caps = sample.caps().context("caps")?;
        let info = gst_video::VideoInfo::from_caps(caps)?;
        if info.fps().numer() > 0 {
            fps = info.fps();
        }
        let (w, h) = (info.width() as usize / multiple * multiple, info.height() as usize / multiple * multiple);
        let buffer = sample.buffer().context("buffer")?;
        let vf = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).map_err(|_| anyhow::anyhow!("map"))?;
        frames.push(Frame::from_video(&vf, w, h)?);
    }
    let error = pipeline.bus().and_then(|b| b.pop_filtered(&[gst::MessageType::Error]));
    pipeline.set_state(gst::State::Null)?;
    if let Some(msg) = error
        && let gst::MessageView::Error(e) = msg.view() {
            bail!("decoding {}: {}", path.display(), e.error());
        }
    if frames.is_empty() {
        bail!("{} gave no frames", path.display());
    }
    Ok(Clip { frames, fps })
}
