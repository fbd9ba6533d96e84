//! The model manifest: what each shipped model is, so nothing is inferred from a file name.
//!
//! `models/manifest.toml` holds one `[[model]]` table per model. The engine reads the task, the
//! scale, the tensor layout and the number of frames from here, checks the file's sha256, and
//! checks the real input/output shapes of the network against these fields.

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::EngineError;

pub const MANIFEST_FILE: &str = "manifest.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    SuperResolution,
    Recovery,
}

/// How a tensor maps onto a frame.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TensorSpec {
    /// Name of the graph input or output.
    pub name: String,
    /// Only "NCHW" is produced by the training side today.
    pub layout: String,
    /// Colour planes carried: "Y" (luma only, chroma handled classically) is what ships.
    pub planes: String,
    /// Value range of the samples: "unit" means 0.0..=1.0 for 0..=255.
    #[serde(default = "unit")]
    pub range: String,
}

fn unit() -> String {
    "unit".into()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModelEntry {
    pub name: String,
    pub file: String,
    pub task: Task,
    /// Upscale factor (1 for models that keep the size).
    pub scale: u32,
    /// Frames fed at once: 1 for single-frame models, N for the current frame and N-1 previous
    /// ones, stacked on the channel axis oldest first.
    #[serde(default = "one")]
    pub frames: u32,
    pub input: TensorSpec,
    pub output: TensorSpec,
    pub sha256: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub card: Option<String>,
    /// True for the model `nervesr` uses when no model is named, for its scale.
    #[serde(default)]
    pub default: bool,
    /// The default for its scale instead, for inputs of at least this many rows: a faster model
    /// for large frames (540p -> 1080p) beside a stronger default for small ones, so that an
    /// element left at its default stays real time at every size. The largest threshold an
    /// input reaches wins; below every threshold `default` decides.
    #[serde(default)]
    pub default_from_rows: Option<u32>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
struct ManifestFile {
    #[serde(rename = "model", default)]
    models: Vec<ModelEntry>,
}

/// A manifest and the directory its relative file names are resolved in.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub dir: PathBuf,
    pub models: Vec<ModelEntry>,
}

/// A model ready to load: its entry and the file on disk.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    pub entry: ModelEntry,
    pub path: PathBuf,
    /// The directory of the manifest that describes it: the model file must really be inside
    /// (a symbolic link leading out is refused when the file is read).
    pub dir: PathBuf,
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Self, EngineError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EngineError::Manifest(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text, path)
    }

    /// A manifest from its text; `path` is where it was read from (errors name it, and its
    /// directory resolves the relative file names). Nothing is read from disk.
    pub fn parse(text: &str, path: &Path) -> Result<Self, EngineError> {
        let file: ManifestFile = toml::from_str(text)
            .map_err(|e| EngineError::Manifest(format!("{} is malformed: {e}", path.display())))?;
        for m in &file.models {
            m.validate().map_err(|e| EngineError::Manifest(format!("{}: {e}", path.display())))?;
        }
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Self { dir, models: file.models })
    }

    pub fn path_of(&self, entry: &ModelEntry) -> PathBuf {
        self.dir.join(&entry.file)
    }

    fn resolved(&self, entry: &ModelEntry) -> ResolvedModel {
        ResolvedModel { entry: entry.clone(), path: self.path_of(entry), dir: self.dir.clone() }
    }
}

