//! The lost-packet protocol: each clip goes through the RTP loss pipeline at each loss rate and
//! what a viewer sees is scored against the original:
//! - `decoder`: the decoder's output as a player shows it (a frame that never came out leaves
//!   the previous one on screen),
//! - `freeze`: freeze on the last good frame (only frames intact since the last IDR are shown),
//! - `nerverecover` in `low-latency` and `lookahead` mode, fed the same decoder output,
//! - the same three after `nervesalvage` (the same lost packets; a slice that lost a later
//!   fragment reaches the decoder as the prefix that arrived): `nervesalvage + decoder` shows
//!   what salvaging alone gives, the two `nervesalvage + nerverecover` rows the whole receiver,
//! - `receivable (bound)`: not a method but the room they have, [`loss::receivable`]: the
//!   lossless decode except where the stream's first IDR frame lost content no packet ever
//!   carried again (there the salvaging decoder's guess).
//!
//! The damage detector is scored too: its blocks against the blocks where the lossy decode
//! differs from the lossless decode of the same packets.


use anyhow::Result;
use gstnerve::recover::detect::{Chroma, Detector, Picture, Plane};
use serde::Serialize;

use crate::frame::{self, Frame};
use crate::ladder::Target;
use crate::loss::{self, LossConfig, Receiver};
use crate::{active, metrics, vmaf};

/// The methods compared, in table order.
pub const METHODS: [&str; 8] = ["decoder", "freeze", MODES[0], MODES[1], SALVAGED, SALVAGED_MODES[0], SALVAGED_MODES[1], BOUND];

/// The bound's row name.
pub const BOUND: &str = "receivable (bound)";

/// The element's two modes after the plain receiver.
pub const MODES: [&str; 2] = ["nerverecover low-latency", "nerverecover lookahead"];

/// The decoder after the salvaging receiver, without nerverecover.
pub const SALVAGED: &str = "nervesalvage + decoder";

/// The element's two modes after the salvaging receiver.
pub const SALVAGED_MODES: [&str; 2] = ["nervesalvage + nerverecover low-latency", "nervesalvage + nerverecover lookahead"];

/// The methods the targets judge: nerverecover alone, and the whole nerve receiver.
pub const JUDGED: [&str; 4] = [MODES[0], MODES[1], SALVAGED_MODES[0], SALVAGED_MODES[1]];

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub clip: String,
    pub content: String,
    pub loss: f64,
    pub seed: u64,
    pub method: String,
    pub frames: usize,
    /// Scored on the active picture (the clip's static bars left out: `active`, WxH+X+Y); the
    /// `*_full` figures on the whole frame, bars included.
    pub psnr_y: f64,
    pub vmaf: f64,
    pub active: String,
    pub psnr_y_full: f64,
    pub vmaf_full: f64,
    /// Packets lost / sent in this run.
    pub dropped: u64,
    pub packets: u64,
    /// Which repeat of the same clip, loss rate and seed (`--repeats`: the same packets lost,
    /// decoded again; a frame-threaded decoder conceals them differently each time).
    pub repeat: u32,
}

/// Detector precision and recall over the frames the decoder produced.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DetectorScore {
    pub loss: f64,
    pub true_positive: u64,
    pub false_positive: u64,
    pub false_negative: u64,
}

impl DetectorScore {
    pub fn precision(&self) -> f64 {
        self.true_positive as f64 / (self.true_positive + self.false_positive).max(1) as f64
    }

    pub fn recall(&self) -> f64 {
        self.true_positive as f64 / (self.true_positive + self.false_negative).max(1) as f64
    }
}

/// A block is damaged when the lossy decode differs from the lossless one by more than this
/// mean absolute luma difference (compression noise is identical in both: they decode the same
/// packets).
const DAMAGE_MAD: f64 = 4.0;

/// A clip to stream: the ladder protocol's (path, content, source, raw size).
pub use crate::ladder::ClipSpec;

