//! The ABR quality-table protocol: a ladder given by bitrate and resolution, each rung encoded by
//! x264 at its bitrate, then shown on a fixed display: upscaled classically (Catmull-Rom) and by
//! `nervesr` with the default model of the rung's integer scale and height (the model the element
//! would choose for that input). Every score is taken on the active picture (the clip's static
//! bars left out, [`crate::active`]): a bar's hard edge is where an upscaler gains most and a
//! viewer looks least, and a table that counted it would make the planner pay for enhancement
//! nobody sees. The result is, per content type
//! and for all content, the table `nerveabr` plans with (`nerve-abr/tables/*.json`, format
//! `nerve-abr/src/quality.rs`): displayed VMAF per rung and enhancement level, and what
//! the enhancement costs on this machine (frames per second).

use std::collections::BTreeMap;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use nerve_engine::Task;
use serde::Serialize;

use crate::active;
use crate::frame::{self, Clip, Frame};
use crate::ladder::{ClipSpec, Upscaler, score};
use crate::run::{self, RateControl};

/// `WIDTHxHEIGHT`.
pub fn parse_size(s: &str) -> Result<(usize, usize)> {
    let (w, h) = s.split_once('x').with_context(|| format!("`{s}` is not WIDTHxHEIGHT"))?;
    let w: usize = w.trim().parse().with_context(|| format!("bad width in `{s}`"))?;
    let h: usize = h.trim().parse().with_context(|| format!("bad height in `{s}`"))?;
    if w == 0 || h == 0 {
        bail!("`{s}`: sizes must be positive");
    }
    Ok((w, h))
}

/// One rung: `KBPS@WIDTHxHEIGHT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rung {
    pub kbps: u32,
    pub width: usize,
    pub height: usize,
}

impl FromStr for Rung {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let (k, size) = s.split_once('@').with_context(|| format!("rung `{s}` is not KBPS@WIDTHxHEIGHT"))?;
        let kbps: u32 = k.trim().parse().with_context(|| format!("bad bitrate in rung `{s}`"))?;
        if kbps == 0 {
            bail!("rung `{s}`: the bitrate must be positive");
        }
        let (width, height) = parse_size(size)?;
        Ok(Self { kbps, width, height })
    }
}

impl Rung {
    /// The integer upscale that brings this rung to `display`, and the display area it covers.
    /// The scale is display height / rung height (it must divide exactly); the width may fall
    /// short of the display by less than the scale (426 x 3 = 1278 of 1280), and that rung is
    /// then scored on the display's top-left `width*scale` columns, as `nerve-eval sr` crops to a
    /// multiple of its scale.
    pub fn scale_to(&self, display: (usize, usize)) -> Result<(usize, (usize, usize))> {
        let (dw, dh) = display;
        if self.height > dh || dh % self.height != 0 {
            bail!("rung {}x{}: its height does not divide the display height {dh}", self.width, self.height);
        }
        let s = dh / self.height;
        let w = self.width * s;
        if w > dw || dw - w >= s {
            bail!("rung {}x{} is not an x{s} downscale of the display {dw}x{dh} (x{s} gives {w} columns)", self.width, self.height);
        }
        Ok((s, (w, dh)))
    }
}

/// One (clip, rung, way of showing it) measurement.
#[derive(Clone, Debug, Serialize)]
pub struct TableRow {
    pub clip: String,
    pub content: String,
    /// The clip's frame rate.
    pub clip_fps: f64,
    /// The rung's nominal bitrate (what x264 was asked for).
    pub rung_kbps: u32,
    pub resolution: String,
    pub scale: usize,
    /// Bitrate x264 produced, kbit/s.
    pub kbps: f64,
    /// "bicubic" (videoscale catrom), a nervesr model name, or "none" (scale 1).
    pub upscaler: String,
    pub frames: usize,
    /// The part of the displayed frame scored, WxH+X+Y (the clip's static bars left out).
    pub active: String,
    pub psnr_y: f64,
    pub ssim: f64,
    pub vmaf: f64,
    pub vmaf_neg: f64,
    /// The same on the whole displayed frame, bars included (for comparison only).
    pub psnr_y_full: f64,
    pub vmaf_full: f64,
    /// Frames per wall-clock second through the upscaler on this machine (0 for "none").
    pub fps: f64,
    /// Frames per CPU-second (all threads of this process while the upscaler ran): what one
    /// dedicated core gives, less sensitive to other work on a shared machine.
    pub fps_cpu: f64,
}

/// The default nervesr model of `scale` for an input of `rows` rows (the name the manifest gives
/// it): what `nervesr` runs on that rung when no model is named (`default_from_rows`).
pub fn default_model(scale: usize, rows: usize) -> Result<String> {
    let m = nerve_engine::manifest::resolve_sized("", Task::SuperResolution, scale as u32, rows as u32)
        .map_err(|e| anyhow::anyhow!("no default x{scale} model for {rows} rows: {e}"))?;
    Ok(m.entry.name)
}

