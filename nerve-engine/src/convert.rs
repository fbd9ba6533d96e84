//! Frame <-> tensor conversion, luma only: the models take and give the Y plane as 0.0..=1.0
//! floats in NCHW order, so I420 and NV12 go in and out without any trip through RGB.

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
            *d = (s * 255.0 + 0.5).clamp(0.0, 255.0) as u8;
        }
    }
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
}
