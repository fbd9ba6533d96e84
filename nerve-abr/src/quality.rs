//! Quality tables: the displayed quality of each rung with the classical upscale (level 0) and
//! with each enhancement level, and what each level costs the device.

use serde::{Deserialize, Serialize};

/// The shipped default table (measured by `nerve-eval table` over all held-out clips, see
/// `tables/make_measured.sh`), embedded so the element and the simulator need no data directory.
pub const DEFAULT_TABLE: &str = include_str!("../tables/pensieve_generic_nervesr.json");

/// One rung's row in a shipped table file (`tables/*.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RungRow {
    pub bitrate_kbps: f64,
    #[serde(default)]
    pub resolution: String,
    /// Displayed VMAF at the target size, classical upscale.
    pub vmaf: f64,
    /// Measured tables (nerve-eval) also carry VMAF NEG, PSNR-Y (dB) and the bitrate x264
    /// produced; policies read `vmaf` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmaf_neg: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psnr_y: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_kbps: Option<f64>,
    /// Enhancement levels, lightest first.
    #[serde(default)]
    pub levels: Vec<LevelRow>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LevelRow {
    pub name: String,
    /// Displayed VMAF with this enhancement.
    pub vmaf: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmaf_neg: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psnr_y: Option<f64>,
    /// Frames per second the reference device enhances at this rung.
    pub fps: f64,
    /// Measured tables: frames per CPU-second (one dedicated core's worth); informative only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps_cpu: Option<f64>,
}

/// A table file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TableFile {
    pub name: String,
    /// How the numbers were obtained (interim or measured).
    pub method: String,
    pub content: String,
    pub device: String,
    pub frame_rate: f64,
    pub chunk_s: f64,
    pub rungs: Vec<RungRow>,
}

/// Why a table file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("not a quality table: {0}")]
    Json(#[from] serde_json::Error),
    #[error("quality table {name:?}: {why}")]
    Invalid { name: String, why: String },
}

/// Highest frame rate and longest chunk a table may declare: with them the compute times stay
/// finite (`frame_rate * chunk_s / fps`).
const MAX_FRAME_RATE: f64 = 1000.0;
const MAX_CHUNK_S: f64 = 86_400.0;

impl TableFile {
    /// Parses a table file (JSON) and checks what the policies read: a frame rate and a chunk
    /// duration that are positive, at least one rung, each with a positive bitrate and a VMAF in
    /// 0..=100, and levels with a VMAF in 0..=100 and a speed of at least 0 fps (0 = not
    /// available). Without the check a negative frame rate made every level cost negative time.
    pub fn parse(text: &str) -> Result<Self, TableError> {
        let f: Self = serde_json::from_str(text)?;
        f.validate().map_err(|why| TableError::Invalid { name: f.name.clone(), why })?;
        Ok(f)
    }

