//! Turning the recovery model's luma into a whole frame.
//!
//! The model chooses among three sources per 16x16 block (see `learning/src/nerve_learning/recovery/train.py`):
//! the decoder's frame, the decoder's frame carrying on the correction shown last time (the
//! decoder keeps predicting from its own wrong guess of a lost region, so the same difference
//! keeps it repaired), and the frame shown before. Its output is luma only; each block then
//! takes the source whose luma is nearest to what the model output (the one it chose; for a
//! model that blends, the closest), and that source's chroma. A block
//! the model left at the decoder's luma stays the decoder's bytes exactly, so a frame the model
//! leaves alone goes out untouched.

use super::detect::Detector;
use super::repair::{PlaneBlocks, PlaneMut, PlaneRef};

/// Mean absolute luma difference under which a block counts as the decoder's own.
const KEEP_MAD: f32 = 0.75;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Decoded,
    Carried,
    Shown,
}

/// The decoder's sample with the correction shown last time carried on it.
fn carried(d: u8, d_prev: u8, s_prev: u8) -> u8 {
    (d as i16 + s_prev as i16 - d_prev as i16).clamp(0, 255) as u8
}

/// Per block of `detector`'s grid, which source the model's luma `out` (`width` samples a row)
/// is nearest to.
pub fn choose(out: &[u8], width: usize, d: PlaneRef, d_prev: PlaneRef, s_prev: PlaneRef, detector: &Detector) -> Vec<Source> {
    (0..detector.cols() * detector.rows())
        .map(|b| {
            let (x, y, w, h) = detector.rect(b);
            let (mut to_d, mut to_c, mut to_s) = (0u64, 0u64, 0u64);
            for row in y..y + h {
                fn at<'a>(p: PlaneRef<'a>, row: usize, x: usize, w: usize) -> Option<&'a [u8]> {
                    p.data.get(row * p.stride + x..row * p.stride + x + w)
                }
                let (Some(o), Some(rd), Some(rp), Some(rs)) =
                    (out.get(row * width + x..row * width + x + w), at(d, row, x, w), at(d_prev, row, x, w), at(s_prev, row, x, w))
                else {
                    continue;
                };
                for i in 0..w {
                    to_d += o[i].abs_diff(rd[i]) as u64;
                    to_c += o[i].abs_diff(carried(rd[i], rp[i], rs[i])) as u64;
                    to_s += o[i].abs_diff(rs[i]) as u64;
                }
            }
            if (to_d as f32) < KEEP_MAD * (w * h).max(1) as f32 {
                Source::Decoded
            } else if to_c <= to_s {
                Source::Carried
            } else {
                Source::Shown
            }
        })
        .collect()
}

/// Writes `d + s_prev - d_prev` into the flagged blocks of one plane (`dst` holds `d` already).
pub fn carry_blocks(dst: &mut PlaneMut, d_prev: PlaneRef, s_prev: PlaneRef, geometry: PlaneBlocks, mask: &[bool], cols: usize) {
    for (i, _) in mask.iter().enumerate().filter(|(_, m)| **m) {
        let Some((x, y, w, h)) = geometry.rect(i % cols.max(1), i / cols.max(1)) else { continue };
        for row in y..y + h {
            let (o, p, s) = (row * dst.stride + x, row * d_prev.stride + x, row * s_prev.stride + x);
            let (Some(out), Some(rp), Some(rs)) = (dst.data.get_mut(o..o + w), d_prev.data.get(p..p + w), s_prev.data.get(s..s + w))
            else {
                continue;
            };
            for ((v, &dp), &sp) in out.iter_mut().zip(rp).zip(rs) {
                *v = carried(*v, dp, sp);
            }
        }
    }
}

/// Copies the model's luma into the flagged blocks.
pub fn write_luma(dst: &mut PlaneMut, out: &[u8], width: usize, mask: &[bool], detector: &Detector) {
    for (b, _) in mask.iter().enumerate().filter(|(_, m)| **m) {
        let (x, y, w, h) = detector.rect(b);
        for row in y..y + h {
            let o = row * dst.stride + x;
            if let (Some(d), Some(s)) = (dst.data.get_mut(o..o + w), out.get(row * width + x..row * width + x + w)) {
                d.copy_from_slice(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(v: &[u8]) -> PlaneRef<'_> {
        PlaneRef { data: v, stride: 32 }
    }

    #[test]
    fn each_block_takes_the_nearest_source() {
        // Two 16x16 blocks side by side.
        let det = Detector::new(32, 16);
        let d = vec![100u8; 32 * 16];
        let d_prev = vec![90u8; 32 * 16];
        let s_prev = vec![50u8; 32 * 16];
        // Left block: the decoder's value; right block: the carried one (100 + 50 - 90 = 60).
        let out: Vec<u8> = (0..32 * 16).map(|i| if i % 32 < 16 { 100 } else { 60 }).collect();
        let c = choose(&out, 32, plane(&d), plane(&d_prev), plane(&s_prev), &det);
        assert_eq!(c, vec![Source::Decoded, Source::Carried]);
        let held: Vec<u8> = vec![51u8; 32 * 16];
        let c = choose(&held, 32, plane(&d), plane(&d_prev), plane(&s_prev), &det);
        assert_eq!(c, vec![Source::Shown, Source::Shown]);
    }

    #[test]
    fn carrying_clamps_and_touches_only_flagged_blocks() {
        let g = PlaneBlocks::new(32, 16, 0, 0, 1);
        let mut dst = vec![250u8; 32 * 16];
        let d_prev = vec![10u8; 32 * 16];
        let s_prev = vec![40u8; 32 * 16];
        carry_blocks(&mut PlaneMut { data: &mut dst, stride: 32 }, plane(&d_prev), plane(&s_prev), g, &[false, true], 2);
        assert!(dst.chunks(32).all(|r| r[..16].iter().all(|&v| v == 250) && r[16..].iter().all(|&v| v == 255)));
    }
}
