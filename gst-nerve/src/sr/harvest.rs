//! Harvesting training patches while a high rung plays (nervesr at scale 1, pass-through).
//!
//! A frame at display size is ground truth for the low rungs the device will stream later. At a
//! bounded rate (patches per minute of video) the harvester cuts a luma patch, picked among a few
//! random candidates for its detail (flat sky teaches nothing), and hands it to a writer thread
//! that stores it in the episodic memory (docs/memory-format.md): `<id>.npy` first, then
//! `<id>.json` through a temporary file and a rename, so that an item exists only once complete.
//! The streaming thread never touches the disk. Nothing leaves the device.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

/// Candidate positions looked at per harvested frame.
const CANDIDATES: usize = 8;
/// A patch this flat (luma standard deviation) is not worth storing.
const MIN_STD: f64 = 4.0;
/// Stream time assumed per frame when buffers carry no timestamps.
const DEFAULT_FRAME_NS: u64 = 33_333_333;

#[derive(Debug, Clone)]
pub struct HarvestConfig {
    pub location: PathBuf,
    /// Patches per minute of video.
    pub budget: u32,
    /// Side of the square patch, in pixels.
    pub patch: u32,
}

/// What the stream says about itself (from caps and tags), stored with every patch.
#[derive(Debug, Clone, Default)]
pub struct StreamInfo {
    pub codec: Option<String>,
    pub bitrate_kbps: Option<f64>,
    pub description: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    pub mean: f64,
    pub std: f64,
    pub grad: f64,
    pub temporal: Option<f64>,
}

struct Patch {
    id: String,
    /// Index of the frame in the stream (patches of one frame share it).
    frame: u64,
    pixels: Vec<u8>,
    side: usize,
    x: usize,
    y: usize,
    width: usize,
    height: usize,
    stats: Stats,
    info: StreamInfo,
}

/// Counters readable from the element's stats.
#[derive(Debug, Clone, Copy, Default)]
pub struct HarvestCounters {
    pub patches: u64,
    pub bytes: u64,
}

pub struct Harvester {
    config: HarvestConfig,
    tx: Option<mpsc::Sender<Patch>>,
    writer: Option<thread::JoinHandle<Result<(), String>>>,
    /// Stream time (ns) at which the next patch is due.
    next_due: Option<u64>,
    frames: u64,
    rng: u64,
    previous: Vec<u8>,
    previous_size: (usize, usize),
    /// Frame number `previous` holds (the temporal statistic needs the frame just before).
    previous_frame: Option<u64>,
    last_pts: Option<u64>,
    pub counters: HarvestCounters,
    pub info: StreamInfo,
}

impl Harvester {
    pub fn new(config: HarvestConfig) -> Result<Self, String> {
        let items = config.location.join("items");
        std::fs::create_dir_all(&items).map_err(|e| format!("cannot create the harvest store {}: {e}", items.display()))?;
        let (tx, rx) = mpsc::channel::<Patch>();
        let writer = thread::Builder::new()
            .name("nervesr-harvest".into())
            .spawn(move || {
                for patch in rx {
                    write_item(&items, &patch).map_err(|e| format!("harvest write failed in {}: {e}", items.display()))?;
                }
                Ok(())
            })
            .map_err(|e| format!("cannot start the harvest writer: {e}"))?;
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1) ^ (std::process::id() as u64) << 32;
        Ok(Self {
            config,
            tx: Some(tx),
            writer: Some(writer),
            next_due: None,
            frames: 0,
            rng: seed | 1,
            previous: Vec::new(),
            previous_size: (0, 0),
            previous_frame: None,
            last_pts: None,
            counters: HarvestCounters::default(),
            info: StreamInfo::default(),
        })
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: plenty for picking positions and ids.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Looks at one frame's luma; maybe cuts a patch. Returns an error once the writer failed
    /// (disk full, store removed): the element then warns and stops harvesting.
    pub fn frame(&mut self, luma: &[u8], stride: usize, width: usize, height: usize, pts: Option<u64>) -> Result<(), String> {
        let now = pts.unwrap_or(self.frames * DEFAULT_FRAME_NS);
        let frame_ns = self.last_pts.map(|l| now.saturating_sub(l)).filter(|&d| d > 0).unwrap_or(DEFAULT_FRAME_NS);
        self.last_pts = Some(now);
        let index = self.frames;
        self.frames += 1;
        let side = self.config.patch as usize;
        let due = self.next_due.is_none_or(|d| now >= d);
        let keep_previous = self.previous_size == (width, height) && index > 0 && self.previous_frame == Some(index - 1);
        if due && width >= side && height >= side {
            let interval = 60_000_000_000 / self.config.budget.max(1) as u64;
            self.next_due = Some(now + interval);
            if let Some(patch) = self.pick(luma, stride, width, height, keep_previous, index) {
                self.counters.patches += 1;
                self.counters.bytes += patch.pixels.len() as u64;
                let sent = self.tx.as_ref().is_some_and(|tx| tx.send(patch).is_ok());
                if !sent {
                    return Err(self.finish().err().unwrap_or_else(|| "the harvest writer stopped".into()));
                }
            }
        }
        // The co-located patch of the previous frame gives the temporal statistic: keep a copy of
        // this frame only when the next one may be due, not on every frame (a 1080p copy per
        // frame would cost more than all the rest).
        let next_soon = self.next_due.is_none_or(|d| d <= now + 2 * frame_ns);
        if next_soon {
            self.previous.resize(width * height, 0);
            for row in 0..height {
                self.previous[row * width..(row + 1) * width].copy_from_slice(&luma[row * stride..row * stride + width]);
            }
            self.previous_size = (width, height);
            self.previous_frame = Some(index);
        }
        Ok(())
    }

