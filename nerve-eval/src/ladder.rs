//! The streaming ladder protocol: reference -> downscale + x264 -> decode -> upscale (classical
//! scalers and nervesr with each model) -> PSNR-Y, SSIM, VMAF, VMAF NEG and frames per second.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use crate::frame::{self, Frame};
use crate::{metrics, run, vmaf};

/// A way back up to the reference size.
#[derive(Clone, Debug)]
pub struct Upscaler {
    pub name: String,
    /// gst-launch fragment; `{w}` and `{h}` are the output size.
    pub filter: String,
}

impl Upscaler {
    pub fn classical(method: &str) -> Self {
        Self {
            name: if method == "catrom" { "bicubic".into() } else { method.into() },
            filter: format!("videoscale method={method} ! video/x-raw,width={{w}},height={{h}}"),
        }
    }

    pub fn nervesr(model: &str, scale: usize) -> Self {
        let shown = if model.is_empty() { "default" } else { model };
        Self { name: format!("nervesr:{shown}"), filter: format!("nervesr scale={scale} model=\"{model}\"") }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub clip: String,
    pub content: String,
    pub crf: u32,
    pub kbps: f64,
    pub upscaler: String,
    pub frames: usize,
    pub psnr_y: f64,
    pub ssim: f64,
    pub vmaf: f64,
    pub vmaf_neg: f64,
    pub fps: f64,
}

#[derive(Clone, Debug)]
pub struct ClipSpec {
    pub path: PathBuf,
    pub content: String,
}

pub struct Scores {
    pub psnr_y: f64,
    pub ssim: f64,
    pub vmaf: f64,
    pub vmaf_neg: f64,
}

pub fn score(reference: &[Frame], distorted: &[Frame]) -> Result<Scores> {
    let (vmaf, vmaf_neg) = vmaf::vmaf(reference, distorted)?;
    Ok(Scores { psnr_y: metrics::psnr_y(reference, distorted), ssim: metrics::ssim_y(reference, distorted), vmaf, vmaf_neg })
}

/// Runs every (crf, upscaler) pair on one clip. `progress` is called after each pair.
pub fn evaluate_clip(
    clip: &ClipSpec,
    scale: usize,
    crfs: &[u32],
    upscalers: &[Upscaler],
    max_frames: usize,
    mut progress: impl FnMut(&str),
) -> Result<Vec<Row>> {
    let reference = frame::decode(&clip.path, max_frames, 2 * scale)?;
    let (w, h) = (reference.frames[0].width, reference.frames[0].height);
    let name = clip.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut rows = Vec::new();
    for &crf in crfs {
        let (low, kbps) = run::low_rung(&reference, scale, crf)?;
        let low = run::clip_of(low, reference.fps);
        for up in upscalers {
            let filter = up.filter.replace("{w}", &w.to_string()).replace("{h}", &h.to_string());
            let (out, took) = run::through(&low, &filter)?;
            let s = score(&reference.frames, &out)?;
            rows.push(Row {
                clip: name.clone(),
                content: clip.content.clone(),
                crf,
                kbps,
                upscaler: up.name.clone(),
                frames: out.len(),
                psnr_y: s.psnr_y,
                ssim: s.ssim,
                vmaf: s.vmaf,
                vmaf_neg: s.vmaf_neg,
                fps: out.len() as f64 / took.as_secs_f64(),
            });
            progress(&format!("{name} crf {crf} {}", up.name));
        }
    }
    Ok(rows)
}

/// Mean of each metric per (crf, upscaler), and the gain over the bicubic row of the same crf.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub crf: u32,
    pub upscaler: String,
    pub psnr_y: f64,
    pub ssim: f64,
    pub vmaf: f64,
    pub vmaf_neg: f64,
    pub fps: f64,
    pub d_psnr_y: f64,
    pub d_vmaf: f64,
    pub d_vmaf_neg: f64,
}

pub fn summarise(rows: &[Row]) -> Vec<Summary> {
    let mut keys: Vec<(u32, String)> = rows.iter().map(|r| (r.crf, r.upscaler.clone())).collect();
    keys.dedup();
    keys.sort();
    keys.dedup();
    let mean = |crf: u32, up: &str, f: &dyn Fn(&Row) -> f64| {
        let v: Vec<f64> = rows.iter().filter(|r| r.crf == crf && r.upscaler == up).map(f).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    keys.iter()
        .map(|(crf, up)| {
            let m = |f: &dyn Fn(&Row) -> f64| mean(*crf, up, f);
            let b = |f: &dyn Fn(&Row) -> f64| mean(*crf, "bicubic", f);
            Summary {
                crf: *crf,
                upscaler: up.clone(),
                psnr_y: m(&|r| r.psnr_y),
                ssim: m(&|r| r.ssim),
                vmaf: m(&|r| r.vmaf),
                vmaf_neg: m(&|r| r.vmaf_neg),
                fps: m(&|r| r.fps),
                d_psnr_y: m(&|r| r.psnr_y) - b(&|r| r.psnr_y),
                d_vmaf: m(&|r| r.vmaf) - b(&|r| r.vmaf),
                d_vmaf_neg: m(&|r| r.vmaf_neg) - b(&|r| r.vmaf_neg),
            }
        })
        .collect()
}