impl ModelEntry {
    fn validate(&self) -> Result<(), String> {
        if !(1..=8).contains(&self.scale) {
            return Err(format!("model {}: scale {} is outside 1..=8", self.name, self.scale));
        }
        if !(1..=8).contains(&self.frames) {
            return Err(format!("model {}: frames {} is outside 1..=8", self.name, self.frames));
        }
        for t in [&self.input, &self.output] {
            if t.layout != "NCHW" || t.planes != "Y" || t.range != "unit" {
                return Err(format!(
                    "model {}: tensor {} has layout {}/{}/{}; only NCHW/Y/unit is supported",
                    self.name, t.name, t.layout, t.planes, t.range
                ));
            }
        }
        // `file` is joined onto the manifest's directory: an absolute path would replace it and
        // `..` would climb out of it, so a manifest could make the engine read (and hash) any file.
        let components = Path::new(&self.file).components();
        let inside = components.clone().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
            && components.clone().any(|c| matches!(c, Component::Normal(_)));
        if !inside {
            return Err(format!(
                "model {}: file {:?} must be a relative path inside the manifest's directory (no '..', not absolute, not empty)",
                self.name, self.file
            ));
        }
        if self.default_from_rows == Some(0) {
            return Err(format!("model {}: default_from_rows must be 1 or more (leave it out for the plain default)", self.name));
        }
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("model {}: sha256 must be 64 hex digits", self.name));
        }
        Ok(())
    }
}

/// Directories that may hold a `manifest.toml`, in order: `NERVE_MODEL_PATH` (colon separated),
/// the directory installed by meson, then the source tree's `models/`.
pub fn manifest_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("NERVE_MODEL_PATH")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    if let Some(dir) = option_env!("NERVE_MODELS_INSTALL_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../models"));
    dirs
}

/// Finds the model a `model` property names: empty means the default for `task` and `scale`, a
/// value with a path separator or an `.onnx` suffix is a file (its entry is looked up in the
/// manifest beside it), anything else is a manifest name.
pub fn resolve(spec: &str, task: Task, scale: u32) -> Result<ResolvedModel, EngineError> {
    resolve_in(spec, task, scale, &manifest_dirs())
}

pub fn resolve_in(spec: &str, task: Task, scale: u32, dirs: &[PathBuf]) -> Result<ResolvedModel, EngineError> {
    resolve_sized_in(spec, task, scale, 0, dirs)
}

/// [`resolve`] for an input of `rows` rows (0: not known yet): an empty `spec` then takes an
/// entry's `default_from_rows` into account.
pub fn resolve_sized(spec: &str, task: Task, scale: u32, rows: u32) -> Result<ResolvedModel, EngineError> {
    resolve_sized_in(spec, task, scale, rows, &manifest_dirs())
}

/// The default of one manifest for `task`, `scale` and an input of `rows` rows: the entry whose
/// `default_from_rows` is the largest one `rows` reaches, else the plain default.
fn default_entry(manifest: &Manifest, task: Task, scale: u32, rows: u32) -> Option<&ModelEntry> {
    let ours = |m: &&ModelEntry| m.task == task && m.scale == scale;
    manifest
        .models
        .iter()
        .filter(ours)
        .filter(|m| m.default_from_rows.is_some_and(|r| r <= rows))
        .max_by_key(|m| m.default_from_rows)
        .or_else(|| manifest.models.iter().filter(ours).find(|m| m.default))
}

pub fn resolve_sized_in(spec: &str, task: Task, scale: u32, rows: u32, dirs: &[PathBuf]) -> Result<ResolvedModel, EngineError> {
    let is_file = spec.contains('/') || spec.ends_with(".onnx");
    if is_file {
        let path = PathBuf::from(spec);
        if !path.is_file() {
            return Err(EngineError::ModelMissing(path));
        }
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let manifest_path = dir.join(MANIFEST_FILE);
        if !manifest_path.is_file() {
            return Err(EngineError::Manifest(format!(
                "model {} has no {} beside it; every model needs a manifest entry (task, scale, layout, frames, sha256)",
                path.display(),
                MANIFEST_FILE
            )));
        }
        let manifest = Manifest::load(&manifest_path)?;
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let entry = manifest
            .models
            .iter()
            .find(|m| Path::new(&m.file).file_name().and_then(|n| n.to_str()) == Some(file_name))
            .ok_or_else(|| {
                EngineError::Manifest(format!("{} has no entry for {}", manifest_path.display(), file_name))
            })?;
        let dir = dir.to_path_buf();
        return Ok(ResolvedModel { entry: entry.clone(), path, dir });
    }
    let mut searched = Vec::new();
    for dir in dirs {
        let manifest_path = dir.join(MANIFEST_FILE);
        if !manifest_path.is_file() {
            continue;
        }
        searched.push(manifest_path.display().to_string());
        let manifest = Manifest::load(&manifest_path)?;
        let found = if spec.is_empty() {
            default_entry(&manifest, task, scale, rows)
        } else {
            manifest.models.iter().find(|m| m.name == spec)
        };
        if let Some(entry) = found {
            return Ok(manifest.resolved(entry));
        }
    }
    let what = if spec.is_empty() {
        format!("no default {task:?} model for scale {scale}")
    } else {
        format!("no model named '{spec}'")
    };
    Err(EngineError::Manifest(if searched.is_empty() {
        format!("{what}: no {MANIFEST_FILE} found (set NERVE_MODEL_PATH or give a model path)")
    } else {
        format!("{what} in {}", searched.join(", "))
    }))
}

