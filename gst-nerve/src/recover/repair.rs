//! Block copies and blends between planar frames: the classical half of the repair, and what
//! every plane but luma gets (chroma is repaired from the frame shown before, block by block).

use super::detect::BLOCK;

/// How a plane maps onto luma blocks: bytes per block horizontally, rows per block.
#[derive(Debug, Clone, Copy)]
pub struct PlaneBlocks {
    pub row_bytes: usize,
    pub rows: usize,
    pub block_bytes: usize,
    pub block_rows: usize,
    pub pixel_bytes: usize,
}

impl PlaneBlocks {
    /// A `row_bytes` x `rows` plane subsampled by 2^`x_shift` x 2^`y_shift` against luma, with
    /// `pixel_bytes` bytes per sample (2 for NV12's interleaved UV).
    pub fn new(row_bytes: usize, rows: usize, x_shift: u32, y_shift: u32, pixel_bytes: usize) -> Self {
        let block_bytes = ((BLOCK >> x_shift) * pixel_bytes).max(1);
        let block_rows = (BLOCK >> y_shift).max(1);
        Self { row_bytes, rows, block_bytes, block_rows, pixel_bytes: pixel_bytes.max(1) }
    }

    /// The byte rectangle (x, y, w, h) of luma block (`col`, `row`) in this plane.
    pub fn rect(&self, col: usize, row: usize) -> Option<(usize, usize, usize, usize)> {
        let (x, y) = (col * self.block_bytes, row * self.block_rows);
        (x < self.row_bytes && y < self.rows)
            .then(|| (x, y, self.block_bytes.min(self.row_bytes - x), self.block_rows.min(self.rows - y)))
    }
}

/// A plane to write: rows `stride` bytes apart.
pub struct PlaneMut<'a> {
    pub data: &'a mut [u8],
    pub stride: usize,
}

/// A plane to read.
#[derive(Clone, Copy)]
pub struct PlaneRef<'a> {
    pub data: &'a [u8],
    pub stride: usize,
}

/// For every flagged block (`mask` over `cols` columns), writes `weight_b` of `b` plus the rest
/// of `a` into `dst`, in 1/256 steps (`weight_b` = 0 copies `a`). Out-of-range rows are skipped.
pub fn blend_blocks(
    dst: &mut PlaneMut,
    a: PlaneRef,
    b: Option<PlaneRef>,
    weight_b: u32,
    geometry: PlaneBlocks,
    mask: &[bool],
    cols: usize,
) {
    let weight_b = if b.is_some() { weight_b.min(256) } else { 0 };
    for (i, _) in mask.iter().enumerate().filter(|(_, m)| **m) {
        let Some((x, y, w, h)) = geometry.rect(i % cols.max(1), i / cols.max(1)) else { continue };
        for row in y..y + h {
            let (d0, a0) = (row * dst.stride + x, row * a.stride + x);
            let (Some(d), Some(ra)) = (dst.data.get_mut(d0..d0 + w), a.data.get(a0..a0 + w)) else { continue };
            match b {
                Some(b) if weight_b > 0 => {
                    let b0 = row * b.stride + x;
                    let Some(rb) = b.data.get(b0..b0 + w) else { continue };
                    for ((o, &p), &q) in d.iter_mut().zip(ra).zip(rb) {
                        *o = ((p as u32 * (256 - weight_b) + q as u32 * weight_b + 128) >> 8) as u8;
                    }
                }
                _ => d.copy_from_slice(ra),
            }
        }
    }
}

/// Copies whole lines of `src` into `dst`: every plane row whose luma row is flagged in `rows`,
/// and in the other rows every byte whose luma column is flagged in `cols` (a plane of
/// `geometry` under a `luma_width` x `luma_height` frame; chroma lines follow the luma lines
/// they sit on).
pub fn copy_lines(dst: &mut PlaneMut, src: PlaneRef, geometry: PlaneBlocks, luma_width: usize, luma_height: usize, rows: &[bool], cols: &[bool]) {
    let (row_bytes, plane_rows) = (geometry.row_bytes.max(1), geometry.rows.max(1));
    let samples = (row_bytes / geometry.pixel_bytes).max(1);
    let col_of = |b: usize| b / geometry.pixel_bytes * luma_width / samples;
    let any_col = cols.iter().any(|&c| c);
    for r in 0..geometry.rows {
        let (d0, s0) = (r * dst.stride, r * src.stride);
        let (Some(d), Some(s)) = (dst.data.get_mut(d0..d0 + geometry.row_bytes), src.data.get(s0..s0 + geometry.row_bytes)) else { continue };
        if rows.get(r * luma_height / plane_rows).copied().unwrap_or(false) {
            d.copy_from_slice(s);
        } else if any_col {
            for (b, (o, &v)) in d.iter_mut().zip(s).enumerate() {
                if cols.get(col_of(b)).copied().unwrap_or(false) {
                    *o = v;
                }
            }
        }
    }
}

