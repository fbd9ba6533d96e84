//! Letterbox and pillarbox bars kept black through packet loss.
//!
//! What `avdec_h264` does to a bar (measured on the loss pipeline of `nerve-eval`): when a lost
//! slice covers a letterbox bar, FFmpeg's concealment fills it with the picture smeared out of
//! the rows next to it, and since the encoder codes a bar as skipped blocks, every frame after
//! it copies that fill on until a keyframe happens to bring the slice back intact: the bar stays
//! grey for up to a whole GOP. A bar is the one part of a picture whose content is known
//! without decoding it, so where the decoder breaks an established bar, the bar's rows (or
//! columns) are taken from the frame shown before, in every plane, for as long as the decoder
//! keeps them broken (up to a limit).
//!
//! Only a fill that reaches the picture counts: the broken lines must run from the picture's
//! edge outwards, as a fill smeared out of the picture does (a subtitle set in the bar leaves
//! dark lines between itself and the picture, and stays). A break starts a repair when a loss
//! was reported before the frame, or when the picture itself did not change much (a new
//! aspect ratio comes with a cut; a receiver that runs faster than real time reports few of
//! its losses, so the report alone is not enough).
//!
//! A bar here is a run of rows (columns) at the top or bottom (left or right) edge of the frame
//! shown, each of them dark (mean luma at most [`BAR_MEAN`], no pixel above [`BAR_PEAK`]),
//! between [`MIN_BAR`] pixels and a quarter of the frame thick, with the picture between the
//! bars (a frame that is dark in its middle too is a dark picture, not bars), and starting with
//! a flat video-range black line at the frame's edge: an encoded bar is flat there, while dark
//! content, and damage the decoder left dark, is not (or is sub-black).

use super::detect::Plane;

/// Mean luma at most this: video-range black (16) plus coding noise.
const BAR_MEAN: u32 = 24;
/// No pixel of a bar line above this.
const BAR_PEAK: u8 = 40;
/// Thinner dark edges are content (a dark border, a vignette), not a bar.
const MIN_BAR: usize = 8;
/// Fewer broken lines than this at a bar's inner edge are coding noise of the picture next to
/// it (its innermost lines flicker), not a fill: concealment fills whole macroblock rows.
const MIN_BREAK: usize = 4;
/// The edge line of a bar: no pixel below this (a decoder's fill of a lost slice is 0)...
const EDGE_MIN: u8 = 12;
/// ...and at most this between its darkest and brightest pixel...
const EDGE_RANGE: u8 = 4;
/// ...and a mean luma of at most this: black (16) itself. Dark content at the frame's edge
/// (the dawn sky at the start of Big Buck Bunny's fade-in, 19-21) is a few levels above it;
/// taken for a bar, the fade would be held back as a break.
const EDGE_MEAN: u32 = 18;
/// Mean absolute luma change of the picture (between the bars) against the frame shown above
/// which a frame is a cut: bars broken there may be a new aspect ratio, repaired only after a
/// reported loss. (Chosen on letterboxed training clips; 20 to 60 differ by under 0.7 dB.)
const CUT_MAD: u32 = 40;

/// The lines of one axis (rows or columns).
#[derive(Debug, Clone, Default)]
struct Axis {
    /// Lines that were bars in the frame shown.
    bar: Vec<bool>,
    /// Per line, frames in a row it was taken from the frame shown (0: not being repaired).
    repairing: Vec<u32>,
}

impl Axis {
    fn new(len: usize) -> Self {
        Self { bar: vec![false; len], repairing: vec![0; len] }
    }

    /// No bars (and nothing being repaired).
    fn forget(&mut self) {
        self.bar.fill(false);
        self.repairing.fill(0);
    }

