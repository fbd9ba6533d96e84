//! Classical bicubic (Catmull-Rom) resampling of one image plane.
//!
//! Used for chroma on every frame (the models see luma only) and for luma when `nervesr` falls
//! back under QoS pressure, so it must be cheap: taps are computed once per geometry, the
//! horizontal pass runs once per source row, and the vertical pass is a straight 4-row blend that
//! the compiler vectorises.

/// Four source indices and weights for one destination sample.
#[derive(Clone, Copy, Debug)]
struct Tap {
    idx: [usize; 4],
    w: [f32; 4],
}

impl Tap {
    /// The weighted sum of the four samples `px` gives for the tap's indices (in one order, so
    /// every pass that uses it gives bit-identical results).
    fn apply(&self, px: impl Fn(usize) -> f32) -> f32 {
        self.w[0] * px(self.idx[0]) + self.w[1] * px(self.idx[1]) + self.w[2] * px(self.idx[2]) + self.w[3] * px(self.idx[3])
    }
}

/// The horizontal pass of one source row when the destination is exactly twice as wide and has
/// one component: the generic pass gathers four samples per destination sample through its tap
/// table; here the row is converted to floats once and each source window of five gives two
/// samples, with the same products summed in the same order (bit-identical). `pairs`: the even
/// and odd samples' taps away from the clamped edges, where they repeat.
fn twice_wide(src: &[u8], row: &mut [f32], tx: &[Tap], line: &mut [f32], (even, odd): (Tap, Tap)) {
    for (d, &s) in line.iter_mut().zip(src) {
        *d = s as f32;
    }
    let n = line.len();
    // edges: source samples 0, 1 and n-2, n-1 (their taps are clamped)
    for x in (0..4).chain(2 * n - 4..2 * n) {
        row[x] = tx[x].apply(|i| line[i]);
    }
    for (pair, w) in row[4..2 * n - 4].chunks_exact_mut(2).zip(line.windows(5)) {
        pair[0] = even.apply(|i| w[i]);
        pair[1] = odd.apply(|i| w[i]);
    }
}

/// Catmull-Rom kernel (a = -0.5), the same kernel the models' built-in upscale uses.
fn cubic(x: f32) -> f32 {
    let a = -0.5f32;
    let x = x.abs();
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

/// Taps mapping `dst` samples onto `src` samples with pixel centres aligned (half-pixel offset).
fn taps(src: usize, dst: usize) -> Vec<Tap> {
    let ratio = src as f64 / dst as f64;
    let last = src.saturating_sub(1) as isize;
    (0..dst)
        .map(|o| {
            let centre = (o as f64 + 0.5) * ratio - 0.5;
            let base = centre.floor();
            let t = (centre - base) as f32;
            let base = base as isize;
            let mut idx = [0usize; 4];
            for (k, i) in idx.iter_mut().enumerate() {
                *i = (base - 1 + k as isize).clamp(0, last) as usize;
            }
            let w = [cubic(t + 1.0), cubic(t), cubic(1.0 - t), cubic(2.0 - t)];
            let sum: f32 = w.iter().sum();
            Tap { idx, w: w.map(|v| v / sum) }
        })
        .collect()
}

/// A plane as stored in a video frame: `comps` interleaved components (1 for I420 planes and
/// luma, 2 for NV12's UV plane) of `width` x `height` samples, rows `stride` bytes apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlaneGeometry {
    pub width: usize,
    pub height: usize,
    pub comps: usize,
}

/// Resamples planes of one source geometry to one destination geometry.
pub struct Resampler {
    src: PlaneGeometry,
    dst: PlaneGeometry,
    tx: Vec<Tap>,
    ty: Vec<Tap>,
    /// Horizontally filtered source rows, `src.height` x `dst.width * comps`.
    rows: Vec<f32>,
    /// Exactly twice as wide, one component (I420's chroma, luma): the taps of even and odd
    /// destination samples away from the edges, which repeat (see [`twice_wide`]).
    x2: Option<(Tap, Tap)>,
    /// A source row as floats, for the x2 pass.
    line: Vec<f32>,
}

impl Resampler {
    pub fn new(src: PlaneGeometry, dst: PlaneGeometry) -> Self {
        assert_eq!(src.comps, dst.comps, "resampling keeps the component count"); // ok: callers pass matching planes
        let tx = taps(src.width, dst.width);
        // Destination sample 2i sits at source i - 1/4 (taps i-2..=i+1), 2i+1 at i + 1/4 (taps
        // i-1..=i+2); away from the clamped edges every pair has the same weights.
        // Relative to a window of five starting at source i-2: even taps 0..=3, odd taps 1..=4.
        let x2 = (src.comps == 1 && dst.width == 2 * src.width && src.width >= 8)
            .then(|| (Tap { idx: [0, 1, 2, 3], w: tx[4].w }, Tap { idx: [1, 2, 3, 4], w: tx[5].w }));
        Self {
            tx,
            ty: taps(src.height, dst.height),
            rows: vec![0.0; src.height * dst.width * dst.comps],
            x2,
            line: vec![0.0; if x2.is_some() { src.width } else { 0 }],
            src,
            dst,
        }
    }

