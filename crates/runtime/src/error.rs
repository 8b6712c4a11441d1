//! The runtime's error type. Every message says what was wrong and what to do next.

use sparseflow_codegen::CodegenError;
use sparseflow_core::{CoreError, DType};
use sparseflow_ir::IrError;

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// How each face reaches the CPU backend, for error messages any of them may show.
pub const CPU_BACKEND: &str =
    "Rust: Context::cpu(); C: sparseflow_context_create(-1, &ctx); Python: CPU tensors";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No usable CUDA driver (library missing or `cuInit` failed).
    #[error("no CUDA driver: {0}. Install the NVIDIA driver (libcuda.so) or use the CPU backend ({CPU_BACKEND})")]
    NoDriver(String),

    /// The driver works but the requested device does not exist.
    #[error("CUDA device {index} does not exist ({count} device(s) visible; check CUDA_VISIBLE_DEVICES)")]
    NoSuchDevice { index: usize, count: usize },

    /// The GPU is older than Ampere.
    #[error("2:4 sparse tensor cores need sm_80 or newer (found sm_{major}{minor} on {name}); use the CPU backend on this machine ({CPU_BACKEND})")]
    ArchTooOld {
        major: u32,
        minor: u32,
        name: String,
    },

    /// A CUDA driver call failed; `name` is the CUDA error name (CUDA_ERROR_...).
    #[error("CUDA call {call} failed: {name} ({description})")]
    Cuda {
        call: &'static str,
        name: String,
        description: String,
    },

    /// A device allocation failed.
    #[error("out of GPU memory allocating {bytes} bytes for {what} ({free} bytes free of {total}); free memory or use smaller batches")]
    OutOfMemory {
        what: &'static str,
        bytes: usize,
        free: usize,
        total: usize,
    },

    /// The operation needs a GPU context.
    #[error("{0} needs a CUDA context, but this context is the CPU backend (create it with Context::new(Device::Cuda(i)))")]
    NeedsGpu(&'static str),

    /// The device lacks a feature that was asked for.
    #[error("unsupported on this device: {0}")]
    Unsupported(String),

    /// The element type is not supported by this backend.
    #[error("dtype {dtype} is not supported on {backend}: {hint}")]
    UnsupportedDType {
        dtype: DType,
        backend: &'static str,
        hint: &'static str,
    },

    /// The caller's type does not match the layer's dtype.
    #[error("dtype mismatch: this SparseGemm holds {expected} weights but was called with {got} data; convert the input to {expected}")]
    DTypeMismatch { expected: DType, got: DType },

    /// A length or shape is inconsistent.
    #[error("shape mismatch: {0}")]
    Shape(String),

    /// A pointer argument was null.
    #[error("{0} pointer is null; pass a valid buffer")]
    NullPointer(&'static str),

    /// A pointer is not aligned as the kernels need.
    #[error("{what} pointer {addr:#x} is not {align}-byte aligned; the kernels load 16 bytes at a time (PyTorch tensors from the allocator are aligned: make the tensor contiguous with .contiguous() / .clone())")]
    Misaligned {
        what: &'static str,
        addr: usize,
        align: usize,
    },

    /// A pointer is not device memory usable by this context.
    #[error("{what} pointer {addr:#x} {problem}; pass device memory of CUDA device {device} (e.g. a CUDA tensor on cuda:{device})")]
    ForeignPointer {
        what: &'static str,
        addr: usize,
        problem: String,
        device: usize,
    },

    /// Format / reference errors from the core crate (weight not 2:4, bias vs epilogue, ...).
    #[error(transparent)]
    Core(#[from] CoreError),

    /// The compiler could not plan the layer.
    #[error("planning the layer failed: {0}")]
    Plan(#[from] IrError),

    /// Code generation, NVRTC or the kernel cache failed.
    #[error(transparent)]
    Codegen(#[from] CodegenError),
}

impl RuntimeError {
    /// Wraps a cudarc driver error, keeping the CUDA error name.
    pub(crate) fn cuda(call: &'static str, err: cudarc::driver::DriverError) -> Self {
        let name = err
            .error_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|_| format!("CUresult {}", err.0 as u32));
        let description = err
            .error_string()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "no description".to_string());
        RuntimeError::Cuda {
            call,
            name,
            description,
        }
    }

    /// The CUDA error name (`CUDA_ERROR_...`) when this is a CUDA error.
    pub fn cuda_error_name(&self) -> Option<&str> {
        match self {
            RuntimeError::Cuda { name, .. } => Some(name),
            _ => None,
        }
    }
}
