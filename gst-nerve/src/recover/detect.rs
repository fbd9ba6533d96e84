//! Finding the damaged macroblocks of a decoded frame when nothing upstream says where they are.
//!
//! What packet loss does to an H.264 stream decoded by `avdec_h264` (measured on the loss
//! pipeline of `nerve-eval`): a lost slice is not concealed, its macroblocks come out at luma 0,
//! far below video range (16); the P frames that predict from it carry that black plus their
//! residual forward, so the damage stays dark and textured until the next intact IDR frame.
//! The detector therefore looks, per 16x16 block, for
//! - fresh damage: a block that turned at least half the decoder's fill (luma exactly 0, or the
//!   out-of-gamut green chroma below) while the frame shown before was not dark there (genuinely
//!   black content in full range stays black and is left alone; dark, noisy content moving in
//!   is sub-black but never a flat 0 with neutral chroma), and
//! - lingering damage: a block flagged before stays flagged until it is clean again: no
//!   sub-black pixel at all and close to what was shown, or the whole frame is free of
//!   sub-black blocks (an intact IDR frame has refreshed everything).
//!
//! The lost slice's chroma is 0 too, and it keeps the signature far longer than the luma: the
//! residuals the later frames add to it are mostly luma. On a talking-head run at 5% loss, a
//! slice lost at frame 1 left 25% of the frame at 0; 50 frames on, 9.4% of the frame still had
//! both chroma samples under [`GREEN`], and 1.3% was sub-black. No colour a camera or renderer makes has both that low: even pure green keeps
//! Cb at 42 (BT.709) or 54 (BT.601). So a sample with both chroma values under [`GREEN`]
//! counts as lost like a sub-black luma sample (none among the training clips' originals).

pub const BLOCK: usize = 16;
/// Luma below this is the decoder's fill of a lost slice (0) or what was predicted from it:
/// video-range black is 16, and dark content rarely sits this low. (12 caught dark moving
/// content in the training clips; 4 keeps precision above 0.9 there.)
pub const DARK: u8 = 4;
/// Both chroma samples under this is the decoder's fill of a lost slice (0) or what was
/// predicted from it: out of gamut for BT.601 and BT.709 alike (pure green is Cb 42 / Cr 26 in
/// BT.709, Cb 54 / Cr 34 in BT.601).
pub const GREEN: u8 = 32;
/// Share of sub-black pixels that makes a block freshly damaged (half of it).
const FRESH_SHARE: f32 = 0.5;
/// Share of sub-black pixels that makes a block damaged when no frame was shown before.
const FIRST_SHARE: f32 = 0.9;
/// A block shown before with more sub-black pixels than this was dark content, not damage.
const WAS_DARK_SHARE: f32 = 0.02;
/// Mean absolute luma difference to the frame shown under which a flagged block is clean again.
const RELEASE_MAD: f32 = 6.0;

/// One luma plane: rows `stride` bytes apart.
#[derive(Clone, Copy)]
pub struct Plane<'a> {
    pub data: &'a [u8],
    pub stride: usize,
}

/// The chroma of a 4:2:0 frame: U and V samples `step` bytes apart in their rows (1 for I420's
/// planes, 2 for NV12's interleaved plane, where `v` starts one byte into it).
#[derive(Clone, Copy)]
pub struct Chroma<'a> {
    pub u: &'a [u8],
    pub v: &'a [u8],
    pub stride: usize,
    pub step: usize,
}

/// What the detector reads of a frame: its luma and, where known, its chroma.
#[derive(Clone, Copy)]
pub struct Picture<'a> {
    pub y: Plane<'a>,
    pub chroma: Option<Chroma<'a>>,
}

#[derive(Debug, Clone, Default)]
pub struct Detector {
    cols: usize,
    rows: usize,
    width: usize,
    height: usize,
    flagged: Vec<bool>,
    mask: Vec<bool>,
}