    fn pick(&mut self, luma: &[u8], stride: usize, width: usize, height: usize, with_previous: bool, frame: u64) -> Option<Patch> {
        let side = self.config.patch as usize;
        let mut best: Option<(usize, usize, Stats)> = None;
        for _ in 0..CANDIDATES {
            let x = (self.next_random() % (width - side + 1) as u64) as usize;
            let y = (self.next_random() % (height - side + 1) as u64) as usize;
            let prev = with_previous.then_some((self.previous.as_slice(), width));
            let stats = patch_stats(luma, stride, x, y, side, prev);
            if stats.std >= MIN_STD && best.as_ref().is_none_or(|b| stats.grad > b.2.grad) {
                best = Some((x, y, stats));
            }
        }
        let (x, y, stats) = best?;
        let mut pixels = Vec::with_capacity(side * side);
        for row in y..y + side {
            pixels.extend_from_slice(&luma[row * stride + x..row * stride + x + side]);
        }
        let id = format!("{:016x}{:016x}", self.next_random(), self.next_random());
        Some(Patch { id, frame, pixels, side, x, y, width, height, stats, info: self.info.clone() })
    }

    /// Closes the writer and waits for it: every patch handed over is on disk afterwards.
    pub fn finish(&mut self) -> Result<(), String> {
        self.tx.take();
        match self.writer.take().map(|w| w.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err("the harvest writer panicked".into()),
            None => Ok(()),
        }
    }
}

impl Drop for Harvester {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Mean, standard deviation, mean absolute gradient (horizontal + vertical) and, with the
/// previous frame, mean absolute temporal difference of a square patch.
pub fn patch_stats(luma: &[u8], stride: usize, x: usize, y: usize, side: usize, previous: Option<(&[u8], usize)>) -> Stats {
    let (mut sum, mut sq, mut grad, mut temporal) = (0f64, 0f64, 0f64, 0f64);
    for row in y..y + side {
        let line = &luma[row * stride + x..row * stride + x + side];
        for (i, &v) in line.iter().enumerate() {
            let v = v as f64;
            sum += v;
            sq += v * v;
            if i + 1 < side {
                grad += (line[i + 1] as f64 - v).abs();
            }
            if row + 1 < y + side {
                grad += (luma[(row + 1) * stride + x + i] as f64 - v).abs();
            }
        }
        if let Some((prev, pw)) = previous {
            let p = &prev[row * pw + x..row * pw + x + side];
            temporal += line.iter().zip(p).map(|(&a, &b)| (a as f64 - b as f64).abs()).sum::<f64>();
        }
    }
    let n = (side * side) as f64;
    let mean = sum / n;
    Stats {
        mean,
        std: (sq / n - mean * mean).max(0.0).sqrt(),
        grad: grad / n,
        temporal: previous.map(|_| temporal / n),
    }
}

/// NPY 1.0 header for a C-order uint8 (h, w) array, padded so the data starts 64-aligned.
fn npy_header(h: usize, w: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': ({h}, {w}), }}");
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let mut header = b"\x93NUMPY\x01\x00".to_vec();
    header.extend_from_slice(&((dict.len() + pad + 1) as u16).to_le_bytes());
    header.extend_from_slice(dict.as_bytes());
    header.extend(std::iter::repeat_n(b' ', pad));
    header.push(b'\n');
    header
}

fn write_item(items: &Path, p: &Patch) -> std::io::Result<()> {
    let npy = items.join(format!("{}.npy", p.id));
    let mut f = std::fs::File::create(&npy)?;
    f.write_all(&npy_header(p.side, p.side))?;
    f.write_all(&p.pixels)?;
    f.sync_all()?;
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let meta = serde_json::json!({
        "id": p.id,
        "created": created,
        "source": format!("harvest:{}", p.info.description),
        "codec": p.info.codec,
        "crf": null,
        "bitrate_kbps": p.info.bitrate_kbps,
        "width": p.width,
        "height": p.height,
        "frame": p.frame,
        "x": p.x,
        "y": p.y,
        "patch": p.side,
        "stats": {"mean": p.stats.mean, "std": p.stats.std, "grad": p.stats.grad, "temporal": p.stats.temporal},
        "task": null,
    });
    // The .json is the commit marker: written whole to a temporary name, then renamed.
    let tmp = items.join(format!("{}.json.tmp", p.id));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(serde_json::to_string_pretty(&meta).map_err(std::io::Error::other)?.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, items.join(format!("{}.json", p.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_parsable() {
        let h = npy_header(96, 128);
        assert_eq!(h.len() % 64, 0);
        assert!(std::str::from_utf8(&h[10..]).unwrap().contains("'shape': (96, 128)")); // ok: test code
    }

    #[test]
    fn stats_see_detail_and_motion() {
        let flat = vec![100u8; 64 * 64];
        let s = patch_stats(&flat, 64, 0, 0, 32, Some((&flat, 64)));
        assert_eq!((s.std, s.grad, s.temporal), (0.0, 0.0, Some(0.0)));
        let stripes: Vec<u8> = (0..64 * 64).map(|i| if (i % 64) % 2 == 0 { 0 } else { 200 }).collect();
        let s = patch_stats(&stripes, 64, 8, 8, 32, Some((&flat, 64)));
        assert!((s.std - 100.0).abs() < 1e-9 && s.grad > 190.0 && s.temporal == Some(100.0), "{s:?}");
    }
}
