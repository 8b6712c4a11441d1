//! Errors on the Rust side of the boundary, their status codes, and the thread-local
//! `sparseflow_last_error()` message.

use std::cell::RefCell;
use std::ffi::{c_char, CString};

use sparseflow_core::CoreError;

use crate::types::SparseFlowStatus::{self, *};

/// An error on its way to C: the status to return and the message for `sparseflow_last_error`.
#[derive(Debug, Clone)]
pub(crate) struct Error {
    pub status: SparseFlowStatus,
    pub message: String,
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(status: SparseFlowStatus, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(SPARSEFLOW_STATUS_INVALID_ARGUMENT, message)
    }

    pub fn handle(message: impl Into<String>) -> Error {
        Error::new(SPARSEFLOW_STATUS_INVALID_HANDLE, message)
    }

    pub fn unsupported(message: impl Into<String>) -> Error {
        Error::new(SPARSEFLOW_STATUS_UNSUPPORTED, message)
    }
}

impl From<CoreError> for Error {
    fn from(e: CoreError) -> Error {
        let status = match e {
            CoreError::Not24 { .. } | CoreError::BadMeta { .. } => SPARSEFLOW_STATUS_NOT_2TO4,
            CoreError::OutOfMemory { .. } => SPARSEFLOW_STATUS_OUT_OF_MEMORY,
            CoreError::KNotMultipleOf4 { .. }
            | CoreError::ZeroDim { .. }
            | CoreError::LengthMismatch { .. }
            | CoreError::Overflow { .. }
            | CoreError::NonFinite { .. }
            | CoreError::UnknownEpilogue { .. }
            | CoreError::BiasMismatch { .. }
            | CoreError::DTypeMismatch(_)
            | CoreError::NonFiniteInput(_)
            | CoreError::Prune(_) => SPARSEFLOW_STATUS_INVALID_ARGUMENT,
        };
        Error::new(status, e.to_string())
    }
}

/// The static, NUL-terminated name of a status (for `sparseflow_status_string`).
pub(crate) fn status_cstr(raw: u32) -> &'static std::ffi::CStr {
    match raw {
        0 => c"SPARSEFLOW_STATUS_OK",
        1 => c"SPARSEFLOW_STATUS_INVALID_ARGUMENT",
        2 => c"SPARSEFLOW_STATUS_INVALID_HANDLE",
        3 => c"SPARSEFLOW_STATUS_NOT_2TO4",
        4 => c"SPARSEFLOW_STATUS_UNSUPPORTED",
        5 => c"SPARSEFLOW_STATUS_CUDA_ERROR",
        6 => c"SPARSEFLOW_STATUS_OUT_OF_MEMORY",
        7 => c"SPARSEFLOW_STATUS_INTERNAL",
        _ => c"SPARSEFLOW_STATUS_UNKNOWN",
    }
}

thread_local! {
    /// The last failure's message on this thread. Kept as a `CString` so the pointer handed to
    /// C stays valid until this thread's next failing call replaces it.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `message` as this thread's last error. Never panics: interior NULs are replaced,
/// and a thread being torn down (thread-local already destroyed) just loses the message.
pub(crate) fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    let _ = LAST_ERROR.try_with(|cell| {
        if let Ok(mut slot) = cell.try_borrow_mut() {
            *slot = c;
        }
    });
}

/// Pointer to this thread's last error message ("" if none yet).
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR
        .try_with(|cell| match cell.try_borrow() {
            // The pointer stays valid after the borrow ends: the CString's heap buffer is only
            // freed when `set_last_error` replaces it on this same thread.
            Ok(s) => s.as_ptr(),
            Err(_) => c"".as_ptr(),
        })
        .unwrap_or(c"".as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_map_to_statuses() {
        let e: Error = CoreError::BadMeta {
            row: 0,
            group: 0,
            code: 5,
        }
        .into();
        assert_eq!(e.status, SPARSEFLOW_STATUS_NOT_2TO4);
        let e: Error = CoreError::KNotMultipleOf4 { k: 6 }.into();
        assert_eq!(e.status, SPARSEFLOW_STATUS_INVALID_ARGUMENT);
        assert!(e.message.contains("multiple of 4"));
    }

    #[test]
    fn last_error_survives_interior_nul() {
        set_last_error("a\0b");
        // SAFETY: last_error_ptr returns a valid NUL-terminated string owned by this thread.
        let s = unsafe { std::ffi::CStr::from_ptr(last_error_ptr()) };
        assert_eq!(s.to_str().unwrap(), "a\\0b");
    }
}