/// The filter each nerverecover branch runs, after which receiver: both modes after the plain
/// receiver, then both after the salvaging one.
pub fn branches(model: &str) -> Vec<(Receiver, String)> {
    let model = if model.is_empty() { String::new() } else { format!(" model=\"{model}\"") };
    [Receiver::Plain, Receiver::Salvaging]
        .into_iter()
        .flat_map(|r| {
            ["low-latency", "lookahead"].map(|mode| (r, format!("nerverecover mode={mode} stats-interval=0{model}")))
        })
        .collect()
}

/// The sender settings for a clip: about 0.1 bit per pixel (640x360 at 30 fps: 690 kbit/s) and
/// an IDR frame every two seconds.
pub fn config_for(clip: &frame::Clip, loss: f64, seed: u64, decoder: &str) -> LossConfig {
    let (w, h) = clip.frames.first().map(|f| (f.width, f.height)).unwrap_or((640, 360));
    let fps = clip.fps.numer() as f64 / clip.fps.denom().max(1) as f64;
    LossConfig {
        loss,
        seed,
        bitrate_kbps: ((w * h) as f64 * fps * 0.1 / 1000.0).round().max(100.0) as u32,
        slices: 4,
        mtu: 1200,
        keyint: (2.0 * fps).round().max(1.0) as u32,
        decoder: decoder.into(),
    }
}

/// The decoder's worst frame of one run (lowest PSNR-Y against the original), as the original
/// and each method in [`METHODS`] show it: what `--plot` draws beside the curves.
#[derive(Debug, Clone)]
pub struct Example {
    pub clip: String,
    pub loss: f64,
    pub seed: u64,
    pub frame: usize,
    /// The original, then one frame per method.
    pub views: Vec<Frame>,
}

/// What stays the same across the runs of one `nerve-eval recover`.
pub struct Setup<'a> {
    /// nerverecover's `model` (empty: the default).
    pub model: &'a str,
    /// The decoder element and its settings.
    pub decoder: &'a str,
    pub with_vmaf: bool,
}

/// Runs one clip at one loss rate; returns the rows (one per method), the detector's score and
/// the run's example frame.
pub fn evaluate(
    spec: &ClipSpec,
    clip: &frame::Clip,
    loss_rate: f64,
    seed: u64,
    repeat: u32,
    setup: &Setup,
) -> Result<(Vec<Row>, DetectorScore, Example)> {
    let cfg = config_for(clip, loss_rate, seed, setup.decoder);
    let run = loss::run(clip, &cfg, &branches(setup.model))?;
    let (w, h) = (clip.frames[0].width, clip.frames[0].height);
    let salvaged = loss::held(&run.salvaged, w, h);
    let bound = loss::receivable(&run, &salvaged, w, h);
    let shown: Vec<Vec<Frame>> = vec![
        loss::held(&run.lossy, w, h),
        loss::frozen(&run, w, h),
        loss::held(&run.extra[0], w, h),
        loss::held(&run.extra[1], w, h),
        salvaged,
        loss::held(&run.extra[2], w, h),
        loss::held(&run.extra[3], w, h),
        bound,
    ];
    let clip_name = spec.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let worst = (0..clip.frames.len().min(shown[0].len()))
        .map(|i| (i, metrics::psnr(clip.frames[i].y(), shown[0][i].y())))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0, |(i, _)| i);
    let example = Example {
        clip: clip_name.clone(),
        loss: loss_rate,
        seed,
        frame: worst,
        views: std::iter::once(&clip.frames).chain(&shown).filter_map(|f| f.get(worst).cloned()).collect(),
    };
    let region = active::active_picture(&clip.frames);
    let whole = region.is_whole(&clip.frames[0]);
    let active_ref: Vec<Frame> = clip.frames.iter().map(|f| f.region(&region)).collect();
    let mut rows = Vec::new();
    for (method, frames) in METHODS.iter().zip(&shown) {
        let active_frames: Vec<Frame> = frames.iter().map(|f| f.region(&region)).collect();
        let psnr_y = metrics::psnr_y(&active_ref, &active_frames);
        let vmaf = if setup.with_vmaf { vmaf::vmaf(&active_ref, &active_frames)?.0 } else { f64::NAN };
        let psnr_y_full = if whole { psnr_y } else { metrics::psnr_y(&clip.frames, frames) };
        let vmaf_full = if whole || !setup.with_vmaf { vmaf } else { vmaf::vmaf(&clip.frames, frames)?.0 };
        rows.push(Row {
            active: region.to_string(),
            psnr_y_full,
            vmaf_full,
            clip: clip_name.clone(),
            content: spec.content.clone(),
            loss: loss_rate,
            seed,
            method: method.to_string(),
            frames: frames.len(),
            psnr_y,
            vmaf,
            dropped: run.dropped,
            packets: run.packets,
            repeat,
        });
    }
    Ok((rows, score_detector(&run, &shown[2], loss_rate), example))
}

