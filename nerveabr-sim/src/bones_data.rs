//! The BONES scenario's inputs (`../shared/data/abr_bones/`): the Big Buck Bunny ladder with
//! per-segment sizes, and a quality + speed table of one enhancement setup.

use std::path::Path;

use nerve_abr::QualityTable;

#[derive(serde::Deserialize)]
struct VideoInfo {
    segment_duration_ms: f64,
    bitrates_kbps: Vec<f64>,
    segment_sizes_bits: Vec<Vec<f64>>,
}

#[derive(serde::Deserialize)]
struct EnhanceFile {
    frame_rate: f64,
    enhancement_fps: Vec<Vec<f64>>,
    base_quality_vmaf: Vec<Vec<f64>>,
    enhanced_quality_vmaf: Vec<Vec<Vec<f64>>>,
}

/// Everything the scenario needs, in BONES' own units (ms, kbit/s, bits).
#[derive(Clone, Debug)]
pub struct BonesData {
    pub seg_ms: f64,
    pub bitrates_kbps: Vec<f64>,
    /// `seg_bits[segment][rung]`.
    pub seg_bits: Vec<Vec<f64>>,
    /// `vmaf_seg[segment][rung][level]`, level 0 = no enhancement; `-inf` = not available.
    pub vmaf_seg: Vec<Vec<Vec<f64>>>,
    /// `enh_ms[rung][level]`: compute time to enhance one segment.
    pub enh_ms: Vec<Vec<f64>>,
    /// Mean over segments of `vmaf_seg` (what controllers know: BONES' default, no `--know_seg`).
    pub vmaf_avg: Vec<Vec<f64>>,
    /// File name of the enhancement table.
    pub enhance_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}: {1}")]
    Json(String, serde_json::Error),
    #[error("{0}: {1}")]
    Shape(String, String),
}

fn load<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, DataError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| DataError::Io(p.clone(), e))?;
    serde_json::from_str(&text).map_err(|e| DataError::Json(p, e))
}

impl BonesData {
    /// `dir` holds `bbb_video_info.json`; `enhance` is one of its enhancement files.
    pub fn load(dir: &Path, enhance: &str) -> Result<Self, DataError> {
        let v: VideoInfo = load(&dir.join("bbb_video_info.json"))?;
        let e: EnhanceFile = load(&dir.join(enhance))?;
        let shape = |why: &str| DataError::Shape(enhance.to_string(), why.to_string());
        let n_rung = v.bitrates_kbps.len();
        let n_seg = v.segment_sizes_bits.len();
        let n_method = e.enhancement_fps.first().map_or(0, Vec::len);
        if e.base_quality_vmaf.len() + 1 != n_rung || e.enhancement_fps.len() + 1 != n_rung {
            return Err(shape("table rows must cover every rung but the top one"));
        }
        if e.base_quality_vmaf.iter().any(|r| r.len() != n_seg) {
            return Err(shape("base quality must have one value per segment"));
        }
        // As BONES' `_parse_enhance`: the top rung scores 100; enhancement time is
        // frames / fps, 0 where unavailable (fps -1) and for the top rung; unavailable
        // qualities are -inf.
        let mut vmaf_seg = vec![vec![vec![f64::NEG_INFINITY; n_method + 1]; n_rung]; n_seg];
        for (s, seg) in vmaf_seg.iter_mut().enumerate() {
            for (r, row) in seg.iter_mut().enumerate() {
                row[0] = if r + 1 == n_rung { 100.0 } else { e.base_quality_vmaf[r][s] };
                if let Some(levels) = e.enhanced_quality_vmaf.get(r) {
                    for (m, q) in levels.iter().enumerate().take(n_method) {
                        let x = q.get(s).copied().ok_or_else(|| shape("enhanced quality too short"))?;
                        row[m + 1] = if x < 0.0 { f64::NEG_INFINITY } else { x };
                    }
                }
            }
        }
        let mut enh_ms = vec![vec![0.0; n_method + 1]; n_rung];
        for (r, fps) in e.enhancement_fps.iter().enumerate() {
            for (m, f) in fps.iter().enumerate().take(n_method) {
                let t = e.frame_rate * v.segment_duration_ms / f;
                enh_ms[r][m + 1] = if t < 0.0 { 0.0 } else { t };
            }
        }
        let mut vmaf_avg = vec![vec![0.0; n_method + 1]; n_rung];
        for (r, row) in vmaf_avg.iter_mut().enumerate() {
            for (m, x) in row.iter_mut().enumerate() {
                *x = vmaf_seg.iter().map(|s| s[r][m]).sum::<f64>() / n_seg as f64;
            }
        }
        Ok(Self {
            seg_ms: v.segment_duration_ms,
            bitrates_kbps: v.bitrates_kbps,
            seg_bits: v.segment_sizes_bits,
            vmaf_seg,
            enh_ms,
            vmaf_avg,
            enhance_name: enhance.to_string(),
        })
    }

    pub fn segments(&self) -> usize {
        self.seg_bits.len()
    }

    /// The mean table as policies read it (compute in seconds; unavailable levels `None`).
    pub fn quality_table(&self) -> QualityTable {
        QualityTable {
            quality: self
                .vmaf_avg
                .iter()
                .map(|r| r.iter().map(|q| q.is_finite().then_some(*q)).collect())
                .collect(),
            compute_s: self
                .enh_ms
                .iter()
                .zip(&self.vmaf_avg)
                .map(|(t, q)| t.iter().zip(q).map(|(t, q)| if q.is_finite() { t / 1000.0 } else { f64::INFINITY }).collect())
                .collect(),
        }
    }
}
