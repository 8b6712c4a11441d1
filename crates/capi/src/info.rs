//! Version, error reporting and the epilogue table: `sparseflow_abi_version`,
//! `sparseflow_last_error`, `sparseflow_status_string`, `sparseflow_epilogue_info`.

use std::ffi::{c_char, CString};
use std::sync::OnceLock;

use sparseflow_core::EPILOGUES;

use crate::boundary::{ffi_boundary, ffi_boundary_value};
use crate::context::{check_out, write_out};
use crate::error::{last_error_ptr, status_cstr};
use crate::host::epilogue_arg;
use crate::types::{RawEpilogue, RawStatus, SparseFlowStatus};

/// Major version of the C ABI. Bumped on any incompatible change (a removed or changed
/// function, type or enum value); a program built against another major must not load this
/// library.
pub const SPARSEFLOW_ABI_VERSION_MAJOR: u32 = 1;

/// Minor version of the C ABI. Bumped when functions or enum values are appended; programs
/// built against an older minor of the same major keep working.
pub const SPARSEFLOW_ABI_VERSION_MINOR: u32 = 3;

/// The library's ABI version: `(SPARSEFLOW_ABI_VERSION_MAJOR << 16) | SPARSEFLOW_ABI_VERSION_MINOR`.
///
/// Compare its major (`>> 16`) with the header's `SPARSEFLOW_ABI_VERSION_MAJOR` at start-up and
/// refuse to run on a mismatch; a library minor >= the header's minor has every function the
/// header declares.
///
/// Thread safety: callable from any thread at any time.
#[no_mangle]
pub extern "C" fn sparseflow_abi_version() -> u32 {
    ffi_boundary_value!("sparseflow_abi_version", 0, {
        (SPARSEFLOW_ABI_VERSION_MAJOR << 16) | SPARSEFLOW_ABI_VERSION_MINOR
    })
}

/// The message of the last failed `sparseflow_*` call on the calling thread, or "" if none
/// failed yet. Successful calls leave it unchanged (like `errno`).
///
/// Ownership: the string belongs to the library; never free it. It stays valid until the next
/// failing `sparseflow_*` call on the same thread (copy it if you need it longer).
///
/// Thread safety: callable from any thread; each thread has its own message.
#[no_mangle]
pub extern "C" fn sparseflow_last_error() -> *const c_char {
    ffi_boundary_value!("sparseflow_last_error", c"".as_ptr(), { last_error_ptr() })
}

/// The name of a status code, e.g. "SPARSEFLOW_STATUS_NOT_2TO4"; "SPARSEFLOW_STATUS_UNKNOWN" for
/// values this library does not know. Never NULL.
///
/// Ownership: a static string; never free it.
///
/// Thread safety: callable from any thread at any time.
#[no_mangle]
pub extern "C" fn sparseflow_status_string(status: RawStatus) -> *const c_char {
    ffi_boundary_value!("sparseflow_status_string", c"".as_ptr(), {
        status_cstr(status).as_ptr()
    })
}

/// `(name, activation)` of every epilogue as C strings, in ABI order, made once.
fn epilogue_strings() -> &'static [(CString, CString)] {
    static STRINGS: OnceLock<Vec<(CString, CString)>> = OnceLock::new();
    STRINGS.get_or_init(|| {
        EPILOGUES
            .iter()
            .map(|s| {
                let c = |text: String| CString::new(text).expect("table names hold no NUL");
                (c(s.name.to_string()), c(s.activation()))
            })
            .collect()
    })
}

/// Describes an epilogue value (ABI 1.2), read from the library's epilogue table: `*name` its
/// name ("bias_relu2"), `*activation` the activation it applies ("relu2"; "none" for
/// `SPARSEFLOW_EPILOGUE_NONE` and `_BIAS`), `*uses_bias` 1 when a kernel with it needs a bias
/// vector, else 0. Enumerate every epilogue this library knows by calling it with 0, 1, 2, ...
/// until it returns `INVALID_ARGUMENT`.
///
/// Errors: `INVALID_ARGUMENT` (an unknown value, a NULL out-pointer; nothing is written).
///
/// Ownership: the strings are static; never free them.
///
/// Thread safety: callable from any thread at any time.
///
/// # Safety
/// Each out-pointer is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sparseflow_epilogue_info(
    epilogue: RawEpilogue,
    name: *mut *const c_char,
    activation: *mut *const c_char,
    uses_bias: *mut i32,
) -> SparseFlowStatus {
    ffi_boundary!("sparseflow_epilogue_info", {
        let kind = epilogue_arg(epilogue)?;
        check_out(name)?;
        check_out(activation)?;
        check_out(uses_bias)?;
        let (name_c, activation_c) = &epilogue_strings()[kind as usize];
        // SAFETY: the three pointers were checked non-NULL and are writable by contract.
        unsafe {
            write_out(name, name_c.as_ptr());
            write_out(activation, activation_c.as_ptr());
            write_out(uses_bias, i32::from(kind.uses_bias()));
        }
        Ok(())
    })
}
