//! The device layout from C (ABI 1.3): `sparseflow_device_layout_sizes` and
//! `sparseflow_layout_to_device_order`, the host half of adopting a caller's device buffers
//! (`sparseflow_kernel_create_from_device_layout`, kernel.rs). The layout is the runtime's one
//! fragment layout (docs/FORMAT.md, "The device layout"); this file only checks C arguments and
//! copies bytes, the permutation itself is `sparseflow_runtime::to_fragment_layout`.

use std::ffi::c_void;

use sparseflow_core::alloc::try_copy;
use sparseflow_core::format::meta_bytes_per_row;
use sparseflow_core::{CoreError, DType, Element, Sparse24};

use crate::boundary::ffi_boundary;
use crate::context::{check_out, write_out};
use crate::engine;
use crate::error::{Error, Result};
use crate::host::{dim, elements, host_slice, host_slice_mut, overlaps};
use crate::types::{dtype_from_raw, RawDType, SparseFlowStatus};

/// Checked `(n, k)` of a weight in the device layout (any dtype that layout holds).
fn layout_shape(n: i64, k: i64) -> Result<(usize, usize)> {
    let (n, k) = (dim(n, "n")?, dim(k, "k")?);
    if !k.is_multiple_of(4) {
        return Err(CoreError::KNotMultipleOf4 { k }.into());
    }
    elements(n, k, DType::F16, "the weight [n, k]")?;
    Ok((n, k))
}

/// `(values, meta)` bytes of an `[n, k]` weight in the device layout.
pub(crate) fn layout_bytes(n: usize, k: usize) -> Result<(usize, usize)> {
    engine::fragment_layout_bytes(n, k).map_err(engine::runtime_error)
}

/// The byte sizes of an `[n, k]` weight in the device layout, which
/// `sparseflow_layout_to_device_order` writes and `sparseflow_kernel_create_from_device_layout`
/// reads: `*values_bytes = Np * Kp` (f16/bf16 values), `*meta_bytes = Np * Kp / 8`, where N is
/// padded to a multiple of 128 and K to 64 (so a Llama-style `[4096, 14336]` weight takes exactly
/// its compressed size, and a small one more).
///
/// Errors: `INVALID_ARGUMENT` (NULL out-pointer, n/k <= 0, k % 4 != 0, overflow).
/// Thread safety: callable from any thread at any time.
///
/// # Safety
/// `values_bytes` and `meta_bytes` must be NULL or point to writable `int64_t`s.
#[no_mangle]
pub unsafe extern "C" fn sparseflow_device_layout_sizes(
    n: i64,
    k: i64,
    values_bytes: *mut i64,
    meta_bytes: *mut i64,
) -> SparseFlowStatus {
    ffi_boundary!("sparseflow_device_layout_sizes", {
        check_out(values_bytes)?;
        check_out(meta_bytes)?;
        let (n, k) = layout_shape(n, k)?;
        let (v, m) = layout_bytes(n, k)?;
        let fits = |b: usize| {
            i64::try_from(b).map_err(|_| Error::invalid("the device layout's size overflows"))
        };
        let (v, m) = (fits(v)?, fits(m)?);
        // SAFETY: both out-pointers are non-NULL and writable by contract.
        unsafe {
            write_out(values_bytes, v);
            write_out(meta_bytes, m);
        }
        Ok(())
    })
}