    /// The bars of the frame shown (`dark`: each line's darkness; `flat_edges`: whether its
    /// first and last lines are flat black).
    fn learn(&mut self, dark: &[bool], flat_edges: (bool, bool)) {
        self.bar.fill(false);
        let n = dark.len();
        let quarter = n / 4;
        let top = dark.iter().take_while(|&&d| d).count();
        let bottom = dark.iter().rev().take_while(|&&d| d).count();
        if top > quarter || bottom > quarter {
            self.forget();
            return;
        }
        if top >= MIN_BAR && flat_edges.0 {
            self.bar[..top].fill(true);
        }
        if bottom >= MIN_BAR && flat_edges.1 {
            self.bar[n - bottom..].fill(true);
        }
        // A line that is no bar any more is repaired no more.
        for (r, &b) in self.repairing.iter_mut().zip(&self.bar) {
            if !b {
                *r = 0;
            }
        }
    }

    /// The bar lines the decoder broke, from the picture's edge outwards, given its darkness
    /// of each line.
    fn broken(&self, dark: &[bool]) -> Vec<bool> {
        let n = dark.len();
        let mut out = vec![false; n];
        let top = self.bar.iter().take_while(|&&b| b).count();
        let run: Vec<usize> = (0..top).rev().take_while(|&i| !dark[i]).collect();
        let bottom = n - self.bar.iter().rev().take_while(|&&b| b).count();
        let run2: Vec<usize> = (bottom..n).take_while(|&i| !dark[i]).collect();
        for r in [run, run2] {
            if r.len() >= MIN_BREAK {
                for i in r {
                    out[i] = true;
                }
            }
        }
        out
    }

    /// Which of the `broken` lines to take from the frame shown.
    fn repair(&mut self, broken: &[bool], start: bool, limit: u32) -> Vec<bool> {
        let mut out = vec![false; broken.len()];
        for (i, o) in out.iter_mut().enumerate() {
            *o = broken[i] && if self.repairing[i] == 0 { start } else { self.repairing[i] < limit };
            self.repairing[i] = if *o { self.repairing[i] + 1 } else { 0 };
        }
        out
    }

    /// The picture's lines: not bars.
    fn picture(&self) -> impl Iterator<Item = usize> + '_ {
        self.bar.iter().enumerate().filter(|(_, b)| !**b).map(|(i, _)| i)
    }
}

/// One frame's lines: each row's and column's darkness.
struct Lines {
    rows: Vec<bool>,
    cols: Vec<bool>,
}

/// Rows and columns to take from the frame shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenBars {
    pub rows: Vec<bool>,
    pub cols: Vec<bool>,
}

impl BrokenBars {
    pub fn none(width: usize, height: usize) -> Self {
        Self { rows: vec![false; height], cols: vec![false; width] }
    }

    /// Whether any line of the pixel rectangle (x, y, w, h) is broken.
    pub fn touches(&self, (x, y, w, h): (usize, usize, usize, usize)) -> bool {
        self.rows.iter().skip(y).take(h).any(|&b| b) || self.cols.iter().skip(x).take(w).any(|&b| b)
    }

    pub fn any(&self) -> bool {
        self.rows.iter().chain(&self.cols).any(|&b| b)
    }

