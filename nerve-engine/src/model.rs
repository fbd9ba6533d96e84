//! A loaded model: an ONNX Runtime session checked against its manifest entry.

use std::time::{Duration, Instant};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

use super::manifest::{self, ResolvedModel};
use super::provider::Provider;
use super::{EngineError, guard, library};

/// How to build a session.
#[derive(Debug, Clone, Default)]
pub struct SessionConfig {
    pub provider: Provider,
    /// Intra-op threads; 0 lets ONNX Runtime choose (one per physical core).
    pub threads: u32,
    /// Explicit ONNX Runtime library path, if the user gave one.
    pub library: Option<std::path::PathBuf>,
}

pub struct Model {
    pub spec: ResolvedModel,
    session: Session,
    /// The provider actually in use (the CPU after a fallback).
    pub provider: Provider,
    /// Things the user should hear about but that did not stop loading (provider fallback, ...).
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("spec", &self.spec).field("provider", &self.provider).finish()
    }
}

/// Side of the square frame run once at load time to check the scale the network really has.
const PROBE: usize = 16;

/// ONNX Runtime's environment for `config`, with the warning every loader gives when another
/// library was loaded first.
pub(crate) fn environment(config: &SessionConfig) -> Result<(&'static ort::environment::Environment, Vec<String>), EngineError> {
    let (env, other_lib) = library::environment(config.library.as_deref())?;
    let warnings = other_lib
        .map(|path| format!("ONNX Runtime is already loaded from {} in this process; the requested library is ignored", path.display()))
        .into_iter()
        .collect();
    Ok((env, warnings))
}

/// The untrusted-model checks (guard::check_model) with the error every loader reports.
pub(crate) fn refuse_untrusted(bytes: &[u8], dir: &std::path::Path, path: &std::path::Path) -> Result<(), EngineError> {
    guard::check_model(bytes, dir).map_err(|why| {
        let verdict = if guard::is_malformed(&why) { "is not a loadable ONNX model" } else { "is refused" };
        EngineError::Model(format!("{} {verdict}: {why}", path.display()))
    })
}

impl Model {
    pub fn load(spec: ResolvedModel, config: &SessionConfig) -> Result<Self, EngineError> {
        let (env, mut warnings) = environment(config)?;
        let bytes = manifest::read_verified(&spec)?;
        // The sha256 says the file is the one the manifest names, not that its author is trusted.
        refuse_untrusted(&bytes, &spec.dir, &spec.path)?;
        let builder = || -> Result<_, EngineError> {
            let mut b = Session::builder(env)
                .map_err(|e| EngineError::Model(format!("cannot create a session: {e}")))?
                .with_optimization_level(GraphOptimizationLevel::Level3)
                .map_err(|e| EngineError::Model(e.to_string()))?;
            if config.threads > 0 {
                b = b.with_intra_threads(config.threads as usize).map_err(|e| EngineError::Model(e.to_string()))?;
            }
            Ok(b)
        };
        let mut provider = config.provider;
        let mut b = builder()?;
        match provider.dispatch() {
            Ok(None) => {}
            Ok(Some(ep)) => match b.with_execution_providers([ep]) {
                Ok(with_ep) => b = with_ep,
                Err(e) => {
                    warnings.push(format!("provider '{}' failed to register ({e}); running on the CPU", provider.nick()));
                    provider = Provider::Cpu;
                    b = builder()?;
                }
            },
            Err(why) => {
                warnings.push(format!("{why}; running on the CPU"));
                provider = Provider::Cpu;
            }
        }
        let session = b.commit_from_memory(&bytes).map_err(|e| {
            EngineError::Model(format!("{} is not a loadable ONNX model: {e}", spec.path.display()))
        })?;
        let mut model = Self { spec, session, provider, warnings };
        model.check_signature()?;
        model.probe()?;
        Ok(model)
    }

    pub fn frames(&self) -> usize {
        self.spec.entry.frames as usize
    }

    pub fn scale(&self) -> usize {
        self.spec.entry.scale as usize
    }

