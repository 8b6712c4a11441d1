//! Host-side format helpers: `sparseflow_compressed_sizes`, `sparseflow_compress_2to4`,
//! `sparseflow_validate_2to4`. No context needed; pure functions of their arguments.

use std::ffi::c_void;

use sparseflow_core::format::meta_bytes_per_row;
use sparseflow_core::{dispatch_dtype, validate, CoreError, DType, Element, Sparse24};

use crate::boundary::ffi_boundary;
use crate::context::{check_out, write_out};
use crate::error::{Error, Result};
use crate::host::{dim, elements, host_slice, host_slice_mut};
use crate::types::{dtype_from_raw, RawDType, SparseFlowStatus, SPARSEFLOW_COMPRESS_PRUNE};

/// Checked `(n, k, dtype)` of a dense `[n, k]` weight.
fn dense_shape(dtype: RawDType, n: i64, k: i64) -> Result<(DType, usize, usize)> {
    let dtype = dtype_from_raw(dtype).ok_or_else(|| {
        Error::invalid(format!(
            "unknown dtype {dtype}: use SPARSEFLOW_DTYPE_F16 (0), SPARSEFLOW_DTYPE_BF16 (1) or \
             SPARSEFLOW_DTYPE_F32 (2)"
        ))
    })?;
    let (n, k) = (dim(n, "n")?, dim(k, "k")?);
    if !k.is_multiple_of(4) {
        return Err(CoreError::KNotMultipleOf4 { k }.into());
    }
    elements(n, k, dtype, "the weight [n, k]")?;
    Ok((dtype, n, k))
}

/// `(values elements, meta bytes)` of the compressed form of an `[n, k]` weight.
fn sizes(n: usize, k: usize) -> (usize, usize) {
    // n*k fits (checked by `dense_shape`), so both products do.
    (n * (k / 2), n * meta_bytes_per_row(k))
}

/// The buffer sizes `sparseflow_compress_2to4` writes and `sparseflow_kernel_create` reads for
/// an `[n, k]` weight: `*values_len = n * k / 2` elements, `*meta_len = n * ceil(k / 8)` bytes.
///
/// Errors: `INVALID_ARGUMENT` (NULL out-pointer, n/k <= 0, k % 4 != 0, overflow).
/// Thread safety: callable from any thread at any time.
///
/// # Safety
/// `values_len` and `meta_len` must be NULL or point to writable `int64_t`s.
#[no_mangle]
pub unsafe extern "C" fn sparseflow_compressed_sizes(
    n: i64,
    k: i64,
    values_len: *mut i64,
    meta_len: *mut i64,
) -> SparseFlowStatus {
    ffi_boundary!("sparseflow_compressed_sizes", {
        check_out(values_len)?;
        check_out(meta_len)?;
        // F16 is the narrowest dtype, so this accepts every shape some dtype can hold.
        let (_, n, k) = dense_shape(0, n, k)?;
        let (v, m) = sizes(n, k);
        // SAFETY: both out-pointers are non-NULL and writable by contract. The lengths are
        // below n*k <= isize::MAX, so they fit i64.
        unsafe {
            write_out(values_len, v as i64);
            write_out(meta_len, m as i64);
        }
        Ok(())
    })
}

/// # Safety
/// The C contract of `sparseflow_compress_2to4`.
unsafe fn compress<T: Element>(
    n: usize,
    k: usize,
    dense: *const c_void,
    prune: bool,
    values_out: *mut c_void,
    meta_out: *mut c_void,
) -> Result<()> {
    let (values_len, meta_len) = sizes(n, k);
    // SAFETY: `dense` holds n*k elements (caller contract; size checked).
    let dense = unsafe { host_slice::<T>(dense, n * k, "dense")? };
    let sparse = if prune {
        Sparse24::prune_compress(dense, n, k)?
    } else {
        Sparse24::compress(dense, n, k)?
    };
    // SAFETY: caller contract: `values_out` holds values_len writable elements, `meta_out`
    // meta_len writable bytes, neither overlapping `dense` (which is no longer borrowed here:
    // `sparse` owns copies).
    let values = unsafe { host_slice_mut::<T>(values_out, values_len, "values_out")? };
    values.copy_from_slice(&sparse.values);
    // SAFETY: as above.
    let meta = unsafe { host_slice_mut::<u8>(meta_out, meta_len, "meta_out")? };
    meta.copy_from_slice(&sparse.meta);
    Ok(())
}

