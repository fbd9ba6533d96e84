//! The clips the protocols run on: `learning/clips.toml`, compiled in, the same list the learning
//! package trains from, with each clip's source (the film, camera or capture it comes from).
//!
//! The default evaluation set is leave-one-source-out: every clip that no training used whose
//! source no training clip shares. A clip of a source the models were trained on (another
//! capture of the same PDF page, another clip of the same camera) would flatter them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

const CLIPS_TOML: &str = include_str!("../../learning/clips.toml");

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Training, distillation, calibration and tuning.
    Train,
    /// Never trained on; the model cards' held-out clips (some SR choices looked at them).
    HeldOut,
    /// Used by no training and no SR choice.
    Unseen,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Entry {
    /// Relative to the shared data directory.
    pub path: String,
    pub content: String,
    pub source: String,
    pub role: Role,
    /// Headerless I420 needs its size.
    pub raw_size: Option<[usize; 2]>,
    pub fps: Option<u32>,
}

#[derive(Deserialize)]
struct File {
    clip: Vec<Entry>,
}

/// Every listed clip, in the file's order.
pub fn all() -> Result<Vec<Entry>> {
    Ok(toml::from_str::<File>(CLIPS_TOML).context("learning/clips.toml")?.clip)
}

/// The leave-one-source-out set and the clips it leaves out, each with the reason.
pub struct Selection {
    pub clips: Vec<Entry>,
    pub left_out: Vec<(Entry, String)>,
}

pub fn leave_one_source_out(entries: &[Entry]) -> Selection {
    let trained: Vec<&Entry> = entries.iter().filter(|e| e.role == Role::Train).collect();
    let mut clips = Vec::new();
    let mut left_out = Vec::new();
    for e in entries.iter().filter(|e| e.role != Role::Train) {
        match trained.iter().find(|t| t.source == e.source) {
            Some(t) => left_out.push((e.clone(), format!("its source ({}) is also the training clip {}", e.source, t.path))),
            None => clips.push(e.clone()),
        }
    }
    Selection { clips, left_out }
}

/// The shared data directory: `NERVE_DATA`, else ../shared/data beside the repository.
pub fn data_dir(given: Option<PathBuf>) -> PathBuf {
    given
        .or_else(|| std::env::var_os("NERVE_DATA").map(PathBuf::from))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_evaluation_clip_shares_a_source_with_training() {
        let entries = all().unwrap();
        assert!(entries.iter().filter(|e| e.role == Role::Train).count() >= 5);
        let sel = leave_one_source_out(&entries);
        let trained: Vec<&str> = entries.iter().filter(|e| e.role == Role::Train).map(|e| e.source.as_str()).collect();
        assert!(sel.clips.iter().all(|c| !trained.contains(&c.source.as_str()) && c.role != Role::Train));
        // the second capture of the training PDF page is left out, with the reason
        let pdf = sel.left_out.iter().find(|(e, _)| e.path.contains("Cisco_Adobe_PDF")).expect("PDF left out");
        assert!(pdf.1.contains("Adobe_PDF_sample_a_1024x768_50Frms"), "{}", pdf.1);
        assert!(sel.clips.len() >= 5, "too few clips left to evaluate on");
    }
}
