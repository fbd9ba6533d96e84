//! Finding and loading the ONNX Runtime shared library.
//!
//! `ort` is built with `load-dynamic`, so nothing links against ONNX Runtime at build time and
//! `gst-inspect-1.0` works on a machine without it. The library is looked for, in order:
//! 1. an explicit path (the element's `ort-library` property), then `ORT_DYLIB_PATH`;
//!    when either is given it is the only candidate, so a wrong path is reported, not hidden;
//! 2. the place the project's set-up put it (`.nerve/lib` in the source tree, or the directory
//!    baked in at build time through `NERVE_ORT_DIR`);
//! 3. the `onnxruntime` Python wheel in the project's virtual environment and the usual
//!    site-packages directories;
//! 4. the system's library paths.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::EngineError;

const LIB_NAME: &str = "libonnxruntime.so";

/// What to install when no library can be found: said in every such error.
pub const INSTALL_HINT: &str = "install the ONNX Runtime library, e.g. `pip install onnxruntime` \
     (the project's scripts/setup.sh does this), or set the element's `ort-library` property \
     or ORT_DYLIB_PATH to a libonnxruntime.so";

/// The loaded library and the ONNX Runtime environment built on it. ONNX Runtime can be loaded
/// only once per process, so this is global.
struct Loaded {
    path: PathBuf,
    env: ort::environment::Environment,
}

static LOADED: OnceLock<Loaded> = OnceLock::new();
static LOADING: Mutex<()> = Mutex::new(());

/// Directories to look in for the library when no explicit path is given, in order.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = option_env!("NERVE_ORT_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    let source_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    dirs.push(source_root.join(".nerve/lib"));
    let mut site_roots = vec![source_root.join(".venv/lib")];
    if let Some(home) = std::env::var_os("HOME") {
        site_roots.push(Path::new(&home).join(".local/lib"));
    }
    site_roots.push(PathBuf::from("/usr/local/lib"));
    site_roots.push(PathBuf::from("/usr/lib"));
    for root in site_roots {
        // python3.X/{site,dist}-packages/onnxruntime/capi
        let Ok(entries) = std::fs::read_dir(&root) else { continue };
        let mut pythons: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("python3")))
            .collect();
        pythons.sort();
        for py in pythons.into_iter().rev() {
            for pkgs in ["site-packages", "dist-packages"] {
                dirs.push(py.join(pkgs).join("onnxruntime/capi"));
            }
        }
    }
    for sys in ["/usr/local/lib", "/usr/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"] {
        dirs.push(PathBuf::from(sys));
    }
    dirs
}

/// The library file inside `dir`: `libonnxruntime.so` or a versioned `libonnxruntime.so.1.x.y`.
pub fn library_in(dir: &Path) -> Option<PathBuf> {
    let plain = dir.join(LIB_NAME);
    if plain.is_file() {
        return Some(plain);
    }
    let entries = std::fs::read_dir(dir).ok()?;
    let mut versioned: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(LIB_NAME) && !n.contains("providers"))
        })
        .collect();
    versioned.sort();
    versioned.pop()
}

/// Resolves which library file to load, without loading it.
pub fn resolve(explicit: Option<&Path>) -> Result<PathBuf, EngineError> {
    let env_path = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()).map(PathBuf::from);
    resolve_from(explicit, env_path.as_deref(), &search_dirs())
}

/// The resolution rule itself, separate from the process environment so it can be tested.
pub fn resolve_from(
    explicit: Option<&Path>,
    env_path: Option<&Path>,
    dirs: &[PathBuf],
) -> Result<PathBuf, EngineError> {
    if let Some(path) = explicit.or(env_path) {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(EngineError::Library(format!(
                "ONNX Runtime library {} does not exist; {INSTALL_HINT}",
                path.display()
            )))
        };
    }
    dirs.iter().find_map(|d| library_in(d)).ok_or_else(|| {
        EngineError::Library(format!(
            "no ONNX Runtime library found (looked in ORT_DYLIB_PATH and {} directories, starting with {}); {INSTALL_HINT}",
            dirs.len(),
            dirs.first().map(|d| d.display().to_string()).unwrap_or_default()
        ))
    })
}

/// Loads ONNX Runtime once per process and returns its environment.
///
/// A second call with a different explicit path keeps the library already loaded (ONNX Runtime
/// cannot be unloaded) and says so through `Ok((env, Some(previous_path)))`.
pub fn environment(
    explicit: Option<&Path>,
) -> Result<(&'static ort::environment::Environment, Option<PathBuf>), EngineError> {
    if let Some(loaded) = LOADED.get() {
        let other = explicit.filter(|p| *p != loaded.path).map(|_| loaded.path.clone());
        return Ok((&loaded.env, other));
    }
    let _guard = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(loaded) = LOADED.get() {
        return Ok((&loaded.env, None));
    }
    let path = resolve(explicit)?;
    let builder = ort::init_from(&path).map_err(|e| {
        EngineError::Library(format!("cannot load ONNX Runtime from {}: {e}; {INSTALL_HINT}", path.display()))
    })?;
    let env = builder
        .with_name("nerve")
        .build()
        .map_err(|e| EngineError::Library(format!("cannot create the ONNX Runtime environment: {e}")))?;
    let loaded = LOADED.get_or_init(|| Loaded { path, env });
    Ok((&loaded.env, None))
}

/// The path of the library loaded in this process, if any.
pub fn loaded_path() -> Option<&'static Path> {
    LOADED.get().map(|l| l.path.as_path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_missing_path_is_named_with_a_hint() -> Result<(), Box<dyn std::error::Error>> {
        let err = resolve_from(Some(Path::new("/nope/libonnxruntime.so")), None, &[]).err().ok_or("expected an error")?;
        let msg = err.to_string();
        assert!(msg.contains("/nope/libonnxruntime.so"), "{msg}");
        assert!(msg.contains("pip install onnxruntime"), "{msg}");
        Ok(())
    }

    #[test]
    fn nothing_found_says_what_to_install() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("nerve-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let err = resolve_from(None, None, std::slice::from_ref(&dir)).err().ok_or("expected an error")?;
        assert!(err.to_string().contains("pip install onnxruntime"));
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn versioned_library_in_a_wheel_directory_is_found() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("nerve-wheel-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("libonnxruntime_providers_shared.so"), b"")?;
        std::fs::write(dir.join("libonnxruntime.so.1.31.1"), b"")?;
        let found = resolve_from(None, None, &[PathBuf::from("/nonexistent"), dir.clone()])?;
        assert_eq!(found, dir.join("libonnxruntime.so.1.31.1"));
        // ORT_DYLIB_PATH wins over the search directories.
        let env_lib = dir.join("libonnxruntime_providers_shared.so");
        assert_eq!(resolve_from(None, Some(&env_lib), std::slice::from_ref(&dir))?, env_lib);
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }
}
