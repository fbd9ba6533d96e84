//! The active picture: a clip's frames without their static letterbox or pillarbox bars.
//!
//! Viewers do not watch black bars, and bars are where upscalers and receivers differ most (a
//! bar's sharp edge against the picture is easy to gain on and a damaged bar is easy to repair),
//! so every headline figure is scored inside the active picture. A bar is found on the original,
//! over the whole clip: lines at an edge that are dark in every frame. The rule is the one
//! `nerverecover`'s bar detector uses for one frame (`gst-nerve/src/recover/bars.rs`: mean luma
//! at most 24, no pixel above 40), applied to every frame, so content that is dark for a moment
//! (a night scene, a fade) is not taken for a bar.

use serde::Serialize;

use crate::frame::Frame;

/// Mean luma at most this for a bar line (video-range black is 16).
const BAR_MEAN: f64 = 24.0;
/// No pixel of a bar line above this.
const BAR_MAX: u8 = 40;
/// Fewer dark lines than this at an edge are a dark border of the picture, not a bar.
const MIN_BAR: usize = 4;

/// A rectangle of the frame, in luma pixels; `x`, `y`, `width` and `height` are even, so the
/// chroma planes of an I420 frame crop with it exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Region {
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
}

impl Region {
    pub fn whole(frame: &Frame) -> Self {
        Self { x: 0, y: 0, width: frame.width, height: frame.height }
    }

    pub fn is_whole(&self, frame: &Frame) -> bool {
        *self == Self::whole(frame)
    }
}

impl std::fmt::Display for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}+{}+{}", self.width, self.height, self.x, self.y)
    }
}

fn dark(line: impl Iterator<Item = u8> + Clone) -> bool {
    let (mut sum, mut n) = (0u64, 0u64);
    for v in line.clone() {
        if v > BAR_MAX {
            return false;
        }
        sum += v as u64;
        n += 1;
    }
    n > 0 && sum as f64 / n as f64 <= BAR_MEAN
}

/// How many lines from one edge are dark in every frame (at most a third of the dimension).
fn bar_depth(frames: &[Frame], count: usize, limit: usize, line: impl Fn(&Frame, usize) -> Vec<u8>) -> usize {
    let mut depth = 0;
    while depth < count.min(limit) && frames.iter().all(|f| dark(line(f, depth).into_iter())) {
        depth += 1;
    }
    if depth < MIN_BAR { 0 } else { depth }
}

/// The active picture of a clip: the frames' area without the bars every frame has. Sizes are
/// rounded inwards to even numbers; a clip without bars gets the whole frame.
pub fn active_picture(frames: &[Frame]) -> Region {
    let Some(first) = frames.first() else { return Region { x: 0, y: 0, width: 0, height: 0 } };
    let (w, h) = (first.width, first.height);
    if frames.iter().any(|f| f.width != w || f.height != h) || w < 8 || h < 8 {
        return Region::whole(first);
    }
    let row = |f: &Frame, r: usize| f.y()[r * f.width..(r + 1) * f.width].to_vec();
    let col = |f: &Frame, c: usize| (0..f.height).map(|r| f.y()[r * f.width + c]).collect::<Vec<u8>>();
    let top = bar_depth(frames, h, h / 3, row);
    let bottom = bar_depth(frames, h, h / 3, |f, i| row(f, h - 1 - i));
    let left = bar_depth(frames, w, w / 3, col);
    let right = bar_depth(frames, w, w / 3, |f, i| col(f, w - 1 - i));
    let (x0, y0) = (left.next_multiple_of(2), top.next_multiple_of(2));
    let (x1, y1) = ((w - right) / 2 * 2, (h - bottom) / 2 * 2);
    if x1 <= x0 + 16 || y1 <= y0 + 16 {
        return Region::whole(first);
    }
    Region { x: x0, y: y0, width: x1 - x0, height: y1 - y0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64x48 frame of mid-grey texture with black bars `top` and `left` lines deep (and as deep
    /// on the opposite sides).
    fn barred(top: usize, left: usize, seed: u8) -> Frame {
        let mut f = Frame::new(64, 48);
        for r in 0..48 {
            for c in 0..64 {
                let bar = r < top || r >= 48 - top || c < left || c >= 64 - left;
                f.y_mut()[r * 64 + c] = if bar { 16 + (r + c) as u8 % 3 } else { 60 + ((r * 7 + c * 13) as u8 ^ seed) % 120 };
            }
        }
        f
    }

    #[test]
    fn letterbox_and_pillarbox_bars_are_cut_off_evenly() {
        let frames = [barred(6, 0, 1), barred(6, 0, 2)];
        assert_eq!(active_picture(&frames), Region { x: 0, y: 6, width: 64, height: 36 });
        let frames = [barred(0, 5, 1), barred(0, 5, 9)];
        // 5 dark columns: rounded inwards to 6 on the left, 64 - 5 = 59 -> 58 on the right
        assert_eq!(active_picture(&frames), Region { x: 6, y: 0, width: 52, height: 48 });
    }

    #[test]
    fn thin_dark_borders_and_passing_darkness_are_not_bars() {
        assert!(active_picture(&[barred(2, 2, 1)]).is_whole(&barred(0, 0, 1)));
        // dark in one frame only (a fade, a night shot): the picture stays whole
        let mut dark_frame = barred(0, 0, 1);
        dark_frame.y_mut().iter_mut().for_each(|v| *v = 18);
        assert!(active_picture(&[dark_frame, barred(0, 0, 3)]).is_whole(&barred(0, 0, 1)));
        // a bright pixel in a dark line breaks the bar there: the top bar is 1 line, too thin to
        // count; the bottom one stays
        let mut spot = barred(6, 0, 1);
        spot.y_mut()[64 + 10] = 200;
        assert_eq!(active_picture(&[spot]), Region { x: 0, y: 0, width: 64, height: 42 });
    }
}
