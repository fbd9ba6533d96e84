//! Live model replacement for `nervesr`: new models load on a background thread and wait in a
//! slot; the streaming thread takes them between two frames. A frame is therefore always made
//! by one model from start to end, and no frame waits for a load.
//!
//! Two things ask for a new model: the `model` property changing while the element runs, and
//! the watcher of `model-location` (a directory with a manifest.toml, e.g. where the registry
//! materialises an alias) seeing that the manifest now names different model bytes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::engine::{self, EngineError, Model, SessionConfig, Task};

/// What the element needs to resolve and load a model, snapshotted from its settings.
#[derive(Debug, Clone)]
pub struct LoadRequest {
    /// The `model` property: a name, a file, or empty for the default of `scale`.
    pub spec: String,
    /// `model-location`: when set, names are looked up in this directory's manifest only.
    pub location: Option<PathBuf>,
    pub scale: u32,
    /// Rows of the input the model will run on (0 before caps): with an empty `spec` a manifest
    /// may name a faster default for large inputs (`default_from_rows`).
    pub rows: u32,
    pub session: SessionConfig,
}

impl LoadRequest {
    pub fn resolve(&self) -> Result<engine::manifest::ResolvedModel, EngineError> {
        let resolved = match &self.location {
            Some(dir) => {
                engine::manifest::resolve_sized_in(&self.spec, Task::SuperResolution, self.scale, self.rows, std::slice::from_ref(dir))?
            }
            None => engine::manifest::resolve_sized(&self.spec, Task::SuperResolution, self.scale, self.rows)?,
        };
        let entry = &resolved.entry;
        if entry.task != Task::SuperResolution || entry.scale != self.scale {
            return Err(EngineError::Manifest(format!(
                "model '{}' is a {:?} x{} model, but scale={}",
                entry.name, entry.task, entry.scale, self.scale
            )));
        }
        Ok(resolved)
    }

    pub fn load(&self) -> Result<Model, EngineError> {
        Model::load(self.resolve()?, &self.session)
    }
}

/// The outcome of a background load, waiting for the streaming thread.
pub enum Loaded {
    Ready(Box<Model>),
    Refused(String),
}

impl From<Result<Model, EngineError>> for Loaded {
    fn from(result: Result<Model, EngineError>) -> Self {
        match result {
            Ok(model) => Loaded::Ready(Box::new(model)),
            Err(e) => Loaded::Refused(e.to_string()),
        }
    }
}

/// Background loads and the slot they land in. Only the latest request counts: an older load
/// that finishes late is thrown away.
#[derive(Default)]
pub struct Swapper {
    slot: Arc<Mutex<Option<Loaded>>>,
    generation: Arc<AtomicU64>,
    watcher_stop: Option<Arc<AtomicBool>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Swapper {
    /// Starts loading `request` on its own thread; the result waits in the slot for the next
    /// frame.
    pub fn request(&self, request: LoadRequest) {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let (slot, current) = (self.slot.clone(), self.generation.clone());
        let spawned = thread::Builder::new().name("nervesr-load".into()).spawn(move || {
            let loaded = Loaded::from(request.load());
            if current.load(Ordering::SeqCst) == generation {
                *lock(&slot) = Some(loaded);
            }
        });
        if let Err(e) = spawned {
            *lock(&self.slot) = Some(Loaded::Refused(format!("cannot start a loading thread: {e}")));
        }
    }

    /// The finished load, if any (called by the streaming thread before each frame).
    pub fn take(&self) -> Option<Loaded> {
        lock(&self.slot).take()
    }

    /// Follows `dir/manifest.toml`: every `interval`, when its bytes changed and the model it
    /// now resolves to has another sha256 than `active()`, loads that model in the background.
    pub fn watch(&mut self, dir: PathBuf, interval: Duration, request: LoadRequest, active: impl Fn() -> Option<String> + Send + 'static) {
        self.unwatch();
        let stop = Arc::new(AtomicBool::new(false));
        self.watcher_stop = Some(stop.clone());
        let (slot, generation) = (self.slot.clone(), self.generation.clone());
        let spawned = thread::Builder::new().name("nervesr-watch".into()).spawn(move || {
            // Nothing seen yet: the first look compares the manifest with the running model, so a
            // change made between the element's start and this thread's first run is not missed.
            let mut seen = None;
            while !stop.load(Ordering::SeqCst) {
                let now = manifest_digest(&dir);
                if now == seen || now.is_none() {
                    thread::sleep(interval);
                    continue;
                }
                seen = now;
                let sha = match request.resolve() {
                    Ok(r) => r.entry.sha256,
                    Err(e) => {
                        *lock(&slot) = Some(Loaded::Refused(e.to_string()));
                        continue;
                    }
                };
                if active().is_some_and(|a| a.eq_ignore_ascii_case(&sha)) {
                    continue;
                }
                let mine = generation.fetch_add(1, Ordering::SeqCst) + 1;
                let loaded = Loaded::from(request.load());
                if generation.load(Ordering::SeqCst) == mine && !stop.load(Ordering::SeqCst) {
                    *lock(&slot) = Some(loaded);
                }
            }
        });
        if let Err(e) = spawned {
            *lock(&self.slot) = Some(Loaded::Refused(format!("cannot start the model-location watcher: {e}")));
        }
    }

    pub fn unwatch(&mut self) {
        if let Some(stop) = self.watcher_stop.take() {
            stop.store(true, Ordering::SeqCst);
        }
    }

    /// Forgets pending work (element stopping): late loads land nowhere.
    pub fn reset(&mut self) {
        self.unwatch();
        self.generation.fetch_add(1, Ordering::SeqCst);
        lock(&self.slot).take();
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        self.unwatch();
    }
}

fn manifest_digest(dir: &Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(dir.join(engine::manifest::MANIFEST_FILE)).ok()?;
    Some(Sha256::digest(&bytes).to_vec())
}