/// An I420 frame as the detector reads it.
fn picture(f: &Frame) -> Picture<'_> {
    Picture { y: Plane { data: f.y(), stride: f.width }, chroma: Some(Chroma { u: f.u(), v: f.v(), stride: f.width.div_ceil(2), step: 1 }) }
}

/// Runs a fresh detector over the decoder's frames, each against the frame the low-latency
/// element showed before it, and compares with the true damage.
fn score_detector(run: &loss::LossRun, shown: &[Frame], loss_rate: f64) -> DetectorScore {
    let mut score = DetectorScore { loss: loss_rate, ..DetectorScore::default() };
    let Some(first) = run.lossy.frames.iter().flatten().next() else { return score };
    let (w, h) = (first.width, first.height);
    let mut det = Detector::new(w, h);
    for (i, (lossy, clean)) in run.lossy.frames.iter().zip(&run.clean.frames).enumerate() {
        let (Some(lossy), Some(clean)) = (lossy, clean) else { continue };
        let prev = i.checked_sub(1).and_then(|p| shown.get(p)).map(picture);
        let mask = det.detect(picture(lossy), prev).to_vec();
        for (b, &flagged) in mask.iter().enumerate() {
            let (x, y, bw, bh) = det.rect(b);
            let mut sum = 0u64;
            for row in y..y + bh {
                let (a, c) = (&lossy.y()[row * w + x..row * w + x + bw], &clean.y()[row * w + x..row * w + x + bw]);
                sum += a.iter().zip(c).map(|(&p, &q)| p.abs_diff(q) as u64).sum::<u64>();
            }
            let damaged = sum as f64 / (bw * bh) as f64 > DAMAGE_MAD;
            match (flagged, damaged) {
                (true, true) => score.true_positive += 1,
                (true, false) => score.false_positive += 1,
                (false, true) => score.false_negative += 1,
                _ => {}
            }
        }
    }
    score
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Summary {
    pub loss: f64,
    pub method: String,
    pub psnr_y: f64,
    pub vmaf: f64,
}

/// Mean over clips (and seeds) per loss rate and method.
pub fn summarise(rows: &[Row]) -> Vec<Summary> {
    let mut losses: Vec<f64> = rows.iter().map(|r| r.loss).collect();
    losses.sort_by(f64::total_cmp);
    losses.dedup();
    let mut out = Vec::new();
    for loss in losses {
        for method in METHODS {
            let mine: Vec<&Row> = rows.iter().filter(|r| r.loss == loss && r.method == method).collect();
            if mine.is_empty() {
                continue;
            }
            let n = mine.len() as f64;
            out.push(Summary {
                loss,
                method: method.to_string(),
                psnr_y: mine.iter().map(|r| r.psnr_y).sum::<f64>() / n,
                vmaf: mine.iter().map(|r| r.vmaf).sum::<f64>() / n,
            });
        }
    }
    out
}

/// `s`'s gain over the better of decoder and freeze at its loss rate, in PSNR-Y and in VMAF
/// (each against the better baseline in that measure).
pub fn over_baselines(summary: &[Summary], s: &Summary) -> (f64, f64) {
    let best = |f: fn(&Summary) -> f64| {
        summary.iter().filter(|b| b.loss == s.loss && (b.method == "decoder" || b.method == "freeze")).map(f).fold(f64::MIN, f64::max)
    };
    (s.psnr_y - best(|b| b.psnr_y), s.vmaf - best(|b| b.vmaf))
}

/// The bar at 5% loss: the gain over the better of decoder and freeze, on average.
pub const TARGET_5: (f64, f64) = (2.0, 10.0);

/// What "beats" means at the other loss rates: a gain a viewer could see at all, not a rounding
/// difference (the smallest PSNR difference papers report, and a tenth of a VMAF point).
pub const BEATS: (f64, f64) = (0.1, 0.1);

/// The targets a recover run can judge, for each of the [`JUDGED`] methods: at 5% loss at least
/// `TARGET_5` over both baselines, and at every other loss rate it ran at least `BEATS` over both
/// (the better of the two in each measure).
pub fn targets(summary: &[Summary]) -> Vec<Target> {
    let mut out = Vec::new();
    for method in JUDGED {
        for s in summary.iter().filter(|s| s.method == method) {
            let (dp, dv) = over_baselines(summary, s);
            let at_5 = (s.loss - 0.05).abs() < 1e-9;
            let (p, v) = if at_5 { TARGET_5 } else { BEATS };
            out.push(Target {
                name: format!(
                    "{method} at {:.0}% loss: >= {p:+.1} dB PSNR-Y and >= {v:+.1} VMAF over both decoder and freeze{}",
                    s.loss * 100.0,
                    if at_5 { " (mean over clips)" } else { "" }
                ),
                measured: if dv.is_nan() { format!("{dp:+.2} dB, VMAF not measured") } else { format!("{dp:+.2} dB, {dv:+.2} VMAF") },
                met: dp >= p && dv >= v,
            });
        }
    }
    out
}

/// `method`'s gain over the decoder for one content type at one loss rate (mean over its runs).
#[derive(Debug, Clone, Serialize)]
pub struct ContentGain {
    pub content: String,
    pub loss: f64,
    pub method: String,
    pub d_psnr_y: f64,
    pub d_vmaf: f64,
}

/// Per content type, loss rate and `nerverecover` mode (and the bound): the mean gain over the
/// decoder in the same runs. An average over clips can hide that one content type carries it.
pub fn gains_by_content(rows: &[Row]) -> Vec<ContentGain> {
    paired_gains(rows, |r| r.content.clone())
        .into_iter()
        .map(|(content, loss, method, d_psnr_y, d_vmaf)| ContentGain { content, loss, method, d_psnr_y, d_vmaf })
        .collect()
}

/// `method`'s gain over the decoder on one clip at one loss rate (mean over its seeds and repeats).
#[derive(Debug, Clone, Serialize)]
pub struct ClipGain {
    pub clip: String,
    pub content: String,
    pub loss: f64,
    pub method: String,
    pub d_psnr_y: f64,
    pub d_vmaf: f64,
}

/// Per clip, loss rate and method: the mean gain over the decoder in the same runs.
pub fn gains_by_clip(rows: &[Row]) -> Vec<ClipGain> {
    paired_gains(rows, |r| r.clip.clone())
        .into_iter()
        .map(|(clip, loss, method, d_psnr_y, d_vmaf)| {
            let content = rows.iter().find(|r| r.clip == clip).map(|r| r.content.clone()).unwrap_or_default();
            ClipGain { clip, content, loss, method, d_psnr_y, d_vmaf }
        })
        .collect()
}

/// The median clip's gain over the decoder per loss rate and method: (loss, method, dPSNR-Y,
/// dVMAF), each the median over clips of that clip's mean gain.
pub fn median_gains(by_clip: &[ClipGain]) -> Vec<(f64, String, f64, f64)> {
    let mut keys: Vec<(u64, String)> = by_clip.iter().map(|g| (g.loss.to_bits(), g.method.clone())).collect();
    keys.sort_by(|a, b| f64::from_bits(a.0).total_cmp(&f64::from_bits(b.0)).then(a.1.cmp(&b.1)));
    keys.dedup();
    keys.into_iter()
        .map(|(loss, method)| {
            let loss = f64::from_bits(loss);
            let mine: Vec<&ClipGain> = by_clip.iter().filter(|g| g.loss == loss && g.method == method).collect();
            let p: Vec<f64> = mine.iter().map(|g| g.d_psnr_y).collect();
            let v: Vec<f64> = mine.iter().map(|g| g.d_vmaf).collect();
            (loss, method, crate::ladder::median(&p), crate::ladder::median(&v))
        })
        .collect()
}

/// `method`'s gain over the decoder in one repeat at one loss rate (mean over clips and seeds).
#[derive(Debug, Clone, Serialize)]
pub struct RepeatGain {
    pub repeat: u32,
    pub loss: f64,
    pub method: String,
    pub d_psnr_y: f64,
    pub d_vmaf: f64,
}

/// Per repeat, loss rate and `nerverecover` mode: the mean gain over the decoder. With a
/// decoder that is not deterministic the spread over repeats is part of the result.
pub fn gains_by_repeat(rows: &[Row]) -> Vec<RepeatGain> {
    paired_gains(rows, |r| r.repeat)
        .into_iter()
        .map(|(repeat, loss, method, d_psnr_y, d_vmaf)| RepeatGain { repeat, loss, method, d_psnr_y, d_vmaf })
        .collect()
}

/// Groups the runs by `group` and loss rate and, for each `nerverecover` mode and the bound,
/// averages its gain over the decoder in the same run (clip, seed and repeat): (group, loss,
/// method, dPSNR-Y, dVMAF).
fn paired_gains<K: Ord + Clone>(rows: &[Row], group: impl Fn(&Row) -> K) -> Vec<(K, f64, String, f64, f64)> {
    let mut keys: Vec<(K, u64)> = rows.iter().map(|r| (group(r), r.loss.to_bits())).collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0).then(f64::from_bits(a.1).total_cmp(&f64::from_bits(b.1))));
    keys.dedup();
    let mut out = Vec::new();
    for (key, loss) in keys {
        let loss = f64::from_bits(loss);
        let runs = |method: &str| -> Vec<&Row> { rows.iter().filter(|r| group(r) == key && r.loss == loss && r.method == method).collect() };
        let decoder = runs("decoder");
        for method in &METHODS[2..] {
            let pairs: Vec<(&Row, &Row)> = runs(method)
                .into_iter()
                .filter_map(|m| decoder.iter().find(|d| d.clip == m.clip && d.seed == m.seed && d.repeat == m.repeat).map(|d| (m, *d)))
                .collect();
            if pairs.is_empty() {
                continue;
            }
            let n = pairs.len() as f64;
            out.push((
                key.clone(),
                loss,
                method.to_string(),
                pairs.iter().map(|(m, d)| m.psnr_y - d.psnr_y).sum::<f64>() / n,
                pairs.iter().map(|(m, d)| m.vmaf - d.vmaf).sum::<f64>() / n,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(content: &str, clip: &str, seed: u64, method: &str, psnr_y: f64) -> Row {
        Row {
            clip: clip.into(),
            content: content.into(),
            loss: 0.05,
            seed,
            method: method.into(),
            frames: 10,
            psnr_y,
            vmaf: psnr_y * 2.0,
            active: "8x8+0+0".into(),
            psnr_y_full: psnr_y,
            vmaf_full: psnr_y * 2.0,
            dropped: 1,
            packets: 20,
            repeat: 0,
        }
    }

    fn summary(loss: f64, method: &str, psnr_y: f64, vmaf: f64) -> Summary {
        Summary { loss, method: method.into(), psnr_y, vmaf }
    }

    #[test]
    fn targets_need_the_margin_over_the_better_baseline_in_both_measures() {
        let mut rows = vec![
            summary(0.01, "decoder", 30.0, 60.0),
            summary(0.01, "freeze", 20.0, 61.0),
            summary(0.01, "nerverecover low-latency", 30.0001, 61.2),
            summary(0.05, "decoder", 18.0, 18.0),
            summary(0.05, "freeze", 10.0, 9.0),
            summary(0.05, "nerverecover low-latency", 20.5, 28.5),
            summary(0.05, BOUND, 30.0, 50.0),
        ];
        let t = targets(&rows);
        assert_eq!(t.len(), 2, "one per mode and loss rate, the bound is not judged");
        assert!(!t[0].met, "a rounding difference does not beat the decoder: {}", t[0]);
        assert!(t[1].met, "+2.5 dB and +10.5 VMAF over the better baseline: {}", t[1]);
        assert!(t[1].to_string().contains("+2.50 dB, +10.50 VMAF"), "{}", t[1]);
        rows[5].vmaf = 27.5;
        assert!(!targets(&rows)[1].met, "+9.5 VMAF is short of +10");
        // without VMAF (--no-vmaf) nothing is judged met, and the line says why
        for r in &mut rows {
            r.vmaf = f64::NAN;
        }
        let t = &targets(&rows)[1];
        assert!(!t.met && t.to_string().contains("+2.50 dB, VMAF not measured"), "{t}");
    }

    #[test]
    fn gains_are_paired_per_run_and_kept_apart_per_content() {
        let rows = vec![
            row("animation", "a", 1, "decoder", 20.0),
            row("animation", "a", 1, "nerverecover low-latency", 30.0),
            row("animation", "a", 2, "decoder", 10.0),
            row("animation", "a", 2, "nerverecover low-latency", 12.0),
            row("sports", "s", 1, "decoder", 25.0),
            row("sports", "s", 1, "nerverecover low-latency", 24.0),
        ];
        let g = gains_by_content(&rows);
        assert_eq!(g.len(), 2);
        assert_eq!((g[0].content.as_str(), g[0].d_psnr_y, g[0].d_vmaf), ("animation", 6.0, 12.0));
        assert_eq!((g[1].content.as_str(), g[1].d_psnr_y), ("sports", -1.0));
    }

    #[test]
    fn gains_per_clip_and_the_median_clip() {
        let mut rows = Vec::new();
        for (clip, gain) in [("a", 1.0), ("b", 4.0), ("c", -1.0)] {
            rows.push(row("talking_head", clip, 1, "decoder", 20.0));
            rows.push(row("talking_head", clip, 1, MODES[0], 20.0 + gain));
        }
        let by_clip = gains_by_clip(&rows);
        let mode: Vec<(&str, f64)> = by_clip.iter().filter(|g| g.method == MODES[0]).map(|g| (g.clip.as_str(), g.d_psnr_y)).collect();
        assert_eq!(mode, vec![("a", 1.0), ("b", 4.0), ("c", -1.0)]);
        let median = median_gains(&by_clip);
        let m = median.iter().find(|m| m.1 == MODES[0]).unwrap();
        // one content type, three clips: the mean (+1.33) hides that one clip loses; the median is +1
        assert_eq!((m.2, m.3), (1.0, 2.0));
    }

    #[test]
    fn repeats_are_paired_with_the_decoder_of_the_same_repeat() {
        let again = |mut r: Row| {
            r.repeat = 1;
            r
        };
        let rows = vec![
            row("animation", "a", 1, "decoder", 20.0),
            row("animation", "a", 1, "nerverecover low-latency", 21.0),
            again(row("animation", "a", 1, "decoder", 10.0)),
            again(row("animation", "a", 1, "nerverecover low-latency", 14.0)),
        ];
        let g = gains_by_repeat(&rows);
        assert_eq!(g.iter().map(|g| (g.repeat, g.d_psnr_y)).collect::<Vec<_>>(), vec![(0, 1.0), (1, 4.0)]);
        // over both repeats the content gain is their mean, each against its own decoder
        assert_eq!(gains_by_content(&rows)[0].d_psnr_y, 2.5);
    }
}
