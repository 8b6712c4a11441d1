//! The one place the C API talks to `sparseflow_runtime`: its types, and how its errors become
//! status codes.

pub(crate) use sparseflow_runtime::{
    fragment_layout_bytes, to_fragment_layout, BorrowedWeight, Context, Device, RuntimeError,
    SparseGemm,
};

use sparseflow_codegen::CodegenError;

use crate::error::Error;
use crate::types::SparseFlowStatus::{self, *};

/// Maps a runtime error to its status, keeping the runtime's message (it says what to do).
///
/// The match is exhaustive on purpose: a new runtime error variant fails to compile here until
/// someone decides which status C callers see for it.
pub(crate) fn runtime_error(e: RuntimeError) -> Error {
    let status: SparseFlowStatus = match &e {
        RuntimeError::Core(core) => return core.clone().into(),
        RuntimeError::NoDriver(_) | RuntimeError::Cuda { .. } => {
            if e.cuda_error_name() == Some("CUDA_ERROR_OUT_OF_MEMORY") {
                SPARSEFLOW_STATUS_OUT_OF_MEMORY
            } else {
                SPARSEFLOW_STATUS_CUDA_ERROR
            }
        }
        RuntimeError::OutOfMemory { .. } => SPARSEFLOW_STATUS_OUT_OF_MEMORY,
        RuntimeError::NoSuchDevice { .. }
        | RuntimeError::DTypeMismatch { .. }
        | RuntimeError::Shape(_)
        | RuntimeError::NullPointer(_)
        | RuntimeError::Misaligned { .. }
        | RuntimeError::ForeignPointer { .. } => SPARSEFLOW_STATUS_INVALID_ARGUMENT,
        RuntimeError::ArchTooOld { .. }
        | RuntimeError::NeedsGpu(_)
        | RuntimeError::Unsupported(_)
        | RuntimeError::UnsupportedDType { .. }
        | RuntimeError::Plan(_) => SPARSEFLOW_STATUS_UNSUPPORTED,
        RuntimeError::Codegen(c) => match c {
            CodegenError::Unsupported(_) | CodegenError::Spills { .. } => {
                SPARSEFLOW_STATUS_UNSUPPORTED
            }
            // NVRTC and the kernel cache are part of getting a kernel onto the GPU.
            CodegenError::NvrtcMissing
            | CodegenError::Nvrtc { .. }
            | CodegenError::Compile { .. }
            | CodegenError::Cache { .. } => SPARSEFLOW_STATUS_CUDA_ERROR,
            CodegenError::Layout(_) => SPARSEFLOW_STATUS_INTERNAL,
            CodegenError::Core(sparseflow_core::CoreError::OutOfMemory { .. }) => {
                SPARSEFLOW_STATUS_OUT_OF_MEMORY
            }
            CodegenError::Core(_) => SPARSEFLOW_STATUS_INVALID_ARGUMENT,
        },
    };
    Error::new(status, e.to_string())
}
