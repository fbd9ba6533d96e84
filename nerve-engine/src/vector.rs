//! A model on a flat feature vector: float32 `[1, n]` in, float32 `[1, m]` out. The learned ABR
//! policy's actor (nerve-abr `learned::OnnxActor`) runs through it, on the same ONNX Runtime
//! library, environment and model checks as the SR models ([`crate::Model`]).

use std::path::Path;
use std::time::{Duration, Instant};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

use super::EngineError;
use super::model::{SessionConfig, environment, refuse_untrusted};

pub struct VectorModel {
    session: Session,
    input: String,
    output: String,
    /// Length of the input vector.
    pub inputs: usize,
    /// Length of the output vector.
    pub outputs: usize,
    /// Things the user should hear about but that did not stop loading.
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for VectorModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorModel").field("input", &self.input).field("inputs", &self.inputs).field("output", &self.output).field("outputs", &self.outputs).finish()
    }
}

/// The fixed last dimension of a rank-2 tensor whose first (batch) dimension is 1 or dynamic.
fn vector_len(dims: &[i64]) -> Option<usize> {
    match dims {
        [b, n] if *b <= 1 && *n > 0 => Some(*n as usize),
        _ => None,
    }
}

impl VectorModel {
    /// Loads the model at `path` on the CPU (a policy network of a few thousand weights: one
    /// thread, no provider worth a transfer). Its first input and first output must be float
    /// vectors of fixed length.
    pub fn load(path: &Path, config: &SessionConfig) -> Result<Self, EngineError> {
        let (env, warnings) = environment(config)?;
        let bytes = std::fs::read(path).map_err(|_| EngineError::ModelMissing(path.to_path_buf()))?;
        refuse_untrusted(&bytes, path.parent().unwrap_or(Path::new(".")), path)?;
        let model_err = |e: String| EngineError::Model(format!("{} is not a loadable ONNX model: {e}", path.display()));
        let session = Session::builder(env)
            .map_err(|e| model_err(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| model_err(e.to_string()))?
            .with_intra_threads(1)
            .map_err(|e| model_err(e.to_string()))?
            .commit_from_memory(&bytes)
            .map_err(|e| model_err(e.to_string()))?;
        let dims = |o: &ort::value::Outlet| o.dtype().tensor_shape().map(|s| s.iter().copied().collect::<Vec<i64>>());
        let shape_err = |what: &str| EngineError::Shape(format!("{}: {what} must be a float vector [1, n] (batch 1 or dynamic)", path.display()));
        let (input, inputs) = {
            let i = session.inputs().first().ok_or_else(|| shape_err("the input"))?;
            (i.name().to_string(), dims(i).as_deref().and_then(vector_len).ok_or_else(|| shape_err("the input"))?)
        };
        let (output, outputs) = {
            let o = session.outputs().first().ok_or_else(|| shape_err("the output"))?;
            (o.name().to_string(), dims(o).as_deref().and_then(vector_len).ok_or_else(|| shape_err("the output"))?)
        };
        Ok(Self { session, input, output, inputs, outputs, warnings })
    }

    /// Runs the model on `x` (length [`inputs`](Self::inputs)); returns the output vector and
    /// the time spent inside ONNX Runtime.
    pub fn run(&mut self, x: &[f32]) -> Result<(Vec<f32>, Duration), EngineError> {
        if x.len() != self.inputs {
            return Err(EngineError::Shape(format!("input of {} values, the model takes {}", x.len(), self.inputs)));
        }
        let tensor = TensorRef::from_array_view(([1usize, self.inputs], x)).map_err(|e| EngineError::Inference(format!("cannot wrap the input: {e}")))?;
        let started = Instant::now();
        let outputs = self.session.run(ort::inputs![self.input.as_str() => tensor]).map_err(|e| EngineError::Inference(e.to_string()))?;
        let elapsed = started.elapsed();
        let value = outputs.get(self.output.as_str()).ok_or_else(|| EngineError::Inference(format!("no output '{}'", self.output)))?;
        let (_, data) = value.try_extract_tensor::<f32>().map_err(|e| EngineError::Shape(format!("output is not a float tensor: {e}")))?;
        if data.len() != self.outputs {
            return Err(EngineError::Shape(format!("output of {} values, expected {}", data.len(), self.outputs)));
        }
        Ok((data.to_vec(), elapsed))
    }
}
