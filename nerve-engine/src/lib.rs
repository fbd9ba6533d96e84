//! The engine every model-running element shares: loading ONNX Runtime, the model manifest,
//! sessions on the chosen execution provider, and frame <-> tensor conversion.

pub mod convert;
pub mod guard;
pub mod library;
pub mod manifest;
pub mod model;
pub mod provider;
pub mod resample;
pub mod vector;

use std::path::PathBuf;

pub use manifest::{ResolvedModel, Task};
pub use model::{Model, SessionConfig};
pub use provider::Provider;
pub use vector::VectorModel;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Library(String),
    #[error("model file {} does not exist", .0.display())]
    ModelMissing(PathBuf),
    #[error("model manifest: {0}")]
    Manifest(String),
    #[error("model: {0}")]
    Model(String),
    #[error("tensor shapes: {0}")]
    Shape(String),
    #[error("inference failed: {0}")]
    Inference(String),
}
