//! Vid4 x4 with the usual "BI" degradation: MATLAB-style bicubic downscale (antialiased,
//! symmetric borders) of the RGB ground truth, luma (BT.601 studio swing) compared without crop
//! over all frames, the convention of ../shared/data/baselines (bicubic average 23.78 dB).

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::frame::{Clip, Frame};
use crate::ladder::Target;
use crate::run;

pub const CLIPS: [&str; 4] = ["calendar", "city", "foliage", "walk"];

/// The models issue's x4 target: the Vid4 average PSNR-Y of the model (its real-time speed is
/// the `sr_throughput` benchmark's, not judged here).
pub const TARGET_DB: f64 = 25.0;

pub fn target(model: &str, average_db: f64) -> Target {
    Target {
        name: format!("Vid4 x4 PSNR-Y >= {TARGET_DB:.1} dB ({model})"),
        measured: format!("{average_db:.2} dB"),
        met: average_db >= TARGET_DB,
    }
}

fn cubic(x: f64) -> f64 {
    let a = x.abs();
    if a <= 1.0 {
        1.5 * a * a * a - 2.5 * a * a + 1.0
    } else if a <= 2.0 {
        -0.5 * a * a * a + 2.5 * a * a - 4.0 * a + 2.0
    } else {
        0.0
    }
}

/// MATLAB imresize contributions along one axis: for each output index, (source index, weight).
fn contributions(in_len: usize, out_len: usize, scale: f64) -> Vec<Vec<(usize, f64)>> {
    let (kw, aa) = if scale < 1.0 { (4.0 / scale, scale) } else { (4.0, 1.0) };
    let p = kw.ceil() as i64 + 2;
    (1..=out_len)
        .map(|x| {
            let u = x as f64 / scale + 0.5 * (1.0 - 1.0 / scale);
            let left = (u - kw / 2.0).floor() as i64;
            let mut taps: Vec<(usize, f64)> = (0..p)
                .map(|k| {
                    let ind = left + k; // 1-based
                    let w = aa * cubic(aa * (u - ind as f64));
                    // symmetric (mirrored) borders
                    let n = in_len as i64;
                    let m = (ind - 1).rem_euclid(2 * n);
                    let src = if m < n { m } else { 2 * n - 1 - m };
                    (src as usize, w)
                })
                .filter(|(_, w)| *w != 0.0)
                .collect();
            let sum: f64 = taps.iter().map(|t| t.1).sum();
            taps.iter_mut().for_each(|t| t.1 /= sum);
            taps
        })
        .collect()
}

/// Resizes a single-channel float image by `scale` (rows first, like MATLAB for equal scales).
pub fn imresize(img: &[f64], w: usize, h: usize, scale: f64) -> (Vec<f64>, usize, usize) {
    let (ow, oh) = ((w as f64 * scale).ceil() as usize, (h as f64 * scale).ceil() as usize);
    let rows = contributions(h, oh, scale);
    let mut tmp = vec![0.0; w * oh];
    for (y, taps) in rows.iter().enumerate() {
        for x in 0..w {
            tmp[y * w + x] = taps.iter().map(|&(s, wt)| wt * img[s * w + x]).sum();
        }
    }
    let cols = contributions(w, ow, scale);
    let mut out = vec![0.0; ow * oh];
    for y in 0..oh {
        for (x, taps) in cols.iter().enumerate() {
            out[y * ow + x] = taps.iter().map(|&(s, wt)| wt * tmp[y * w + s]).sum();
        }
    }
    (out, ow, oh)
}

fn luma(rgb: &[f64]) -> Vec<f64> {
    rgb.chunks_exact(3).map(|p| 16.0 + (65.481 * p[0] + 128.553 * p[1] + 24.966 * p[2]) / 255.0).collect()
}

fn round_u8(v: f64) -> f64 {
    v.round().clamp(0.0, 255.0)
}