/// The 1-minute load average (NaN where /proc/loadavg is missing).
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn fps_of(clip: &Clip) -> f64 {
    clip.fps.numer() as f64 / clip.fps.denom().max(1) as f64
}

/// Measures every rung of `rungs` on one clip shown on `display`. `progress` is called after
/// each measurement.
pub fn evaluate_clip(
    clip: &ClipSpec,
    display: (usize, usize),
    rungs: &[Rung],
    max_frames: usize,
    mut progress: impl FnMut(&str),
) -> Result<Vec<TableRow>> {
    let plan: Vec<(Rung, usize, (usize, usize))> = rungs
        .iter()
        .map(|r| r.scale_to(display).map(|(s, area)| (*r, s, area)))
        .collect::<Result<_>>()?;
    let reference = frame::decode_display(&clip.path, max_frames, display.0, display.1)?;
    let name = clip.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut rows = Vec::new();
    for (rung, s, (aw, ah)) in plan {
        let shown = run::clip_of(reference.frames.iter().map(|f| f.crop(aw, ah)).collect(), reference.fps);
        let (low, kbps) = run::encode_rung(&shown, (rung.width, rung.height), RateControl::Bitrate(rung.kbps))?;
        let region = active::active_picture(&shown.frames);
        let whole = region.is_whole(&shown.frames[0]);
        let active_ref: Vec<Frame> = shown.frames.iter().map(|f| f.region(&region)).collect();
        let row = |upscaler: String, out: &[Frame], fps: f64, fps_cpu: f64| -> Result<TableRow> {
            let active_out: Vec<Frame> = out.iter().map(|f| f.region(&region)).collect();
            let sc = score(&active_ref, &active_out)?;
            // The whole frame scored again only where bars were cut (VMAF is the slow part).
            let full = if whole { None } else { Some(score(&shown.frames, out)?) };
            Ok(TableRow {
                clip: name.clone(),
                content: clip.content.clone(),
                clip_fps: fps_of(&reference),
                rung_kbps: rung.kbps,
                resolution: format!("{}x{}", rung.width, rung.height),
                scale: s,
                kbps,
                upscaler,
                frames: out.len(),
                active: region.to_string(),
                psnr_y: sc.psnr_y,
                ssim: sc.ssim,
                vmaf: sc.vmaf,
                vmaf_neg: sc.vmaf_neg,
                psnr_y_full: full.as_ref().map_or(sc.psnr_y, |f| f.psnr_y),
                vmaf_full: full.as_ref().map_or(sc.vmaf, |f| f.vmaf),
                fps,
                fps_cpu,
            })
        };
        if s == 1 {
            rows.push(row("none".into(), &low, 0.0, 0.0)?);
            progress(&format!("{name} {} kbit/s", rung.kbps));
            continue;
        }
        let low = run::clip_of(low, reference.fps);
        let model = default_model(s, rung.height)?;
        let ups = [
            Upscaler::classical("catrom"),
            Upscaler { name: model.clone(), filter: format!("nervesr scale={s} model=\"{model}\"") },
        ];
        for up in ups {
            let filter = up.filter.replace("{w}", &aw.to_string()).replace("{h}", &ah.to_string());
            let (out, took, cpu) = run::through_timed(&low, &filter)?;
            let n = out.len() as f64;
            rows.push(row(up.name.clone(), &out, n / took.as_secs_f64(), n / cpu.as_secs_f64().max(1e-3))?);
            progress(&format!("{name} {} kbit/s {}", rung.kbps, up.name));
        }
    }
    Ok(rows)
}

