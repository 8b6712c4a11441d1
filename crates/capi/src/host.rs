//! Checking what C hands us before any of it becomes a Rust slice: sizes (sign, zero,
//! overflow), NULL pointers, alignment.

use std::ffi::c_void;

use sparseflow_core::{DType, EpilogueKind};

use crate::error::{Error, Result};
use crate::types::{epilogue_from_raw, RawEpilogue};

/// An epilogue value from C: one of the epilogue table's ABI values.
pub(crate) fn epilogue_arg(raw: RawEpilogue) -> Result<EpilogueKind> {
    epilogue_from_raw(raw).ok_or_else(|| {
        Error::invalid(format!(
            "unknown epilogue {raw}: valid values are 0..={} ({})",
            sparseflow_core::EPILOGUES.len() - 1,
            EpilogueKind::valid_names()
        ))
    })
}

/// Core's bias rule (`EpilogueKind::check_bias`) for a C bias pointer named `what`: NULL means
/// "no bias", a non-NULL pointer holds `n` elements by the caller's contract.
pub(crate) fn check_bias_ptr(
    epilogue: EpilogueKind,
    bias: *const c_void,
    n: usize,
    what: &str,
) -> Result<()> {
    let given = !bias.is_null();
    epilogue.check_bias(given.then_some(n), n).map_err(|e| {
        let state = if given { "not NULL" } else { "NULL" };
        Error::invalid(format!("{what} is {state}: {e}"))
    })
}

/// A dimension from C: must be positive and fit `usize`.
pub(crate) fn dim(value: i64, what: &str) -> Result<usize> {
    if value <= 0 {
        return Err(Error::invalid(format!(
            "{what} must be positive, got {value}"
        )));
    }
    usize::try_from(value).map_err(|_| {
        Error::invalid(format!(
            "{what} = {value} does not fit this platform's size_t"
        ))
    })
}

/// `rows * cols` elements of `dtype`: the element count, refusing products whose byte size
/// overflows `isize` (the largest object Rust or C can address).
pub(crate) fn elements(rows: usize, cols: usize, dtype: DType, what: &str) -> Result<usize> {
    rows.checked_mul(cols)
        .filter(|&len| {
            len.checked_mul(dtype.size_bytes())
                .is_some_and(|b| b <= isize::MAX as usize)
        })
        .ok_or_else(|| {
            Error::invalid(format!(
                "{what} is {rows} x {cols} {dtype} elements: the size overflows"
            ))
        })
}

/// Checks that `ptr` is non-NULL and aligned for `align`-byte elements.
pub(crate) fn check_ptr(ptr: *const c_void, align: usize, what: &str) -> Result<()> {
    if ptr.is_null() {
        return Err(Error::invalid(format!("{what} is NULL")));
    }
    if !(ptr as usize).is_multiple_of(align) {
        return Err(Error::invalid(format!(
            "{what} ({ptr:p}) is not aligned to its {align}-byte element type"
        )));
    }
    Ok(())
}

/// Borrows `len` elements of host data.
///
/// # Safety
/// `ptr` must be NULL (reported as an error) or point to `len` readable, initialised `T`s that
/// are not written during the borrow. That is the C caller's documented contract; the length
/// itself cannot be checked from here.
pub(crate) unsafe fn host_slice<'a, T>(
    ptr: *const c_void,
    len: usize,
    what: &str,
) -> Result<&'a [T]> {
    check_ptr(ptr, std::mem::align_of::<T>(), what)?;
    // SAFETY: non-NULL and aligned (checked above); length, initialisation and no concurrent
    // writes are the caller's contract; `len * size_of::<T>() <= isize::MAX` was checked by
    // `elements` in every caller.
    Ok(unsafe { std::slice::from_raw_parts(ptr.cast::<T>(), len) })
}

/// Borrows `len` elements of writable host data.
///
/// # Safety
/// As [`host_slice`], writable, and not aliased by any other slice during the borrow.
pub(crate) unsafe fn host_slice_mut<'a, T>(
    ptr: *mut c_void,
    len: usize,
    what: &str,
) -> Result<&'a mut [T]> {
    check_ptr(ptr, std::mem::align_of::<T>(), what)?;
    // SAFETY: as in `host_slice`, plus exclusive access, which is the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr.cast::<T>(), len) })
}

/// Whether two byte ranges overlap (host buffers that must not alias).
pub(crate) fn overlaps(a: *const c_void, a_bytes: usize, b: *const c_void, b_bytes: usize) -> bool {
    let (a, b) = (a as usize, b as usize);
    a < b.saturating_add(b_bytes) && b < a.saturating_add(a_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dims_and_overflow() {
        assert!(dim(0, "n").is_err());
        assert!(dim(-1, "n").is_err());
        assert_eq!(dim(8, "n").unwrap(), 8);
        assert!(elements(usize::MAX / 2, 3, DType::F16, "w").is_err());
        assert!(elements(1 << 31, 1 << 31, DType::F32, "w").is_err());
        assert_eq!(elements(3, 4, DType::F32, "w").unwrap(), 12);
    }

    #[test]
    fn pointer_checks() {
        assert!(check_ptr(std::ptr::null(), 2, "x").is_err());
        let v = [0u32; 2];
        let p = v.as_ptr().cast::<u8>();
        assert!(check_ptr(p.cast(), 4, "x").is_ok());
        // SAFETY: one byte into a live 8-byte array stays in bounds.
        assert!(check_ptr(unsafe { p.add(1) }.cast(), 4, "x").is_err());
        assert!(overlaps(p.cast(), 8, p.cast(), 1));
        // SAFETY: four bytes into a live 8-byte array stays in bounds.
        assert!(!overlaps(p.cast(), 4, unsafe { p.add(4) }.cast(), 4));
    }
}