/// # Safety
/// The C contract of `sparseflow_layout_to_device_order`.
unsafe fn to_device_order<T: Element>(
    n: usize,
    k: usize,
    values: *const c_void,
    meta: *const c_void,
    values_out: *mut c_void,
    meta_out: *mut c_void,
) -> Result<()> {
    let (values_bytes, meta_bytes) = layout_bytes(n, k)?;
    let (values_len, meta_len) = (n * (k / 2), n * meta_bytes_per_row(k));
    let outs = [(values_out, values_bytes), (meta_out, meta_bytes)];
    let ins = [
        (values, values_len * std::mem::size_of::<T>()),
        (meta, meta_len),
    ];
    for (o, ob) in outs {
        if ins.iter().any(|&(i, ib)| overlaps(o, ob, i, ib)) {
            return Err(Error::invalid(
                "an output buffer overlaps an input: the device order needs its own buffers",
            ));
        }
    }
    // SAFETY: the C contract: `values` holds n*k/2 elements of T (n*k fits, checked).
    let values = unsafe { host_slice::<T>(values, values_len, "values")? };
    // SAFETY: as above, n*ceil(k/8) bytes.
    let meta = unsafe { host_slice::<u8>(meta, meta_len, "meta")? };
    // Checks lengths, finiteness and every metadata code (NOT_2TO4 names the first bad one),
    // so the device buffers are only ever filled from a valid weight.
    let w = Sparse24::from_parts(n, k, try_copy(values, "values")?, try_copy(meta, "meta")?)?;
    let (v, m) = engine::to_fragment_layout(&w).map_err(engine::runtime_error)?;
    // SAFETY: the C contract: the outputs hold the sizes of sparseflow_device_layout_sizes,
    // are writable, and do not overlap the inputs (checked above).
    let vo = unsafe { host_slice_mut::<u8>(values_out, values_bytes, "values_out")? };
    // SAFETY: as above.
    let mo = unsafe { host_slice_mut::<u8>(meta_out, meta_bytes, "meta_out")? };
    vo.copy_from_slice(&v);
    mo.copy_from_slice(&m);
    Ok(())
}

/// Lays a compressed 2:4 weight out in the device order on the host: the canonical `values
/// [n, k/2]` (f16/bf16) and `meta uint8_t [n, ceil(k/8)]` of `sparseflow_kernel_create` become
/// the `values_out` / `meta_out` bytes (sizes from `sparseflow_device_layout_sizes`) that
/// `sparseflow_kernel_create_from_device_layout` reads on the GPU. Copy them to device memory
/// as they are (e.g. `cudaMemcpy`); every kernel family reads this one layout.
///
/// The metadata is checked (`NOT_2TO4` names the first bad code) and the values must be
/// finite; nothing is written on failure. `SPARSEFLOW_DTYPE_F32` is `UNSUPPORTED` (the device
/// layout holds the values the sparse tensor cores read: f16 or bf16).
///
/// Errors: `INVALID_ARGUMENT` (NULL pointers, bad sizes, unknown dtype, misaligned or
/// overlapping buffers, NaN/Inf), `NOT_2TO4`, `UNSUPPORTED`, `OUT_OF_MEMORY`.
/// Thread safety: callable from any thread at any time (distinct output buffers).
///
/// # Safety
/// `values` must be NULL or hold `n * k / 2` readable elements of `dtype`, `meta` NULL or
/// `n * ceil(k / 8)` readable bytes; `values_out` / `meta_out` NULL or hold the writable byte
/// counts `sparseflow_device_layout_sizes` returns; outputs must not overlap inputs.
#[no_mangle]
pub unsafe extern "C" fn sparseflow_layout_to_device_order(
    dtype: RawDType,
    n: i64,
    k: i64,
    values: *const c_void,
    meta: *const u8,
    values_out: *mut c_void,
    meta_out: *mut u8,
) -> SparseFlowStatus {
    ffi_boundary!("sparseflow_layout_to_device_order", {
        let dtype = dtype_from_raw(dtype).ok_or_else(|| {
            Error::invalid(format!(
                "unknown dtype {dtype}: use SPARSEFLOW_DTYPE_F16 (0) or SPARSEFLOW_DTYPE_BF16 (1)"
            ))
        })?;
        let (n, k) = layout_shape(n, k)?;
        let (meta, meta_out) = (meta.cast::<c_void>(), meta_out.cast::<c_void>());
        // SAFETY (all arms): buffer sizes are the C caller's contract, documented above.
        match dtype {
            DType::F16 => unsafe {
                to_device_order::<half::f16>(n, k, values, meta, values_out, meta_out)
            },
            DType::BF16 => unsafe {
                to_device_order::<half::bf16>(n, k, values, meta, values_out, meta_out)
            },
            DType::F32 => Err(Error::unsupported(
                "the device layout holds f16 or bf16 values (what the sparse tensor cores read); \
                 convert the weight to SPARSEFLOW_DTYPE_F16 or _BF16",
            )),
        }
    })
}