    pub fn src(&self) -> PlaneGeometry {
        self.src
    }

    pub fn dst(&self) -> PlaneGeometry {
        self.dst
    }

    /// Resamples `src` (rows `src_stride` apart) into `dst` (rows `dst_stride` apart).
    pub fn run(&mut self, src: &[u8], src_stride: usize, dst: &mut [u8], dst_stride: usize) {
        let c = self.src.comps;
        let row_len = self.dst.width * c;
        for (y, row) in self.rows.chunks_exact_mut(row_len).enumerate() {
            let line = &src[y * src_stride..y * src_stride + self.src.width * c];
            match self.x2 {
                Some(pairs) => twice_wide(line, row, &self.tx, &mut self.line, pairs),
                None => {
                    for (x, tap) in self.tx.iter().enumerate() {
                        for k in 0..c {
                            row[x * c + k] = tap.apply(|i| line[i * c + k] as f32);
                        }
                    }
                }
            }
        }
        for (y, tap) in self.ty.iter().enumerate() {
            let r = |i: usize| &self.rows[tap.idx[i] * row_len..(tap.idx[i] + 1) * row_len];
            let (r0, r1, r2, r3) = (r(0), r(1), r(2), r(3));
            let out = &mut dst[y * dst_stride..y * dst_stride + row_len];
            for x in 0..row_len {
                let v = tap.w[0] * r0[x] + tap.w[1] * r1[x] + tap.w[2] * r2[x] + tap.w[3] * r3[x];
                out[x] = crate::convert::level(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom(width: usize, height: usize, comps: usize) -> PlaneGeometry {
        PlaneGeometry { width, height, comps }
    }

    #[test]
    fn the_x2_pass_equals_the_generic_one_bit_for_bit() {
        let mut rng = 0x9e3779b97f4a7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng >> 56) as u8
        };
        for (w, h, stride) in [(8, 3, 8), (9, 5, 12), (480, 270, 480), (17, 2, 32), (64, 1, 64)] {
            let src: Vec<u8> = (0..stride * h).map(|_| next()).collect();
            let (dw, dh) = (2 * w, 2 * h);
            let mut fast = Resampler::new(geom(w, h, 1), geom(dw, dh, 1));
            assert!(fast.x2.is_some(), "{w}x{h}");
            let mut generic = Resampler::new(geom(w, h, 1), geom(dw, dh, 1));
            generic.x2 = None;
            let (mut a, mut b) = (vec![0u8; dw * dh], vec![0u8; dw * dh]);
            fast.run(&src, stride, &mut a, dw);
            generic.run(&src, stride, &mut b, dw);
            assert_eq!(a, b, "{w}x{h} stride {stride}");
            assert_eq!(fast.rows, generic.rows, "{w}x{h}: the horizontal pass differs");
        }
        // too narrow, not twice, or interleaved: the generic pass
        assert!(Resampler::new(geom(7, 4, 1), geom(14, 8, 1)).x2.is_none());
        assert!(Resampler::new(geom(16, 4, 1), geom(48, 8, 1)).x2.is_none());
        assert!(Resampler::new(geom(16, 4, 2), geom(32, 8, 2)).x2.is_none());
    }

    #[test]
    fn flat_plane_stays_flat_at_any_size() {
        for (w, h, dw, dh) in [(5, 3, 10, 6), (7, 9, 21, 27), (1, 1, 4, 4), (3, 5, 6, 10)] {
            let src = vec![77u8; w * h];
            let mut dst = vec![0u8; dw * dh];
            Resampler::new(geom(w, h, 1), geom(dw, dh, 1)).run(&src, w, &mut dst, dw);
            assert!(dst.iter().all(|&v| v == 77), "{w}x{h}->{dw}x{dh}");
        }
    }

    #[test]
    fn interleaved_components_do_not_mix() {
        // NV12-style UV plane: U = 10 everywhere, V = 200 everywhere.
        let (w, h) = (4, 3);
        let src: Vec<u8> = (0..w * h).flat_map(|_| [10u8, 200u8]).collect();
        let mut dst = vec![0u8; 8 * 6 * 2];
        Resampler::new(geom(w, h, 2), geom(8, 6, 2)).run(&src, w * 2, &mut dst, 16);
        assert!(dst.chunks(2).all(|p| p == [10, 200]));
    }

    #[test]
    fn linear_ramp_is_reproduced_inside_the_image() {
        // Cubic interpolation reproduces a linear ramp exactly away from the borders.
        let w = 16;
        let src: Vec<u8> = (0..w).map(|x| (x * 10) as u8).collect();
        let mut dst = vec![0u8; 2 * w];
        Resampler::new(geom(w, 1, 1), geom(2 * w, 1, 1)).run(&src, w, &mut dst, 2 * w);
        for (x, &v) in dst.iter().enumerate().take(2 * w - 4).skip(4) {
            let expected = ((x as f32 + 0.5) / 2.0 - 0.5) * 10.0;
            assert!((v as f32 - expected).abs() <= 0.5, "x={x}: {v} vs {expected}");
        }
    }
}
