//! Rust errors → Python exceptions. Format and shape problems are the caller's input, so they
//! become `ValueError`; runtime (device, driver, compiler) failures become `RuntimeError`.

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::PyErr;
use sparseflow_core::CoreError;

pub fn core_err(e: CoreError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

pub fn runtime_err(e: impl std::fmt::Display) -> PyErr {
    PyRuntimeError::new_err(format!("sparseflow runtime: {e}"))
}

pub fn value_err(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}