    fn validate(&self) -> Result<(), String> {
        let vmaf = |v: f64| (0.0..=100.0).contains(&v);
        if !(self.frame_rate > 0.0 && self.frame_rate <= MAX_FRAME_RATE) {
            return Err(format!("frame_rate {} is outside (0, {MAX_FRAME_RATE}]", self.frame_rate));
        }
        if !(self.chunk_s > 0.0 && self.chunk_s <= MAX_CHUNK_S) {
            return Err(format!("chunk_s {} is outside (0, {MAX_CHUNK_S}]", self.chunk_s));
        }
        if self.rungs.is_empty() {
            return Err("no rungs".into());
        }
        for r in &self.rungs {
            if !(r.bitrate_kbps > 0.0 && r.bitrate_kbps.is_finite()) {
                return Err(format!("rung bitrate_kbps {} is not positive", r.bitrate_kbps));
            }
            if !vmaf(r.vmaf) {
                return Err(format!("rung {} kbit/s: vmaf {} is outside 0..=100", r.bitrate_kbps, r.vmaf));
            }
            for l in &r.levels {
                if !vmaf(l.vmaf) || l.fps < 0.0 || !l.fps.is_finite() {
                    return Err(format!(
                        "rung {} kbit/s, level {:?}: vmaf {} must be in 0..=100 and fps {} at least 0",
                        r.bitrate_kbps, l.name, l.vmaf, l.fps
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What policies read: mean quality and compute time per (rung, level).
#[derive(Clone, Debug, PartialEq)]
pub struct QualityTable {
    /// `quality[rung][level]`; level 0 is the classical upscale; `None` = level not available.
    pub quality: Vec<Vec<Option<f64>>>,
    /// Seconds of device compute to enhance one chunk, `compute_s[rung][level]` (0 for level 0).
    pub compute_s: Vec<Vec<f64>>,
}

impl QualityTable {
    /// Table with no enhancement: quality per rung only.
    pub fn classical(quality: &[f64]) -> Self {
        Self {
            quality: quality.iter().map(|q| vec![Some(*q)]).collect(),
            compute_s: quality.iter().map(|_| vec![0.0]).collect(),
        }
    }

    pub fn from_file(f: &TableFile, speed: f64) -> Self {
        let levels = f.rungs.iter().map(|r| r.levels.len()).max().unwrap_or(0);
        let mut quality = Vec::new();
        let mut compute_s = Vec::new();
        for r in &f.rungs {
            let mut q = vec![Some(r.vmaf)];
            let mut c = vec![0.0];
            for i in 0..levels {
                match r.levels.get(i) {
                    Some(l) if l.fps > 0.0 => {
                        q.push(Some(l.vmaf));
                        c.push(f.frame_rate * f.chunk_s / (l.fps * speed));
                    }
                    _ => {
                        q.push(None);
                        c.push(f64::INFINITY);
                    }
                }
            }
            quality.push(q);
            compute_s.push(c);
        }
        Self { quality, compute_s }
    }

    pub fn rungs(&self) -> usize {
        self.quality.len()
    }

    pub fn levels(&self) -> usize {
        self.quality.first().map_or(1, Vec::len)
    }

    /// Quality of (rung, level), `None` if unavailable.
    pub fn get(&self, rung: usize, level: usize) -> Option<f64> {
        self.quality.get(rung).and_then(|r| r.get(level)).copied().flatten()
    }

    pub fn cost(&self, rung: usize, level: usize) -> f64 {
        self.compute_s.get(rung).and_then(|r| r.get(level)).copied().unwrap_or(f64::INFINITY)
    }

    /// This table with the displayed qualities of `other` and its own costs: the table a learnt
    /// policy reads when it was trained on `other` (its quality features are the ones it learnt;
    /// the speeds stay this device's). Both must have the same rungs and the same levels
    /// available at each.
    pub fn with_quality_of(&self, other: &QualityTable) -> Result<QualityTable, String> {
        if other.rungs() != self.rungs() || other.levels() != self.levels() {
            return Err(format!(
                "{} rungs x {} levels where this table has {} x {}",
                other.rungs(),
                other.levels(),
                self.rungs(),
                self.levels()
            ));
        }
        for (r, (a, b)) in self.quality.iter().zip(&other.quality).enumerate() {
            if a.iter().map(Option::is_some).ne(b.iter().map(Option::is_some)) {
                return Err(format!("rung {r} has other enhancement levels"));
            }
        }
        Ok(QualityTable { quality: other.quality.clone(), compute_s: self.compute_s.clone() })
    }

    /// Classical quality of a rung (0 if missing).
    pub fn base(&self, rung: usize) -> f64 {
        self.get(rung, 0).unwrap_or(0.0)
    }

    /// Best level for `rung` that costs at most `budget_s` of compute and runs at least as fast
    /// as real time (`cost <= chunk_s`), or 0.
    pub fn best_level_within(&self, rung: usize, budget_s: f64, chunk_s: f64) -> usize {
        let mut best = 0;
        let mut best_q = self.base(rung);
        for l in 1..self.levels() {
            let c = self.cost(rung, l);
            if let Some(q) = self.get(rung, l)
                && c <= budget_s && c <= chunk_s && q > best_q {
                    best = l;
                    best_q = q;
                }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> TableFile {
        TableFile {
            name: "t".into(),
            method: "test".into(),
            content: "x".into(),
            device: "d".into(),
            frame_rate: 30.0,
            chunk_s: 4.0,
            rungs: vec![
                RungRow {
                    bitrate_kbps: 300.0,
                    resolution: String::new(),
                    vmaf: 40.0,
                    vmaf_neg: None,
                    psnr_y: None,
                    measured_kbps: None,
                    levels: vec![
                        LevelRow { name: "a".into(), vmaf: 50.0, vmaf_neg: None, psnr_y: None, fps: 60.0, fps_cpu: None },
                        LevelRow { name: "b".into(), vmaf: 60.0, vmaf_neg: None, psnr_y: None, fps: 20.0, fps_cpu: None },
                    ],
                },
                RungRow { bitrate_kbps: 1000.0, resolution: String::new(), vmaf: 90.0, vmaf_neg: None, psnr_y: None, measured_kbps: None, levels: vec![] },
            ],
        }
    }

    #[test]
    fn compute_time_is_frames_over_fps() {
        let t = QualityTable::from_file(&file(), 1.0);
        // 30 fps x 4 s = 120 frames; at 60 fps that is 2 s, at 20 fps 6 s
        assert_eq!(t.cost(0, 1), 2.0);
        assert_eq!(t.cost(0, 2), 6.0);
        assert_eq!(t.get(1, 1), None);
        assert_eq!(t.cost(1, 0), 0.0);
    }

    #[test]
    fn best_level_respects_budget_and_real_time() {
        let t = QualityTable::from_file(&file(), 1.0);
        // level 2 is slower than real time (6 s for a 4 s chunk)
        assert_eq!(t.best_level_within(0, 100.0, 4.0), 1);
        assert_eq!(t.best_level_within(0, 1.0, 4.0), 0);
        // a device twice as fast makes level 2 real time
        let fast = QualityTable::from_file(&file(), 2.0);
        assert_eq!(fast.best_level_within(0, 100.0, 4.0), 2);
    }

    #[test]
    fn quality_of_another_table_keeps_the_costs_and_refuses_another_shape() {
        let ours = QualityTable::from_file(&file(), 2.0);
        let mut theirs = QualityTable::from_file(&file(), 1.0);
        theirs.quality[0][0] = Some(11.0);
        let mixed = ours.with_quality_of(&theirs).unwrap(); // ok: test code
        assert_eq!(mixed.get(0, 0), Some(11.0));
        assert_eq!(mixed.compute_s, ours.compute_s, "the device's speeds stay");
        let classical = QualityTable::classical(&[10.0, 20.0]);
        assert!(ours.with_quality_of(&classical).is_err());
        let mut other_levels = theirs.clone();
        other_levels.quality[0][1] = None;
        assert!(ours.with_quality_of(&other_levels).unwrap_err().contains("rung 0")); // ok: test code
    }

    /// The shipped tables are measured ones for Pensieve's ladder: the simulator's
    /// Pensieve-faithfulness set-up depends on the rung bitrates, and the planner on every rung
    /// below the display size having an enhancement level with a measured speed.
    #[test]
    fn shipped_tables_are_measured_on_pensieves_ladder() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tables");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() { // ok: test code
            let path = entry.unwrap().path(); // ok: test code
            let name = path.file_name().unwrap().to_string_lossy().into_owned(); // ok: test code
            if !name.ends_with("_nervesr.json") {
                continue;
            }
            let f: TableFile = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap(); // ok: test code
            assert!(f.method.starts_with("MEASURED: nerve-eval table"), "{name}: {}", f.method);
            let kbps: Vec<f64> = f.rungs.iter().map(|r| r.bitrate_kbps).collect();
            assert_eq!(kbps, [300.0, 750.0, 1200.0, 1850.0, 2850.0, 4300.0], "{name}");
            for r in &f.rungs {
                let below_display = r.resolution != "1280x720";
                assert_eq!(r.levels.len(), usize::from(below_display), "{name} {}", r.bitrate_kbps);
                assert!(r.levels.iter().all(|l| l.fps > 0.0 && l.vmaf > 0.0), "{name}");
                assert!(r.vmaf > 0.0 && r.vmaf <= 100.0, "{name}");
            }
            let t = QualityTable::from_file(&f, 1.0);
            assert_eq!(t.rungs(), 6);
            seen += 1;
        }
        // talking_head, sports, animation, texture, screen and generic
        assert_eq!(seen, 6);
    }
}