    /// The graph's declared inputs and outputs must match the manifest entry.
    fn check_signature(&self) -> Result<(), EngineError> {
        let e = &self.spec.entry;
        let mismatch = |what: String| {
            EngineError::Shape(format!("{} contradicts its manifest entry '{}': {what}", self.spec.path.display(), e.name))
        };
        let inputs = self.session.inputs();
        if inputs.len() != 1 {
            return Err(mismatch(format!("{} inputs, expected 1", inputs.len())));
        }
        let input = &inputs[0];
        if input.name() != e.input.name {
            return Err(mismatch(format!("input is named '{}', manifest says '{}'", input.name(), e.input.name)));
        }
        let Some(output) = self.session.outputs().iter().find(|o| o.name() == e.output.name) else {
            return Err(mismatch(format!("no output named '{}'", e.output.name)));
        };
        let dims = |o: &ort::value::Outlet| o.dtype().tensor_shape().map(|s| s.iter().copied().collect::<Vec<i64>>());
        let (Some(ind), Some(outd)) = (dims(input), dims(output)) else {
            return Err(mismatch("input or output is not a tensor".into()));
        };
        let check = |d: &[i64], channels: i64, which: &str| -> Result<(), EngineError> {
            if d.len() != 4 {
                return Err(mismatch(format!("{which} has rank {}, expected 4 (NCHW)", d.len())));
            }
            if d[0] > 1 {
                return Err(mismatch(format!("{which} batch is {}, expected 1 or dynamic", d[0])));
            }
            if d[1] >= 0 && d[1] != channels {
                return Err(mismatch(format!("{which} has {} channels, expected {channels}", d[1])));
            }
            if d[2] >= 0 || d[3] >= 0 {
                return Err(mismatch(format!("{which} has a fixed size {}x{}; height and width must be dynamic", d[3], d[2])));
            }
            Ok(())
        };
        check(&ind, e.frames as i64, "input")?;
        check(&outd, 1, "output")
    }

    /// Runs a small frame through the network and checks the output size against the scale.
    fn probe(&mut self) -> Result<(), EngineError> {
        let input = vec![0.5f32; self.frames() * PROBE * PROBE];
        self.run(&input, PROBE, PROBE, |_| ()).map_err(|e| match e {
            EngineError::Shape(m) => EngineError::Shape(format!("{m} (manifest entry '{}')", self.spec.entry.name)),
            other => other,
        })?;
        Ok(())
    }

    /// Runs the model on `frames` stacked `width` x `height` luma tensors and hands the
    /// `scale`-times larger output to `consume` (straight from ONNX Runtime's buffer, no copy).
    /// Returns the time spent inside ONNX Runtime.
    pub fn run(
        &mut self,
        input: &[f32],
        width: usize,
        height: usize,
        consume: impl FnOnce(&[f32]),
    ) -> Result<Duration, EngineError> {
        let frames = self.frames();
        let scale = self.scale();
        debug_assert_eq!(input.len(), frames * width * height);
        let tensor = TensorRef::from_array_view(([1usize, frames, height, width], input))
            .map_err(|e| EngineError::Inference(format!("cannot wrap the input: {e}")))?;
        let started = Instant::now();
        let outputs = self
            .session
            .run(ort::inputs![self.spec.entry.input.name.as_str() => tensor])
            .map_err(|e| EngineError::Inference(e.to_string()))?;
        let elapsed = started.elapsed();
        let value = outputs
            .get(self.spec.entry.output.name.as_str())
            .ok_or_else(|| EngineError::Inference(format!("no output '{}'", self.spec.entry.output.name)))?;
        let (shape, data) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| EngineError::Shape(format!("output is not a float tensor: {e}")))?;
        let expected = [1i64, 1, (height * scale) as i64, (width * scale) as i64];
        if shape.iter().copied().ne(expected) {
            return Err(EngineError::Shape(format!(
                "a {width}x{height} input gave an output of shape {:?}, expected {expected:?} for scale {scale}",
                shape.iter().collect::<Vec<_>>()
            )));
        }
        consume(data);
        Ok(elapsed)
    }
}
