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

/// One of the models issue's targets as this run measures it.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub name: String,
    pub measured: String,
    pub met: bool,
}

impl std::fmt::Display for Target {
    /// The line a run prints for it: "target <name>: met|NOT met (<measured>)".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "target {}: {} ({})", self.name, if self.met { "met" } else { "NOT met" }, self.measured)
    }
}

/// The targets a ladder run can judge: the default x2 model at CRF 23 (+4 VMAF and +0.5 dB
/// PSNR-Y over bicubic), and every int8 model run beside its float parent (at most 0.1 dB PSNR-Y
/// lost at each CRF; its frames per second against the parent's are reported, not judged: they
/// are the whole pipeline's, and the target is the model's, which the model card measures).
pub fn targets(summary: &[Summary], scale: usize) -> Vec<Target> {
    let row = |crf: u32, up: &str| summary.iter().find(|s| s.crf == crf && s.upscaler == up);
    let mut out = Vec::new();
    if let (2, Some(d)) = (scale, row(23, "nervesr:default")) {
        out.push(Target {
            name: "x2 default model at CRF 23: >= +4 VMAF and >= +0.5 dB PSNR-Y over bicubic".into(),
            measured: format!("{:+.2} VMAF, {:+.2} dB", d.d_vmaf, d.d_psnr_y),
            met: d.d_vmaf >= 4.0 && d.d_psnr_y >= 0.5,
        });
    }
    let mut int8: Vec<&str> = summary.iter().filter_map(|s| s.upscaler.strip_suffix("-int8")).collect();
    int8.sort();
    int8.dedup();
    for parent in int8 {
        let pairs: Vec<(&Summary, &Summary)> = summary
            .iter()
            .filter(|s| s.upscaler == parent)
            .filter_map(|f| row(f.crf, &format!("{parent}-int8")).map(|q| (f, q)))
            .collect();
        if pairs.is_empty() {
            continue;
        }
        let lost: Vec<String> = pairs.iter().map(|(f, q)| format!("{:.2}", f.psnr_y - q.psnr_y)).collect();
        let speed: Vec<String> = pairs.iter().map(|(f, q)| format!("{:.2}x", q.fps / f.fps.max(1e-9))).collect();
        out.push(Target {
            name: format!("{}-int8: at most 0.1 dB PSNR-Y lost against the float model", parent.trim_start_matches("nervesr:")),
            measured: format!(
                "{} dB lost at CRF {}; {} the float model's fps in this run (whole pipeline)",
                lost.join(" / "),
                pairs.iter().map(|(f, _)| f.crf.to_string()).collect::<Vec<_>>().join(" / "),
                speed.join(" / ")
            ),
            met: pairs.iter().all(|(f, q)| f.psnr_y - q.psnr_y <= 0.1),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(crf: u32, upscaler: &str, psnr_y: f64, d_psnr_y: f64, d_vmaf: f64, fps: f64) -> Summary {
        let (ssim, vmaf, vmaf_neg, d_vmaf_neg) = (0.9, 80.0, 78.0, 5.0);
        Summary { crf, upscaler: upscaler.into(), psnr_y, ssim, vmaf, vmaf_neg, fps, d_psnr_y, d_vmaf, d_vmaf_neg }
    }

    #[test]
    fn targets_judge_the_default_gain_and_each_int8_loss() {
        let rows = [
            summary(23, "bicubic", 32.0, 0.0, 0.0, 2000.0),
            summary(23, "nervesr:default", 33.5, 1.5, 8.3, 130.0),
            summary(23, "nervesr:m", 34.00, 2.0, 7.0, 100.0),
            summary(23, "nervesr:m-int8", 33.95, 1.95, 7.0, 200.0),
            summary(23, "nervesr:n", 34.00, 2.0, 7.0, 100.0),
            summary(23, "nervesr:n-int8", 33.99, 1.99, 7.0, 150.0),
            summary(33, "nervesr:m", 30.00, 0.9, 6.0, 100.0),
            summary(33, "nervesr:m-int8", 29.80, 0.7, 6.0, 200.0),
            summary(33, "nervesr:n", 30.00, 0.9, 6.0, 100.0),
            summary(33, "nervesr:n-int8", 29.99, 0.89, 6.0, 150.0),
        ];
        // One line per int8 model, whatever order the CRFs come in.
        let t = targets(&rows, 2);
        assert_eq!(t.len(), 3, "{t:?}");
        assert!(t[2].met && t[2].name.starts_with("n-int8") && t[2].measured.contains("1.50x / 1.50x"), "{:?}", t[2]);
        assert!(t[0].met && t[0].measured.contains("+8.30 VMAF"));
        // 0.20 dB lost at CRF 33 fails the int8 target even though CRF 23 passes.
        assert!(!t[1].met && t[1].measured.contains("0.05 / 0.20 dB") && t[1].measured.contains("2.00x"), "{:?}", t[1]);
        // A default that gains too little VMAF misses; x4 runs judge no x2 target.
        let weak = [summary(23, "nervesr:default", 33.5, 1.5, 3.9, 130.0)];
        assert!(!targets(&weak, 2)[0].met);
        assert!(targets(&weak, 4).is_empty());
    }
}
