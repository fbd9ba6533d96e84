//! PSNR and SSIM on luma.

use crate::frame::Frame;

/// PSNR in dB of two equal-length 8-bit sample sequences (100 dB when identical).
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let sse: u64 = a.iter().zip(b).map(|(&x, &y)| ((x as i32 - y as i32) * (x as i32 - y as i32)) as u64).sum();
    if sse == 0 {
        return 100.0;
    }
    let mse = sse as f64 / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

/// Mean over frames of the per-frame luma PSNR.
pub fn psnr_y(reference: &[Frame], distorted: &[Frame]) -> f64 {
    let n = reference.len().min(distorted.len());
    (0..n).map(|i| psnr(reference[i].y(), distorted[i].y())).sum::<f64>() / n as f64
}

/// 11-tap Gaussian (sigma 1.5), the window of Wang et al. 2004.
fn gaussian() -> [f64; 11] {
    let mut g = [0.0; 11];
    for (i, v) in g.iter_mut().enumerate() {
        let x = i as f64 - 5.0;
        *v = (-x * x / (2.0 * 1.5 * 1.5)).exp();
    }
    let s: f64 = g.iter().sum();
    g.map(|v| v / s)
}

/// Separable Gaussian blur, 'valid' region only (output (w-10) x (h-10)).
fn blur(img: &[f64], w: usize, h: usize, g: &[f64; 11]) -> Vec<f64> {
    let (ow, oh) = (w - 10, h - 10);
    let mut rows = vec![0.0; ow * h];
    for y in 0..h {
        for x in 0..ow {
            rows[y * ow + x] = (0..11).map(|k| g[k] * img[y * w + x + k]).sum();
        }
    }
    let mut out = vec![0.0; ow * oh];
    for y in 0..oh {
        for x in 0..ow {
            out[y * ow + x] = (0..11).map(|k| g[k] * rows[(y + k) * ow + x]).sum();
        }
    }
    out
}

/// SSIM of two luma planes (Gaussian window, K1 = 0.01, K2 = 0.03, L = 255).
pub fn ssim(a: &[u8], b: &[u8], w: usize, h: usize) -> f64 {
    if w < 11 || h < 11 {
        return if a == b { 1.0 } else { 0.0 };
    }
    let g = gaussian();
    let fa: Vec<f64> = a.iter().map(|&v| v as f64).collect();
    let fb: Vec<f64> = b.iter().map(|&v| v as f64).collect();
    let prod = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).collect::<Vec<f64>>();
    let (ma, mb) = (blur(&fa, w, h, &g), blur(&fb, w, h, &g));
    let (saa, sbb, sab) = (blur(&prod(&fa, &fa), w, h, &g), blur(&prod(&fb, &fb), w, h, &g), blur(&prod(&fa, &fb), w, h, &g));
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let n = ma.len();
    (0..n)
        .map(|i| {
            let (mx, my) = (ma[i], mb[i]);
            let (vx, vy, cxy) = (saa[i] - mx * mx, sbb[i] - my * my, sab[i] - mx * my);
            ((2.0 * mx * my + c1) * (2.0 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        })
        .sum::<f64>()
        / n as f64
}

/// Mean over frames of the per-frame luma SSIM.
pub fn ssim_y(reference: &[Frame], distorted: &[Frame]) -> f64 {
    let n = reference.len().min(distorted.len());
    (0..n).map(|i| ssim(reference[i].y(), distorted[i].y(), reference[i].width, reference[i].height)).sum::<f64>() / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_of_a_known_error() {
        // MSE 1 everywhere: 10 log10(255^2) = 48.13 dB.
        let a = vec![100u8; 64];
        let b = vec![101u8; 64];
        assert!((psnr(&a, &b) - 48.1308).abs() < 1e-3);
        assert_eq!(psnr(&a, &a), 100.0);
    }

    #[test]
    fn ssim_is_one_for_identical_and_drops_with_noise() {
        let (w, h) = (32, 24);
        let a: Vec<u8> = (0..w * h).map(|i| ((i * 31) % 251) as u8).collect();
        assert!((ssim(&a, &a, w, h) - 1.0).abs() < 1e-9);
        let b: Vec<u8> = a.iter().enumerate().map(|(i, &v)| v.saturating_add(((i * 7919) % 41) as u8)).collect();
        let s = ssim(&a, &b, w, h);
        assert!(s < 0.99 && s > 0.0, "{s}");
    }
}
