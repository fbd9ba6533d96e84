//! Frame <-> tensor conversion, luma only: the models take and give the Y plane as 0.0..=1.0
//! floats in NCHW order, so I420 and NV12 go in and out without any trip through RGB.

use crate::guard::OutputSummary;

/// Copies a luma plane (rows `stride` bytes apart) into `out` as `width * height` unit floats.
pub fn luma_to_tensor(plane: &[u8], stride: usize, width: usize, height: usize, out: &mut [f32]) {
    const INV: f32 = 1.0 / 255.0;
    for (y, dst) in out.chunks_exact_mut(width).take(height).enumerate() {
        let src = &plane[y * stride..y * stride + width];
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s as f32 * INV;
        }
    }
}

/// Writes a `width * height` unit-float tensor into a luma plane, rounding and clamping.
pub fn tensor_to_luma(tensor: &[f32], width: usize, height: usize, plane: &mut [u8], stride: usize) {
    for (y, src) in tensor.chunks_exact(width).take(height).enumerate() {
        let dst = &mut plane[y * stride..y * stride + width];
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = to_level(s);
        }
    }
}

/// One unit-float sample as an 8-bit level (see [`level`]).
#[inline(always)]
fn to_level(s: f32) -> u8 {
    level(s * 255.0)
}

/// A sample in level units (0.0..=255.0) as a byte, rounded to nearest (ties to even) and
/// clamped; NaN gives 0 (`f32::max` returns the other operand for NaN). Adding 2^23 puts the
/// rounded level in the low bits of the mantissa, a float operation that vectorises: a saturating
/// `as u8` cast kept the loops around it scalar (2 ms a 1080p luma plane against 0.5).
#[inline(always)]
pub fn level(x: f32) -> u8 {
    const ROUNDER: f32 = 8_388_608.0; // 2^23: one unit in the last place
    (x.max(0.0).min(255.0) + ROUNDER).to_bits() as u8
}

/// [`tensor_to_luma`] and [`OutputSummary::of`] in one pass: the output is read once, eight
/// lanes at a time (`guard::sum_and_max`'s lanes, with the conversion in the same loop). At 1080p
/// (`cargo bench -p nerve-engine --bench guard_cost`) the two passes took 1.52-1.68 ms, this
/// 1.07-1.22; calling `sum_and_max` on each row before converting it took 1.67-2.10, no better
/// than two passes, which is why the lanes are written out here. The summary is `of`'s to float
/// rounding; a non-finite sum pays `of`'s own pass to count the bad samples.
pub fn tensor_to_luma_summarised(tensor: &[f32], width: usize, height: usize, plane: &mut [u8], stride: usize) -> OutputSummary {
    const LANES: usize = 8;
    let (mut total, mut max) = (0f64, f32::MIN);
    for (y, src) in tensor.chunks_exact(width).take(height).enumerate() {
        let dst = &mut plane[y * stride..y * stride + width];
        // lanes' f32 sums go to f64 once a row: a row of 1920 is 240 samples a lane
        let (mut sums, mut maxs) = ([0f32; LANES], [f32::MIN; LANES]);
        let (mut s8, mut d8) = (src.chunks_exact(LANES), dst.chunks_exact_mut(LANES));
        for (s, d) in (&mut s8).zip(&mut d8) {
            for j in 0..LANES {
                sums[j] += s[j];
                maxs[j] = maxs[j].max(s[j]);
                d[j] = to_level(s[j]);
            }
        }
        for (&s, d) in s8.remainder().iter().zip(d8.into_remainder()) {
            total += f64::from(s);
            max = max.max(s);
            *d = to_level(s);
        }
        total += sums.iter().map(|&s| f64::from(s)).sum::<f64>();
        max = maxs.iter().fold(max, |m, &x| m.max(x));
    }
    let len = width * height.min(tensor.len() / width.max(1));
    if total.is_finite() { OutputSummary::finite(len, total, max) } else { OutputSummary::of(&tensor[..len]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_exact_and_respects_strides() {
        let (w, h, stride) = (5, 3, 8);
        let plane: Vec<u8> = (0..stride * h).map(|i| (i * 37 % 256) as u8).collect();
        let mut t = vec![0.0; w * h];
        luma_to_tensor(&plane, stride, w, h, &mut t);
        let mut back = vec![0u8; stride * h];
        tensor_to_luma(&t, w, h, &mut back, stride);
        for y in 0..h {
            assert_eq!(&back[y * stride..y * stride + w], &plane[y * stride..y * stride + w]);
            assert!(back[y * stride + w..(y + 1) * stride].iter().all(|&v| v == 0));
        }
    }

    #[test]
    fn out_of_range_values_are_clamped() {
        let mut p = [0u8; 3];
        tensor_to_luma(&[-0.2, 0.5, 1.7], 3, 1, &mut p, 3);
        assert_eq!(p, [0, 128, 255]);
    }

    #[test]
    fn summarised_conversion_writes_the_same_pixels_and_summary() {
        let (w, h, stride) = (29, 7, 32); // a remainder after the eight-sample lanes
        let t: Vec<f32> = (0..w * h).map(|i| ((i * 53) % 300) as f32 / 255.0 - 0.05).collect();
        let (mut a, mut b) = (vec![7u8; stride * h], vec![7u8; stride * h]);
        tensor_to_luma(&t, w, h, &mut a, stride);
        let summary = tensor_to_luma_summarised(&t, w, h, &mut b, stride);
        assert_eq!(a, b, "pixels and untouched padding alike");
        let whole = OutputSummary::of(&t);
        assert_eq!(crate::guard::check_summary(&[0.5; 4], summary), crate::guard::check_summary(&[0.5; 4], whole));
        assert!(summary.same_within(&whole, 1e-6), "{summary:?} against {whole:?}");
        let mut bad = t.clone();
        bad[40] = f32::NAN;
        bad[70] = f32::INFINITY;
        assert_eq!(
            crate::guard::check_summary(&[0.5; 4], tensor_to_luma_summarised(&bad, w, h, &mut b, stride)),
            Err(crate::guard::OutputFault::NotFinite { count: 2, total: w * h, first: 40 })
        );
    }

    #[test]
    fn levels_round_to_nearest_and_clamp() {
        for k in 0..=255u8 {
            assert_eq!(to_level(f32::from(k) / 255.0), k, "level {k} survives the round trip");
        }
        let mut seed = 0x2545_f491u32;
        for _ in 0..100_000 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let s = seed as f32 / u32::MAX as f32 * 1.4 - 0.2;
            let x = (s * 255.0).clamp(0.0, 255.0);
            // ties may go either way; everything else to the nearest level
            if x.fract() != 0.5 {
                assert_eq!(to_level(s), x.round() as u8, "{s}");
            }
        }
        assert_eq!([to_level(f32::NAN), to_level(f32::INFINITY), to_level(f32::NEG_INFINITY)], [0, 255, 0]);
    }
}