fn read_png(path: &Path) -> Result<(Vec<f64>, usize, usize)> {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path)?));
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf)?;
    if info.color_type != png::ColorType::Rgb || info.bit_depth != png::BitDepth::Eight {
        bail!("{}: expected 8-bit RGB", path.display());
    }
    Ok((buf[..info.buffer_size()].iter().map(|&v| v as f64).collect(), info.width as usize, info.height as usize))
}

fn psnr_f(a: &[f64], b: &[f64]) -> f64 {
    let mse = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>() / a.len() as f64;
    10.0 * (255.0 * 255.0 / mse).log10()
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Vid4Row {
    pub clip: String,
    pub frames: usize,
    pub bicubic_rgb_db: f64,
    pub bicubic_y_db: f64,
    pub model_db: f64,
}

/// Scores one Vid4 clip: MATLAB bicubic (on RGB, the published baseline), MATLAB bicubic on luma,
/// and `filter` (an x4 upscaler fragment, e.g. nervesr scale=4) on the LR luma.
pub fn evaluate(dir: &Path, clip: &str, filter: &str) -> Result<Vid4Row> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join(clip))
        .with_context(|| format!("Vid4 clip {clip} in {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    let (mut gt_y, mut lr_frames, mut bic_rgb, mut bic_y) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut gw, mut gh) = (0, 0);
    for f in &files {
        let (rgb, w, h) = read_png(f)?;
        (gw, gh) = (w, h);
        // Downscale each colour channel, round to 8 bits as a stored LR image would be.
        let mut lr_rgb = Vec::new();
        let (mut lw, mut lh) = (0, 0);
        let mut up_rgb = vec![0.0; w * h * 3];
        for c in 0..3 {
            let chan: Vec<f64> = rgb.iter().skip(c).step_by(3).copied().collect();
            let (lr, a, b) = imresize(&chan, w, h, 0.25);
            let lr: Vec<f64> = lr.into_iter().map(round_u8).collect();
            let (up, _, _) = imresize(&lr, a, b, 4.0);
            for (i, v) in up.into_iter().enumerate() {
                up_rgb[i * 3 + c] = round_u8(v);
            }
            lr_rgb.push(lr);
            (lw, lh) = (a, b);
        }
        let lr_interleaved: Vec<f64> = (0..lw * lh).flat_map(|i| [lr_rgb[0][i], lr_rgb[1][i], lr_rgb[2][i]]).collect();
        let lr_y = luma(&lr_interleaved);
        let (up_y, _, _) = imresize(&lr_y, lw, lh, 4.0);
        let gy = luma(&rgb);
        bic_rgb.push(psnr_f(&gy, &luma(&up_rgb)));
        bic_y.push(psnr_f(&gy, &up_y.iter().map(|&v| round_u8(v)).collect::<Vec<_>>()));
        let mut frame = Frame::new(lw, lh);
        for (d, &s) in frame.y_mut().iter_mut().zip(&lr_y) {
            *d = round_u8(s) as u8;
        }
        lr_frames.push(frame);
        gt_y.push(gy);
    }
    if lr_frames.is_empty() {
        bail!("no frames in {}", dir.join(clip).display());
    }
    let (out, _) = run::through(&Clip { frames: lr_frames, fps: gst::Fraction::new(25, 1) }, filter)?;
    let model: Vec<f64> = out
        .iter()
        .zip(&gt_y)
        .map(|(o, g)| {
            if o.width != gw || o.height != gh {
                return f64::NAN;
            }
            psnr_f(g, &o.y().iter().map(|&v| v as f64).collect::<Vec<_>>())
        })
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    Ok(Vid4Row { clip: clip.into(), frames: files.len(), bicubic_rgb_db: mean(&bic_rgb), bicubic_y_db: mean(&bic_y), model_db: mean(&model) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_is_met_from_25_db_and_not_below() {
        assert!(target("m", 25.0).met);
        assert!(!target("m", 24.99).met);
        assert!(!target("m", f64::NAN).met); // a size mismatch scores NaN: never met
        assert_eq!(target("m", 24.714).to_string(), "target Vid4 x4 PSNR-Y >= 25.0 dB (m): NOT met (24.71 dB)");
    }
}