/// Spatial concealment where no earlier frame can help (damage in the first frames, or a region
/// never shown intact): each flagged run of blocks in a block column is filled, column by column
/// of pixels, by interpolating between the rows just above and just below it (lost slices are
/// horizontal bands, so their vertical neighbours are the nearest intact pixels). `flat` fills
/// a column with no intact neighbour at all.
pub fn fill_vertical(dst: &mut PlaneMut, geometry: PlaneBlocks, mask: &[bool], cols: usize, flat: u8) {
    let cols = cols.max(1);
    let block_rows = mask.len().div_ceil(cols);
    for c in 0..cols {
        let mut r = 0;
        while r < block_rows {
            if !mask.get(r * cols + c).copied().unwrap_or(false) {
                r += 1;
                continue;
            }
            let start = r;
            while r < block_rows && mask.get(r * cols + c).copied().unwrap_or(false) {
                r += 1;
            }
            let Some((x, y0, w, _)) = geometry.rect(c, start) else { continue };
            let y1 = (r * geometry.block_rows).min(geometry.rows);
            let above = y0.checked_sub(1);
            let below = (y1 < geometry.rows).then_some(y1);
            for dx in x..x + w {
                let at = |row: usize| dst.data.get(row * dst.stride + dx).copied();
                let (a, b) = (above.and_then(at), below.and_then(at));
                let span = (y1 - y0 + 1) as u32;
                for (k, row) in (y0..y1).enumerate() {
                    let v = match (a, b) {
                        (Some(a), Some(b)) => {
                            let t = k as u32 + 1;
                            ((a as u32 * (span - t) + b as u32 * t + span / 2) / span) as u8
                        }
                        (Some(v), None) | (None, Some(v)) => v,
                        (None, None) => flat,
                    };
                    if let Some(p) = dst.data.get_mut(row * dst.stride + dx) {
                        *p = v;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_only_flagged_blocks_in_each_plane_geometry() {
        // A 32x16 frame: two luma blocks; the I420 chroma plane is 16x8 with 8x8 blocks.
        let luma = PlaneBlocks::new(32, 16, 0, 0, 1);
        let chroma = PlaneBlocks::new(16, 8, 1, 1, 1);
        assert_eq!((chroma.block_bytes, chroma.block_rows), (8, 8));
        let src = vec![200u8; 32 * 16];
        let mut dst = vec![10u8; 32 * 16];
        blend_blocks(
            &mut PlaneMut { data: &mut dst, stride: 32 },
            PlaneRef { data: &src, stride: 32 },
            None,
            0,
            luma,
            &[false, true],
            2,
        );
        assert!(dst.chunks(32).all(|r| r[..16].iter().all(|&v| v == 10) && r[16..].iter().all(|&v| v == 200)));
        let mut c = vec![0u8; 16 * 8];
        let (a, b) = (vec![100u8; 16 * 8], vec![200u8; 16 * 8]);
        blend_blocks(
            &mut PlaneMut { data: &mut c, stride: 16 },
            PlaneRef { data: &a, stride: 16 },
            Some(PlaneRef { data: &b, stride: 16 }),
            128,
            chroma,
            &[true, false],
            2,
        );
        assert!(c.chunks(16).all(|r| r[..8].iter().all(|&v| v == 150) && r[8..].iter().all(|&v| v == 0)));
    }

    #[test]
    fn vertical_fill_interpolates_between_intact_rows() {
        let g = PlaneBlocks::new(16, 48, 0, 0, 1);
        let mut d: Vec<u8> = (0..48).flat_map(|r| vec![if r < 16 { 100 } else if r < 32 { 0 } else { 200 }; 16]).collect();
        fill_vertical(&mut PlaneMut { data: &mut d, stride: 16 }, g, &[false, true, false], 1, 128);
        let col: Vec<u8> = (0..48).map(|r| d[r * 16 + 3]).collect();
        assert_eq!(col[15], 100);
        assert_eq!(col[32], 200);
        assert!(col[16..32].windows(2).all(|w| w[0] <= w[1]) && col[16] > 100 && col[31] < 200, "{col:?}");
        let mut top = vec![0u8; 16 * 48];
        fill_vertical(&mut PlaneMut { data: &mut top, stride: 16 }, g, &[true, true, true], 1, 128);
        assert!(top.iter().all(|&v| v == 128));
    }

    #[test]
    fn lines_follow_luma_in_subsampled_planes() {
        // 8x4 luma: rows 0 and 3, and columns 6 and 7, come from the source; I420 chroma is 4x2.
        let (rows, cols) = ([true, false, false, true], [false, false, false, false, false, false, true, true]);
        let mut y = vec![0u8; 32];
        copy_lines(&mut PlaneMut { data: &mut y, stride: 8 }, PlaneRef { data: &[9u8; 32], stride: 8 }, PlaneBlocks::new(8, 4, 0, 0, 1), 8, 4, &rows, &cols);
        let expect: Vec<u8> = (0..32).map(|i| if i / 8 == 0 || i / 8 == 3 || i % 8 >= 6 { 9 } else { 0 }).collect();
        assert_eq!(y, expect);
        let mut u = vec![0u8; 8];
        copy_lines(&mut PlaneMut { data: &mut u, stride: 4 }, PlaneRef { data: &[5u8; 8], stride: 4 }, PlaneBlocks::new(4, 2, 1, 1, 1), 8, 4, &rows, &cols);
        assert_eq!(u, [5, 5, 5, 5, 0, 0, 0, 5]);
        // NV12's interleaved UV: a byte pair per chroma sample.
        let mut uv = vec![0u8; 16];
        copy_lines(&mut PlaneMut { data: &mut uv, stride: 8 }, PlaneRef { data: &[7u8; 16], stride: 8 }, PlaneBlocks::new(8, 2, 1, 1, 2), 8, 4, &[false; 4], &cols);
        assert_eq!(&uv[..8], &[0, 0, 0, 0, 0, 0, 7, 7]);
    }

    #[test]
    fn odd_planes_clip_the_last_block() {
        let g = PlaneBlocks::new(17, 9, 1, 1, 1);
        assert_eq!(g.rect(2, 1), Some((16, 8, 1, 1)));
        assert_eq!(g.rect(3, 0), None);
        let nv12 = PlaneBlocks::new(34, 9, 1, 1, 2);
        assert_eq!(nv12.rect(2, 0), Some((32, 0, 2, 8)));
    }
}
