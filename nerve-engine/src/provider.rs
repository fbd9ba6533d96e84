//! Execution providers: where ONNX Runtime runs the model.
//!
//! The CPU provider is always there. The others are compiled in behind cargo features of the same
//! name; asking for one that is not compiled in, or that this ONNX Runtime build cannot register,
//! gives a warning and the CPU.

use glib;

#[derive(Debug, Default, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstNerveProvider")]
pub enum Provider {
    #[default]
    #[enum_value(name = "CPU (always available)", nick = "cpu")]
    Cpu = 0,
    #[enum_value(name = "CUDA (NVIDIA GPUs; cargo feature `cuda`)", nick = "cuda")]
    Cuda = 1,
    #[enum_value(name = "XNNPACK (ARM/x86 CPUs; cargo feature `xnnpack`)", nick = "xnnpack")]
    Xnnpack = 2,
    #[enum_value(name = "NNAPI (Android; cargo feature `nnapi`)", nick = "nnapi")]
    Nnapi = 3,
    #[enum_value(name = "CoreML (Apple; cargo feature `coreml`)", nick = "coreml")]
    Coreml = 4,
    #[enum_value(name = "OpenVINO (Intel; cargo feature `openvino`)", nick = "openvino")]
    Openvino = 5,
}

impl Provider {
    pub fn nick(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Xnnpack => "xnnpack",
            Self::Nnapi => "nnapi",
            Self::Coreml => "coreml",
            Self::Openvino => "openvino",
        }
    }

    /// The ONNX Runtime registration for this provider, or why there is none in this build.
    /// `None` with `Ok` means the CPU provider (ONNX Runtime's built-in default).
    pub fn dispatch(self) -> Result<Option<ort::ep::ExecutionProviderDispatch>, String> {
        let not_built = |feature: &str| {
            Err(format!("provider '{feature}' is not compiled into this build (cargo feature `{feature}`)"))
        };
        match self {
            Self::Cpu => Ok(None),
            #[cfg(feature = "cuda")]
            Self::Cuda => Ok(Some(ort::ep::CUDA::default().build().error_on_failure())),
            #[cfg(feature = "xnnpack")]
            Self::Xnnpack => Ok(Some(ort::ep::XNNPACK::default().build().error_on_failure())),
            #[cfg(feature = "nnapi")]
            Self::Nnapi => Ok(Some(ort::ep::NNAPI::default().build().error_on_failure())),
            #[cfg(feature = "coreml")]
            Self::Coreml => Ok(Some(ort::ep::CoreML::default().build().error_on_failure())),
            #[cfg(feature = "openvino")]
            Self::Openvino => Ok(Some(ort::ep::OpenVINO::default().build().error_on_failure())),
            #[allow(unreachable_patterns)] // reachable exactly when a feature is off
            other => not_built(other.nick()),
        }
    }
}