/// Compresses a dense host `[n, k]` weight to the 2:4 format of docs/FORMAT.md (the input of
/// `sparseflow_kernel_create`, and of `.values` / `.meta` tensors in SparseFlow model files).
///
/// * `flags`: 0 = the weight must already be 2:4 (else `NOT_2TO4`, naming the first bad
///   group); `SPARSEFLOW_COMPRESS_PRUNE` = magnitude-prune to 2:4 first. Other bits are
///   `INVALID_ARGUMENT` (reserved).
/// * `values_out`: `n * k / 2` elements of `dtype`; `meta_out`: `n * ceil(k / 8)` bytes (see
///   `sparseflow_compressed_sizes`). Nothing is written on failure.
///
/// Thread safety: callable from any thread at any time (distinct output buffers).
///
/// # Safety
/// `dense` must be NULL or hold `n * k` readable elements of `dtype`; `values_out` NULL or
/// `n * k / 2` writable elements; `meta_out` NULL or `n * ceil(k / 8)` writable bytes; the
/// outputs must not overlap the input.
#[no_mangle]
pub unsafe extern "C" fn sparseflow_compress_2to4(
    dtype: RawDType,
    n: i64,
    k: i64,
    dense: *const c_void,
    flags: u32,
    values_out: *mut c_void,
    meta_out: *mut u8,
) -> SparseFlowStatus {
    ffi_boundary!("sparseflow_compress_2to4", {
        let (dtype, n, k) = dense_shape(dtype, n, k)?;
        if flags & !SPARSEFLOW_COMPRESS_PRUNE != 0 {
            return Err(Error::invalid(format!(
                "unknown flags {flags:#x}: only SPARSEFLOW_COMPRESS_PRUNE (0x1) is defined"
            )));
        }
        let prune = flags & SPARSEFLOW_COMPRESS_PRUNE != 0;
        let meta_out = meta_out.cast::<c_void>();
        // SAFETY: buffer sizes are the C caller's contract, documented above.
        unsafe {
            dispatch_dtype!(dtype, T => compress::<T>(n, k, dense, prune, values_out, meta_out))
        }
    })
}

/// # Safety
/// `dense` holds n*k elements of `T`.
unsafe fn check<T: Element>(n: usize, k: usize, dense: *const c_void) -> Result<()> {
    // SAFETY: caller contract; size checked.
    let dense = unsafe { host_slice::<T>(dense, n * k, "dense")? };
    validate(dense, n, k)?;
    Ok(())
}

/// Checks that a dense host `[n, k]` weight is 2:4 (at most two non-zeros in every aligned
/// group of 4 along K). `OK` if so; `NOT_2TO4` otherwise, with the first offending row, group
/// and values in `sparseflow_last_error()`; `INVALID_ARGUMENT` for bad arguments.
///
/// Thread safety: callable from any thread at any time.
///
/// # Safety
/// `dense` must be NULL or hold `n * k` readable elements of `dtype`.
#[no_mangle]
pub unsafe extern "C" fn sparseflow_validate_2to4(
    dtype: RawDType,
    n: i64,
    k: i64,
    dense: *const c_void,
) -> SparseFlowStatus {
    ffi_boundary!("sparseflow_validate_2to4", {
        let (dtype, n, k) = dense_shape(dtype, n, k)?;
        // SAFETY: buffer size is the C caller's contract, documented above.
        unsafe { dispatch_dtype!(dtype, T => check::<T>(n, k, dense)) }
    })
}