    pub fn lines(&self) -> usize {
        self.rows.iter().chain(&self.cols).filter(|&&b| b).count()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Bars {
    width: usize,
    height: usize,
    rows: Axis,
    cols: Axis,
}

impl Bars {
    pub fn new(width: usize, height: usize) -> Self {
        Self { width, height, rows: Axis::new(height), cols: Axis::new(width) }
    }

    /// Forgets the bars (flush, discontinuity, new caps).
    pub fn reset(&mut self) {
        *self = Self::new(self.width, self.height);
    }

    /// Each row's and column's darkness.
    fn lines(&self, y: Plane) -> Lines {
        let (w, h) = (self.width, self.height);
        let mut col_sum = vec![0u32; w];
        let mut col_peak = vec![0u8; w];
        let mut rows = vec![false; h];
        for (r, dark) in rows.iter_mut().enumerate() {
            let Some(line) = y.data.get(r * y.stride..r * y.stride + w) else { continue };
            let (mut sum, mut peak) = (0u32, 0u8);
            for ((&v, s), p) in line.iter().zip(&mut col_sum).zip(&mut col_peak) {
                sum += v as u32;
                peak = peak.max(v);
                *s += v as u32;
                *p = (*p).max(v);
            }
            *dark = peak <= BAR_PEAK && sum <= BAR_MEAN * w as u32;
        }
        let cols = col_sum.iter().zip(&col_peak).map(|(&s, &p)| p <= BAR_PEAK && s <= BAR_MEAN * h as u32).collect();
        Lines { rows, cols }
    }

    /// Whether a line (`len` samples, `at(i)` the i-th) is flat black: a bar's edge line.
    fn flat_black(len: usize, at: impl Fn(usize) -> Option<u8>) -> bool {
        let (low, peak, sum) = (0..len)
            .filter_map(at)
            .fold((u8::MAX, 0u8, 0u32), |(l, p, s), v| (l.min(v), p.max(v), s + v as u32));
        len > 0 && low >= EDGE_MIN && peak - low <= EDGE_RANGE && sum <= EDGE_MEAN * len as u32
    }

    fn flat_column(&self, y: Plane, c: usize) -> bool {
        Self::flat_black(self.height, |r| y.data.get(r * y.stride + c).copied())
    }

    fn flat_row(&self, y: Plane, r: usize) -> bool {
        Self::flat_black(self.width, |c| y.data.get(r * y.stride + c).copied())
    }

    /// Whether any bar is established.
    fn any_bar(&self) -> bool {
        self.rows.bar.iter().chain(&self.cols.bar).any(|&b| b)
    }

    /// Mean absolute luma difference between `a` and `b` over the picture (every other line).
    fn picture_change(&self, a: Plane, b: Plane) -> u32 {
        let cols: Vec<usize> = self.cols.picture().step_by(2).collect();
        let (mut sum, mut n) = (0u64, 0u64);
        for r in self.rows.picture().step_by(2) {
            let (Some(ra), Some(rb)) = (a.data.get(r * a.stride..), b.data.get(r * b.stride..)) else { continue };
            for &c in &cols {
                if let (Some(&p), Some(&q)) = (ra.get(c), rb.get(c)) {
                    sum += p.abs_diff(q) as u64;
                    n += 1;
                }
            }
        }
        sum.checked_div(n).map_or(u32::MAX, |m| m as u32)
    }

    /// The lines of established bars that the decoder's frame `decoded` breaks and that are to
    /// be taken from the frame `shown` before it: a new break after a reported loss or without a
    /// cut, an old one for at most `limit` frames (a bar still broken after that is taken to be
    /// real content).
    pub fn broken(&mut self, decoded: Plane, shown: Plane, loss: bool, limit: u32) -> BrokenBars {
        if !self.any_bar() {
            // No bars (most video): nothing to look at.
            return BrokenBars::none(self.width, self.height);
        }
        let lines = self.lines(decoded);
        let (rows, cols) = (self.rows.broken(&lines.rows), self.cols.broken(&lines.cols));
        let new = |axis: &Axis, broken: &[bool]| broken.iter().zip(&axis.repairing).any(|(&b, &r)| b && r == 0);
        let start = (new(&self.rows, &rows) || new(&self.cols, &cols))
            && (loss || self.picture_change(decoded, shown) < CUT_MAD);
        BrokenBars { rows: self.rows.repair(&rows, start, limit), cols: self.cols.repair(&cols, start, limit) }
    }

    /// The lines of established bars that `frame` breaks, whether or not they would be repaired
    /// (nothing is remembered): what a frame blended towards `frame` must not take from it.
    pub fn breaks(&self, frame: Plane) -> BrokenBars {
        if !self.any_bar() {
            return BrokenBars::none(self.width, self.height);
        }
        let lines = self.lines(frame);
        BrokenBars { rows: self.rows.broken(&lines.rows), cols: self.cols.broken(&lines.cols) }
    }

    /// Learns the bars of the frame that went out.
    pub fn learn(&mut self, shown: Plane) {
        let (w, h) = (self.width, self.height);
        let edges = [(h > 0, 0), (h > 0, h - 1)].map(|(ok, r)| ok && self.flat_row(shown, r));
        let sides = [(w > 0, 0), (w > 0, w - 1)].map(|(ok, c)| ok && self.flat_column(shown, c));
        if !edges.iter().chain(&sides).any(|&e| e) {
            // No edge line is flat black, so no bar can start there (most video): the frame's
            // line statistics are not needed.
            self.rows.forget();
            self.cols.forget();
            return;
        }
        let lines = self.lines(shown);
        self.rows.learn(&lines.rows, (edges[0], edges[1]));
        self.cols.learn(&lines.cols, (sides[0], sides[1]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(w: usize, h: usize, f: impl Fn(usize, usize) -> u8) -> Vec<u8> {
        (0..w * h).map(|i| f(i % w, i / w)).collect()
    }

    fn p(v: &[u8], stride: usize) -> Plane<'_> {
        Plane { data: v, stride }
    }

    const W: usize = 64;
    const H: usize = 64;

    /// 10-line letterbox bars (luma 16) around a textured picture.
    fn letterboxed() -> Vec<u8> {
        plane(W, H, |x, y| if (10..H - 10).contains(&y) { (90 + (x * 7 + y * 3) % 60) as u8 } else { 16 })
    }

    /// `frame` with its lines `from..to` set to `v`.
    fn with_lines(frame: &[u8], from: usize, to: usize, v: u8) -> Vec<u8> {
        frame.iter().enumerate().map(|(i, &p)| if (from..to).contains(&(i / W)) { v } else { p }).collect()
    }

    #[test]
    fn a_bar_filled_from_the_picture_is_repaired_until_the_decoder_brings_it_back() {
        let good = letterboxed();
        let grey = with_lines(&good, H - 10, H, 130);
        let mut bars = Bars::new(W, H);
        bars.learn(p(&good, W));
        // No loss reported, but the picture did not change: a fill, repaired.
        let b = bars.broken(p(&grey, W), p(&good, W), false, 100);
        assert_eq!(b.lines(), 10);
        assert!(b.rows[H - 10..].iter().all(|&r| r) && !b.cols.iter().any(|&c| c));
        // The fill stays in the next frames: still repaired...
        assert_eq!(bars.broken(p(&grey, W), p(&good, W), false, 100).lines(), 10);
        // ...until the decoder shows the bar again.
        assert!(!bars.broken(p(&good, W), p(&good, W), false, 100).any());
    }

    #[test]
    fn at_a_cut_only_a_reported_loss_starts_a_repair() {
        let good = letterboxed();
        let cut = with_lines(&plane(W, H, |x, y| (30 + (x * 13 + y * 29) % 200) as u8), 0, 10, 16);
        let mut bars = Bars::new(W, H);
        bars.learn(p(&good, W));
        assert!(!bars.broken(p(&cut, W), p(&good, W), false, 100).any());
        assert_eq!(bars.broken(p(&cut, W), p(&good, W), true, 100).lines(), 10);
    }

    #[test]
    fn breaks_reports_without_remembering() {
        let good = letterboxed();
        let grey = with_lines(&good, H - 10, H, 130);
        let mut bars = Bars::new(W, H);
        bars.learn(p(&good, W));
        assert_eq!(bars.breaks(p(&grey, W)).lines(), 10);
        assert_eq!(bars.breaks(p(&good, W)).lines(), 0);
        assert!(bars.breaks(p(&grey, W)).touches((0, H - 12, 16, 16)) && !bars.breaks(p(&grey, W)).touches((0, 0, 16, 16)));
        // Nothing was started: a cut without a reported loss still repairs nothing.
        let cut = with_lines(&plane(W, H, |x, y| (30 + (x * 13 + y * 29) % 200) as u8), 0, 10, 16);
        assert!(!bars.broken(p(&cut, W), p(&good, W), false, 100).any());
    }

    #[test]
    fn dark_content_above_black_at_the_edge_is_not_a_bar() {
        // A dawn sky at 20 over a brighter picture, then brightening: not a bar, never held.
        let sky = |level: u8| plane(W, H, move |x, y| if y < 12 { level } else { (90 + x % 30) as u8 });
        let mut bars = Bars::new(W, H);
        bars.learn(p(&sky(20), W));
        assert!(!bars.broken(p(&sky(40), W), p(&sky(20), W), true, 100).any());
    }

    #[test]
    fn flickering_inner_lines_and_subtitles_are_not_breaks() {
        let good = letterboxed();
        // The picture's innermost bar lines (2 < MIN_BREAK), and a subtitle inside the bar
        // with dark lines between it and the picture.
        for (from, to, v) in [(H - 10, H - 8, 60), (H - 7, H - 3, 235)] {
            let mut bars = Bars::new(W, H);
            bars.learn(p(&good, W));
            assert!(!bars.broken(p(&with_lines(&good, from, to, v), W), p(&good, W), true, 100).any(), "lines {from}..{to}");
        }
    }

    #[test]
    fn a_bar_broken_longer_than_the_limit_is_content() {
        let good = letterboxed();
        let grey = with_lines(&good, 0, 10, 130);
        let mut bars = Bars::new(W, H);
        bars.learn(p(&good, W));
        let mut shown = good.clone();
        let mut repaired = Vec::new();
        for _ in 0..5 {
            let b = bars.broken(p(&grey, W), p(&shown, W), false, 3);
            repaired.push(b.lines());
            // What goes out: the bar kept, or (past the limit) the decoder's frame, learnt from.
            shown = if b.any() { good.clone() } else { grey.clone() };
            bars.learn(p(&shown, W));
        }
        assert_eq!(repaired, [10, 10, 10, 0, 0]);
    }

    #[test]
    fn pillarbox_columns_are_bars_too() {
        let (w, h) = (64, 48);
        let good = plane(w, h, |x, y| if x < 8 || x >= w - 12 { 16 } else { (80 + (x + y) % 50) as u8 });
        let broken = plane(w, h, |x, y| if x < 8 && y >= 16 { 120 } else { good[y * w + x] });
        let mut bars = Bars::new(w, h);
        bars.learn(p(&good, w));
        let b = bars.broken(p(&broken, w), p(&good, w), true, 100);
        assert_eq!(b.cols.iter().filter(|&&c| c).count(), 8);
        assert!(b.cols[..8].iter().all(|&c| c) && !b.rows.iter().any(|&r| r));
    }

    #[test]
    fn dark_pictures_and_thin_dark_edges_are_not_bars() {
        // Dark from the top to the middle: a dark picture.
        let dark_top = plane(W, H, |x, y| if y < 40 { 16 } else { (90 + x % 30) as u8 });
        // A dark edge of 4 lines: too thin.
        let edge = plane(W, H, |x, y| if y < 4 { 16 } else { (90 + x % 30) as u8 });
        // Dark but textured at the frame's edge (dark content, or damage): not flat.
        let rough = plane(W, H, |x, y| if y < 12 { (8 + (x * 5 + y) % 14) as u8 } else { (90 + x % 30) as u8 });
        // A lost slice left at 0 by the decoder: flat, but sub-black.
        let hole = plane(W, H, |x, y| if y < 12 { 0 } else { (90 + x % 30) as u8 });
        let bright = plane(W, H, |_, _| 150);
        for shown in [&dark_top, &edge, &rough, &hole] {
            let mut bars = Bars::new(W, H);
            bars.learn(p(shown, W));
            assert!(!bars.broken(p(&bright, W), p(shown, W), true, 100).any());
        }
    }

    #[test]
    fn strides_wider_than_the_frame_are_read_per_row() {
        let (w, h, stride) = (32, 40, 48);
        let good = plane(stride, h, |x, y| if x >= w { 255 } else if y < 8 { 16 } else { 100 });
        let grey = plane(stride, h, |x, _| if x >= w { 255 } else { 100 });
        let mut bars = Bars::new(w, h);
        bars.learn(Plane { data: &good, stride });
        assert_eq!(bars.broken(Plane { data: &grey, stride }, Plane { data: &good, stride }, true, 10).lines(), 8);
    }
}