impl Detector {
    pub fn new(width: usize, height: usize) -> Self {
        let (cols, rows) = (width.div_ceil(BLOCK), height.div_ceil(BLOCK));
        Self { cols, rows, width, height, flagged: vec![false; cols * rows], mask: vec![false; cols * rows] }
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Forgets lingering damage (flush, discontinuity, new caps).
    pub fn reset(&mut self) {
        self.flagged.fill(false);
    }

    /// The pixel rectangle of block `b`: (x, y, w, h).
    pub fn rect(&self, b: usize) -> (usize, usize, usize, usize) {
        let (x, y) = ((b % self.cols) * BLOCK, (b / self.cols) * BLOCK);
        (x, y, BLOCK.min(self.width - x), BLOCK.min(self.height - y))
    }

    fn dark_share(&self, p: Plane, b: usize) -> f32 {
        let (x, y, w, h) = self.rect(b);
        let mut dark = 0usize;
        for row in y..y + h {
            let start = row * p.stride + x;
            dark += p.data.get(start..start + w).map_or(0, |r| r.iter().filter(|&&v| v < DARK).count());
        }
        dark as f32 / (w * h).max(1) as f32
    }

    /// Share of the block's chroma samples with both U and V under [`GREEN`].
    fn green_share(&self, c: Chroma, b: usize) -> f32 {
        let (x, y, w, h) = self.rect(b);
        let (cx, cy, cw, ch) = (x / 2, y / 2, w.div_ceil(2), h.div_ceil(2));
        let span = (cw.max(1) - 1) * c.step + 1;
        let mut green = 0usize;
        for row in cy..cy + ch {
            let start = row * c.stride + cx * c.step;
            if let (Some(u), Some(v)) = (c.u.get(start..start + span), c.v.get(start..start + span)) {
                green += u.iter().step_by(c.step).zip(v.iter().step_by(c.step)).filter(|&(&a, &b)| a < GREEN && b < GREEN).count();
            }
        }
        green as f32 / (cw * ch).max(1) as f32
    }

    /// Share of the block that looks lost: sub-black luma, or out-of-gamut green chroma.
    fn lost_share(&self, p: Picture, b: usize) -> f32 {
        let dark = self.dark_share(p.y, b);
        p.chroma.map_or(dark, |c| dark.max(self.green_share(c, b)))
    }

    /// Share of the block that looks freshly lost: luma exactly 0 (the decoder's fill of a lost
    /// slice) or, with chroma, the out-of-gamut green that fill leaves in both chroma planes.
    /// Sub-black luma alone is no evidence of fresh damage: a handheld indoor clip held out of
    /// training (fire2: 0.5-4% of every original frame below luma 4, none green, and no block
    /// even half at exactly 0) moved such content into blocks that were not dark before, and
    /// repairing them cost it 0.21 dB at 1% loss.
    fn fresh_share(&self, p: Picture, b: usize) -> f32 {
        let (x, y, w, h) = self.rect(b);
        let mut zero = 0usize;
        for row in y..y + h {
            let start = row * p.y.stride + x;
            zero += p.y.data.get(start..start + w).map_or(0, |r| r.iter().filter(|&&v| v == 0).count());
        }
        let zero = zero as f32 / (w * h).max(1) as f32;
        p.chroma.map_or(zero, |c| zero.max(self.green_share(c, b)))
    }

    /// Whether any pixel of block `b` looks lost (then it is no repair source).
    pub fn has_lost(&self, p: Picture, b: usize) -> bool {
        self.lost_share(p, b) > 0.0
    }

    fn mad(&self, a: Plane, b: Plane, block: usize) -> f32 {
        let (x, y, w, h) = self.rect(block);
        let mut sum = 0u64;
        for row in y..y + h {
            let (sa, sb) = (row * a.stride + x, row * b.stride + x);
            if let (Some(ra), Some(rb)) = (a.data.get(sa..sa + w), b.data.get(sb..sb + w)) {
                sum += ra.iter().zip(rb).map(|(&p, &q)| p.abs_diff(q) as u64).sum::<u64>();
            }
        }
        sum as f32 / (w * h).max(1) as f32
    }

    /// Flags the damaged blocks of `current` (`shown` is the frame output before it, if any) and
    /// returns the mask, one entry per block in raster order.
    pub fn detect(&mut self, current: Picture, shown: Option<Picture>) -> &[bool] {
        let n = self.cols * self.rows;
        let shares: Vec<f32> = (0..n).map(|b| self.lost_share(current, b)).collect();
        let any_dark = shares.iter().any(|&s| s >= FRESH_SHARE);
        for (b, &share) in shares.iter().enumerate() {
            // With nothing shown before (stream start), only what is almost all sub-black: the
            // decoder's fill of a lost slice, not dark content.
            // Fresh damage looks lost first (exact 0 is sub-black, and the green counts in both),
            // so the second pass over the block runs only where it can matter.
            let fresh_share = if share >= FRESH_SHARE.min(FIRST_SHARE) { self.fresh_share(current, b) } else { 0.0 };
            let fresh = match shown {
                Some(s) => fresh_share >= FRESH_SHARE && self.lost_share(s, b) < WAS_DARK_SHARE,
                None => fresh_share >= FIRST_SHARE,
            };
            // What was shown there must not be dark itself: then it was dark content (or damage
            // with nothing to repair it from), and flagging it again repairs nothing. Damage
            // keeps its green chroma long after its luma recovered, so with chroma a block is
            // released once nothing in it looks lost. Without chroma, only once it is also close
            // to what was shown: then a camera pan keeps stale blocks frozen (on the
            // frame-threaded training runs releasing on chroma gained 0.09 dB).
            let lingering = self.flagged[b]
                && any_dark
                && shown.is_some_and(|s| {
                    self.lost_share(s, b) < WAS_DARK_SHARE
                        && (share > 0.0 || current.chroma.is_none() && self.mad(current.y, s.y, b) >= RELEASE_MAD)
                });
            self.mask[b] = fresh || lingering;
        }
        self.flagged.copy_from_slice(&self.mask);
        &self.mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane_of(v: &[u8], stride: usize) -> Picture<'_> {
        Picture { y: Plane { data: v, stride }, chroma: None }
    }

    fn plane(w: usize, h: usize, f: impl Fn(usize, usize) -> u8) -> Vec<u8> {
        (0..w * h).map(|i| f(i % w, i / w)).collect()
    }

    #[test]
    fn black_slice_is_fresh_damage_and_lingers_while_the_frame_has_some() {
        let (w, h) = (64, 48);
        let good = plane(w, h, |x, y| (60 + x + y) as u8);
        let hole = plane(w, h, |x, y| if y < 16 || x >= 48 && y >= 32 { 0 } else { (60 + x + y) as u8 });
        let mut d = Detector::new(w, h);
        assert!(d.detect(plane_of(&good, w), None).iter().all(|&m| !m));
        let m = d.detect(plane_of(&hole, w), Some(plane_of(&good, w))).to_vec();
        assert_eq!(m.iter().filter(|&&v| v).count(), 5, "{m:?}");
        assert!(m[..4].iter().all(|&v| v) && m[11]);
        // Damage carried into the next frame as texture without sub-black pixels, while another
        // block is still dark: it stays flagged because it differs from what was shown.
        let carried = plane(w, h, |x, y| if y < 16 { (200 + x % 7) as u8 } else if x >= 48 && y >= 32 { 2 } else { (60 + x + y) as u8 });
        let m = d.detect(plane_of(&carried, w), Some(plane_of(&good, w))).to_vec();
        assert!(m[..4].iter().all(|&v| v) && m[11]);
        // An intact refresh: no dark block anywhere clears everything.
        assert!(d.detect(plane_of(&good, w), Some(plane_of(&good, w))).iter().all(|&m| !m));
    }

    #[test]
    fn out_of_gamut_chroma_is_damage_long_after_the_luma_recovered() {
        let (w, h) = (32, 32);
        let luma = plane(w, h, |x, y| (60 + x + y) as u8);
        let grey = vec![128u8; (w / 2) * (h / 2)];
        // Damage carried on from a lost slice: luma back in range, chroma still near 0 in the
        // left half. Pure BT.709 green (Cb 42, Cr 26) in the right half is content.
        let u = plane(w / 2, h / 2, |x, _| if x < 8 { 9 } else { 42 });
        let v = plane(w / 2, h / 2, |x, _| if x < 8 { 14 } else { 26 });
        let shown = Picture { y: Plane { data: &luma, stride: w }, chroma: Some(Chroma { u: &grey, v: &grey, stride: w / 2, step: 1 }) };
        let current = Picture { y: Plane { data: &luma, stride: w }, chroma: Some(Chroma { u: &u, v: &v, stride: w / 2, step: 1 }) };
        let mut d = Detector::new(w, h);
        assert_eq!(d.detect(current, Some(shown)).to_vec(), vec![true, false, true, false]);
        assert!(d.has_lost(current, 0) && !d.has_lost(current, 1));
        // Without its chroma the same frame looks clean.
        let mut d = Detector::new(w, h);
        assert!(d.detect(Picture { chroma: None, ..current }, Some(shown)).iter().all(|&m| !m));
        // NV12: the same samples interleaved.
        let uv: Vec<u8> = u.iter().zip(&v).flat_map(|(&a, &b)| [a, b]).collect();
        let nv12 = Picture { y: current.y, chroma: Some(Chroma { u: &uv, v: &uv[1..], stride: w, step: 2 }) };
        let mut d = Detector::new(w, h);
        assert_eq!(d.detect(nv12, Some(shown)).to_vec(), vec![true, false, true, false]);
    }

    #[test]
    fn dark_content_moving_into_a_block_is_not_damage_when_its_chroma_is_neutral() {
        let (w, h) = (32, 32);
        let grey = vec![128u8; (w / 2) * (h / 2)];
        let zero = vec![0u8; (w / 2) * (h / 2)];
        // A dark object (luma 2, neutral chroma) moves from the left blocks into the right ones.
        let before = plane(w, h, |x, _| if x < 16 { 2 } else { 90 });
        let after = plane(w, h, |x, _| if x >= 16 { 2 } else { 90 });
        let pic = |y: &'static [u8], c: &'static [u8]| Picture { y: Plane { data: y, stride: w }, chroma: Some(Chroma { u: c, v: c, stride: w / 2, step: 1 }) };
        let (before, after, grey, zero): (&'static [u8], &'static [u8], &'static [u8], &'static [u8]) =
            (before.leak(), after.leak(), grey.leak(), zero.leak());
        let mut d = Detector::new(w, h);
        assert!(d.detect(pic(after, grey), Some(pic(before, grey))).iter().all(|&m| !m));
        // The same luma with the decoder's zero chroma is a lost slice (where the frame shown
        // was not dark itself: the left blocks had nothing better to repair from).
        let mut d = Detector::new(w, h);
        assert_eq!(d.detect(pic(after, zero), Some(pic(before, grey))).to_vec(), vec![false, true, false, true]);
    }

    #[test]
    fn sub_black_content_moving_into_a_block_is_not_fresh_damage() {
        // Dark, noisy content (luma 1-3, never a flat 0) moves into the right blocks.
        let (w, h) = (32, 32);
        let before = plane(w, h, |x, y| if x < 16 { 1 + ((x + y) % 3) as u8 } else { 90 });
        let after = plane(w, h, |x, y| if x >= 16 { 1 + ((x + y) % 3) as u8 } else { 90 });
        let mut d = Detector::new(w, h);
        assert!(d.detect(plane_of(&after, w), Some(plane_of(&before, w))).iter().all(|&m| !m));
        // The decoder's flat 0 there is a lost slice.
        let lost = plane(w, h, |x, _| if x >= 16 { 0 } else { 90 });
        let mut d = Detector::new(w, h);
        assert_eq!(d.detect(plane_of(&lost, w), Some(plane_of(&before, w))).to_vec(), vec![false, true, false, true]);
    }

    #[test]
    fn genuinely_dark_content_is_not_damage() {
        let (w, h) = (32, 32);
        let night = plane(w, h, |x, _| if x < 16 { 2 } else { 90 });
        let mut d = Detector::new(w, h);
        d.detect(plane_of(&night, w), None);
        assert!(d.detect(plane_of(&night, w), Some(plane_of(&night, w))).iter().all(|&m| !m));
    }

    #[test]
    fn odd_sizes_cover_every_pixel() {
        let d = Detector::new(33, 17);
        assert_eq!((d.cols(), d.rows()), (3, 2));
        assert_eq!(d.rect(5), (32, 16, 1, 1));
    }
}
