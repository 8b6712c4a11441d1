//! Version and error reporting: `sparseflow_abi_version`, `sparseflow_last_error`,
//! `sparseflow_status_string`.

use std::ffi::c_char;

use crate::boundary::ffi_boundary_value;
use crate::error::{last_error_ptr, status_cstr};
use crate::types::RawStatus;

/// Major version of the C ABI. Bumped on any incompatible change (a removed or changed
/// function, type or enum value); a program built against another major must not load this
/// library.
pub const SPARSEFLOW_ABI_VERSION_MAJOR: u32 = 1;

/// Minor version of the C ABI. Bumped when functions or enum values are appended; programs
/// built against an older minor of the same major keep working.
pub const SPARSEFLOW_ABI_VERSION_MINOR: u32 = 1;

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