/// A table file, the format of `nerve-abr/src/quality.rs` (`TableFile`); the extra
/// metrics are read there as optional fields.
#[derive(Clone, Debug, Serialize)]
pub struct TableFile {
    pub name: String,
    pub method: String,
    pub content: String,
    pub device: String,
    pub frame_rate: f64,
    pub chunk_s: f64,
    pub rungs: Vec<RungRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RungRow {
    pub bitrate_kbps: f64,
    pub resolution: String,
    /// Displayed VMAF, classical upscale (Catmull-Rom) or none at scale 1.
    pub vmaf: f64,
    pub vmaf_neg: f64,
    pub psnr_y: f64,
    /// Mean bitrate x264 produced for this rung over the clips.
    pub measured_kbps: f64,
    pub levels: Vec<LevelRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LevelRow {
    pub name: String,
    pub vmaf: f64,
    pub vmaf_neg: f64,
    pub psnr_y: f64,
    /// Frames per wall-clock second nervesr ran at on this machine for this rung.
    pub fps: f64,
    /// Frames per CPU-second (see `TableRow::fps_cpu`).
    pub fps_cpu: f64,
}

fn mean(rows: &[&TableRow], f: impl Fn(&TableRow) -> f64) -> f64 {
    let v: Vec<f64> = rows.iter().map(|r| f(r)).collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// What the tables are made of besides the rows.
pub struct TableMeta<'a> {
    pub prefix: &'a str,
    pub method: &'a str,
    pub device: &'a str,
    pub chunk_s: f64,
}

/// One table per content type found in `rows` and a "generic" one over all of them (each clip
/// weighs the same), rungs in `rungs` order.
pub fn tables(rows: &[TableRow], rungs: &[Rung], meta: &TableMeta) -> Result<Vec<TableFile>> {
    let mut contents: Vec<String> = rows.iter().map(|r| r.content.clone()).collect();
    contents.sort();
    contents.dedup();
    let mut groups: BTreeMap<String, Vec<&TableRow>> = BTreeMap::new();
    for c in &contents {
        groups.insert(c.clone(), rows.iter().filter(|r| &r.content == c).collect());
    }
    if contents.len() > 1 || !contents.iter().any(|c| c == "generic") {
        groups.insert("generic".into(), rows.iter().collect());
    }
    let mut out = Vec::new();
    for (content, group) in groups {
        let mut table_rungs = Vec::new();
        for rung in rungs {
            let resolution = format!("{}x{}", rung.width, rung.height);
            let of = |up: &str| -> Vec<&TableRow> {
                group.iter().copied().filter(|r| r.rung_kbps == rung.kbps && r.resolution == resolution && r.upscaler == up).collect()
            };
            let base_name = if group.iter().any(|r| r.rung_kbps == rung.kbps && r.upscaler == "none") { "none" } else { "bicubic" };
            if of(base_name).is_empty() {
                bail!("no measurement of rung {}@{resolution} for {content}", rung.kbps);
            }
            let mut models: Vec<String> = group
                .iter()
                .filter(|r| r.rung_kbps == rung.kbps && r.upscaler != "none" && r.upscaler != "bicubic")
                .map(|r| r.upscaler.clone())
                .collect();
            models.sort();
            models.dedup();
            let levels = models
                .iter()
                .map(|m| LevelRow {
                    name: m.clone(),
                    vmaf: round2(mean(&of(m), |r| r.vmaf)),
                    vmaf_neg: round2(mean(&of(m), |r| r.vmaf_neg)),
                    psnr_y: round2(mean(&of(m), |r| r.psnr_y)),
                    fps: round2(mean(&of(m), |r| r.fps)),
                    fps_cpu: round2(mean(&of(m), |r| r.fps_cpu)),
                })
                .collect();
            table_rungs.push(RungRow {
                bitrate_kbps: rung.kbps as f64,
                resolution: resolution.clone(),
                vmaf: round2(mean(&of(base_name), |r| r.vmaf)),
                vmaf_neg: round2(mean(&of(base_name), |r| r.vmaf_neg)),
                psnr_y: round2(mean(&of(base_name), |r| r.psnr_y)),
                measured_kbps: round2(mean(&of(base_name), |r| r.kbps)),
                levels,
            });
        }
        let shown: Vec<&TableRow> = group.iter().copied().filter(|r| r.upscaler == "bicubic" || r.upscaler == "none").collect();
        let frame_rate = round2(mean(&shown, |r| r.clip_fps));
        out.push(TableFile {
            name: format!("{}_{content}_nervesr", meta.prefix),
            method: meta.method.to_string(),
            content,
            device: meta.device.to_string(),
            frame_rate,
            chunk_s: meta.chunk_s,
            rungs: table_rungs,
        });
    }
    Ok(out)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// This machine's CPU as /proc/cpuinfo names it, and its logical core count.
pub fn cpu_name() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{model}, {cores} logical cores")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rungs_parse_and_scale_to_the_display() {
        let r: Rung = "750@426x240".parse().unwrap();
        assert_eq!(r, Rung { kbps: 750, width: 426, height: 240 });
        assert_eq!(r.scale_to((1280, 720)).unwrap(), (3, (1278, 720)));
        let r: Rung = "300@320x180".parse().unwrap();
        assert_eq!(r.scale_to((1280, 720)).unwrap(), (4, (1280, 720)));
        assert_eq!("4300@1280x720".parse::<Rung>().unwrap().scale_to((1280, 720)).unwrap(), (1, (1280, 720)));
        // not an integer scale, or the width does not follow the height
        assert!("500@480x270".parse::<Rung>().unwrap().scale_to((1280, 720)).is_err());
        assert!("500@400x240".parse::<Rung>().unwrap().scale_to((1280, 720)).is_err());
        assert!("x@1x1".parse::<Rung>().is_err());
        assert!("300@320".parse::<Rung>().is_err());
        assert!("0@320x180".parse::<Rung>().is_err());
    }
}
