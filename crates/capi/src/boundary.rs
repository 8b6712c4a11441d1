//! The one wrapper every exported function body goes through.
//!
//! [`ffi_boundary!`] runs the body under `catch_unwind`, so a panic never unwinds into C (that
//! would be undefined behaviour); turns `Err` into its status code; and records the message,
//! prefixed with the function's name, as the thread's `sparseflow_last_error()`. A caught panic
//! is `SPARSEFLOW_STATUS_INTERNAL`. Functions that return something other than a status use
//! [`ffi_boundary_value!`], which returns a fixed fallback value on panic.
//!
//! No exported function is written without one of the two (the ABI test checks that every
//! `extern "C"` body starts with it).

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{set_last_error, Result};
use crate::types::SparseFlowStatus::{self, *};

/// `ffi_boundary!("sparseflow_x", { ...; Ok(()) })` → `SparseFlowStatus`.
macro_rules! ffi_boundary {
    ($func:literal, $body:block) => {
        $crate::boundary::status_boundary($func, || -> $crate::error::Result<()> { $body })
    };
}

/// `ffi_boundary_value!("sparseflow_x", fallback, { value })` → the value, or `fallback` if
/// the body panicked.
macro_rules! ffi_boundary_value {
    ($func:literal, $fallback:expr, $body:block) => {
        $crate::boundary::value_boundary($func, $fallback, || $body)
    };
}

pub(crate) use {ffi_boundary, ffi_boundary_value};

/// Body of [`ffi_boundary!`]. `AssertUnwindSafe` is sound here: after a panic the only state we
/// keep using is the handle registry, whose lock is never held while running user-visible work,
/// and objects are `Arc`-shared and only read.
pub(crate) fn status_boundary(
    func: &'static str,
    body: impl FnOnce() -> Result<()>,
) -> SparseFlowStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => SPARSEFLOW_STATUS_OK,
        Ok(Err(e)) => {
            set_last_error(&format!("{func}: {}", e.message));
            e.status
        }
        Err(payload) => {
            set_last_error(&panic_message(func, payload.as_ref()));
            SPARSEFLOW_STATUS_INTERNAL
        }
    }
}

/// Body of [`ffi_boundary_value!`].
pub(crate) fn value_boundary<T>(func: &'static str, fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(payload) => {
            set_last_error(&panic_message(func, payload.as_ref()));
            fallback
        }
    }
}

fn panic_message(func: &str, payload: &(dyn Any + Send)) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic payload)");
    format!(
        "{func}: internal error (caught panic: {what}); this is a SparseFlow bug, please report it"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{last_error_ptr, Error};

    fn last_error() -> String {
        // SAFETY: last_error_ptr returns a valid NUL-terminated string owned by this thread.
        unsafe { std::ffi::CStr::from_ptr(last_error_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn panic_becomes_internal_status() {
        let status = ffi_boundary!("sparseflow_test", {
            if last_error().len() < usize::MAX {
                panic!("boom");
            }
            Ok(())
        });
        assert_eq!(status, SPARSEFLOW_STATUS_INTERNAL);
        let msg = last_error();
        assert!(msg.starts_with("sparseflow_test: internal error") && msg.contains("boom"));
    }

    #[test]
    fn error_sets_message_and_status() {
        let status = ffi_boundary!("sparseflow_test", { Err(Error::invalid("bad n")) });
        assert_eq!(status, SPARSEFLOW_STATUS_INVALID_ARGUMENT);
        assert_eq!(last_error(), "sparseflow_test: bad n");
    }

    #[test]
    fn value_boundary_falls_back() {
        let v = ffi_boundary_value!("sparseflow_test", 7u32, {
            let v: Vec<u32> = Vec::new();
            v[3]
        });
        assert_eq!(v, 7);
    }
}
