//! The one place the C API talks to `sparseflow_runtime`: its types, and how its errors become
//! status codes.

pub(crate) use crate::rt_stub::{Context, Device, RuntimeError, SparseGemm};

use crate::error::Error;
use crate::types::SparseFlowStatus::*;

/// Maps a runtime error to its status, keeping the runtime's message (it says what to do).
pub(crate) fn runtime_error(e: RuntimeError) -> Error {
    match e {
        RuntimeError::Core(core) => core.into(),
        RuntimeError::NoDriver(_) => Error::new(SPARSEFLOW_STATUS_CUDA_ERROR, e.to_string()),
    }
}
