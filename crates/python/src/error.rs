//! Rust errors → Python exceptions. Format and shape problems are the caller's input, so they
//! become `ValueError`; memory the host or device allocator refused becomes `MemoryError`;
//! other runtime (device, driver, compiler) failures become `RuntimeError`.

use pyo3::exceptions::{PyMemoryError, PyRuntimeError, PyValueError};
use pyo3::PyErr;
use sparseflow_core::CoreError;
use sparseflow_runtime::CodegenError;
use sparseflow_runtime::RuntimeError;

pub fn core_err(e: CoreError) -> PyErr {
    match e {
        CoreError::OutOfMemory { .. } => PyMemoryError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

pub fn runtime_err(e: RuntimeError) -> PyErr {
    match e {
        RuntimeError::Core(e) | RuntimeError::Codegen(CodegenError::Core(e)) => core_err(e),
        RuntimeError::OutOfMemory { .. } => {
            PyMemoryError::new_err(format!("sparseflow runtime: {e}"))
        }
        _ => PyRuntimeError::new_err(format!("sparseflow runtime: {e}")),
    }
}

/// A runtime failure that is not a `RuntimeError` value (a poisoned lock, say).
pub fn runtime_msg(msg: impl std::fmt::Display) -> PyErr {
    PyRuntimeError::new_err(format!("sparseflow runtime: {msg}"))
}

pub fn value_err(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}