/// The first default model that `accept` takes, searching the manifests of [`manifest_dirs`] in
/// order; `None` when there is none (an element may then run without a model). Used where the
/// default is not chosen by scale alone (recovery models differ in their inputs).
pub fn find_default(accept: impl Fn(&ModelEntry) -> bool) -> Result<Option<ResolvedModel>, EngineError> {
    find_default_in(&manifest_dirs(), accept)
}

pub fn find_default_in(dirs: &[PathBuf], accept: impl Fn(&ModelEntry) -> bool) -> Result<Option<ResolvedModel>, EngineError> {
    for dir in dirs {
        let manifest_path = dir.join(MANIFEST_FILE);
        if !manifest_path.is_file() {
            continue;
        }
        let manifest = Manifest::load(&manifest_path)?;
        if let Some(entry) = manifest.models.iter().find(|m| m.default && accept(m)) {
            return Ok(Some(manifest.resolved(entry)));
        }
    }
    Ok(None)
}

/// Largest model file read (a model from elsewhere could be any size; the shipped ones are a
/// few hundred KiB).
pub const MAX_MODEL_BYTES: u64 = 1 << 30;

/// Reads the model file and checks it against the manifest's sha256. The file must really be
/// inside its manifest's directory: `file` names are checked when the manifest is read, and a
/// symbolic link in the directory that leads out of it is refused here.
pub fn read_verified(model: &ResolvedModel) -> Result<Vec<u8>, EngineError> {
    let io_error = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound {
            EngineError::ModelMissing(model.path.clone())
        } else {
            EngineError::Model(format!("cannot read {}: {e}", model.path.display()))
        }
    };
    let real = model.path.canonicalize().map_err(io_error)?;
    let dir = if model.dir.as_os_str().is_empty() { Path::new(".") } else { model.dir.as_path() };
    let real_dir = dir.canonicalize().map_err(io_error)?;
    if !real.starts_with(&real_dir) {
        return Err(EngineError::Model(format!(
            "{} leads to {}, outside the directory of its manifest {}; symbolic links out of a models directory are refused",
            model.path.display(),
            real.display(),
            real_dir.display()
        )));
    }
    let size = std::fs::metadata(&real).map_err(io_error)?.len();
    if size > MAX_MODEL_BYTES {
        return Err(EngineError::Model(format!("{} is {size} bytes, more than the {MAX_MODEL_BYTES} a model may have", model.path.display())));
    }
    let bytes = std::fs::read(&real).map_err(io_error)?;
    let digest = Sha256::digest(&bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    if !hex.eq_ignore_ascii_case(&model.entry.sha256) {
        return Err(EngineError::Model(format!(
            "{} has sha256 {hex}, but the manifest entry '{}' says {}",
            model.path.display(),
            model.entry.name,
            model.entry.sha256
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: &str = r#"
[[model]]
name = "sr-x2-test"
file = "x2.onnx"
task = "super-resolution"
scale = 2
default = true
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
input = { name = "lr", layout = "NCHW", planes = "Y" }
output = { name = "hr", layout = "NCHW", planes = "Y" }
"#;

    fn temp_dir(tag: &str) -> std::io::Result<PathBuf> {
        let dir = std::env::temp_dir().join(format!("nerve-manifest-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    #[test]
    fn default_and_named_lookup() -> Result<(), Box<dyn std::error::Error>> {
        let dir = temp_dir("lookup")?;
        std::fs::write(dir.join(MANIFEST_FILE), ENTRY)?;
        let m = resolve_in("", Task::SuperResolution, 2, std::slice::from_ref(&dir))?;
        assert_eq!(m.entry.name, "sr-x2-test");
        assert_eq!(m.entry.frames, 1);
        assert!(resolve_in("", Task::SuperResolution, 3, std::slice::from_ref(&dir)).is_err());
        assert!(resolve_in("sr-x2-test", Task::SuperResolution, 3, std::slice::from_ref(&dir)).is_ok());
        let err = resolve_in("nope", Task::SuperResolution, 2, std::slice::from_ref(&dir)).err().ok_or("expected an error")?;
        assert!(err.to_string().contains("'nope'"));
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn large_inputs_take_the_default_for_their_rows() -> Result<(), Box<dyn std::error::Error>> {
        let dir = temp_dir("rows")?;
        let entry = |name: &str, extra: &str| {
            ENTRY.replace("sr-x2-test", name).replace("default = true", extra)
        };
        let text = [
            entry("strong", "default = true"),
            entry("fast", "default_from_rows = 480"),
            entry("fastest", "default_from_rows = 1000"),
            entry("x3", "default_from_rows = 1").replace("scale = 2", "scale = 3"),
        ]
        .concat();
        std::fs::write(dir.join(MANIFEST_FILE), text)?;
        let dirs = std::slice::from_ref(&dir);
        let name = |rows| resolve_sized_in("", Task::SuperResolution, 2, rows, dirs).map(|m| m.entry.name);
        assert_eq!(name(0)?, "strong", "size unknown: the plain default");
        assert_eq!(name(360)?, "strong");
        assert_eq!(name(479)?, "strong");
        assert_eq!(name(480)?, "fast");
        assert_eq!(name(720)?, "fast");
        assert_eq!(name(1080)?, "fastest", "the largest threshold reached wins");
        assert_eq!(resolve_in("", Task::SuperResolution, 2, dirs)?.entry.name, "strong");
        // a named model is never replaced by size
        assert_eq!(resolve_sized_in("strong", Task::SuperResolution, 2, 1080, dirs)?.entry.name, "strong");
        // another scale's threshold is not this scale's default
        assert_eq!(resolve_sized_in("", Task::SuperResolution, 3, 1080, dirs)?.entry.name, "x3");
        assert!(resolve_sized_in("", Task::SuperResolution, 4, 1080, dirs).is_err());
        std::fs::write(dir.join(MANIFEST_FILE), entry("zero", "default_from_rows = 0"))?;
        let err = resolve_sized_in("", Task::SuperResolution, 2, 1080, dirs).err().ok_or("expected an error")?;
        assert!(err.to_string().contains("default_from_rows"), "{err}");
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn malformed_manifest_is_reported_with_its_path() -> Result<(), Box<dyn std::error::Error>> {
        let dir = temp_dir("bad")?;
        std::fs::write(dir.join(MANIFEST_FILE), "[[model]]\nname = 3\n")?;
        let err = resolve_in("", Task::SuperResolution, 2, std::slice::from_ref(&dir)).err().ok_or("expected an error")?;
        assert!(err.to_string().contains("malformed"), "{err}");
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn sha256_mismatch_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = temp_dir("sha")?;
        std::fs::write(dir.join(MANIFEST_FILE), ENTRY)?;
        std::fs::write(dir.join("x2.onnx"), b"not the model")?;
        let m = resolve_in(dir.join("x2.onnx").to_str().ok_or("path")?, Task::SuperResolution, 2, &[])?;
        let err = read_verified(&m).err().ok_or("expected an error")?;
        assert!(err.to_string().contains("sha256"), "{err}");
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }
}
