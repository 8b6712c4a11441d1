//! Raw host pointers from Python → Rust slices (dtype dispatch is `sparseflow_core::dispatch_dtype!`).
//!
//! The one place where addresses handed over by Python become references. The Python layer
//! guarantees what the checks here cannot: the tensor behind the address is a contiguous CPU
//! tensor of the stated dtype and at least `len` elements, alive for the duration of the call,
//! and (for outputs) not aliased by any input.

use pyo3::PyResult;
use sparseflow_core::DType;

use crate::error::value_err;

/// Parses the PyTorch dtype spelling (`float32`, `float16`, `bfloat16`, with or without the
/// `torch.` prefix).
pub fn parse_dtype(name: &str) -> PyResult<DType> {
    let name = name.strip_prefix("torch.").unwrap_or(name);
    DType::ALL
        .into_iter()
        .find(|d| d.torch_name() == name)
        .ok_or_else(|| {
            value_err(format!(
                "unsupported dtype {name}: SparseFlow weights are float16, bfloat16 (GPU and CPU) or float32 (CPU only)"
            ))
        })
}

fn check_ptr<T>(addr: usize, len: usize, what: &str) -> PyResult<()> {
    if addr == 0 {
        return Err(value_err(format!("{what}: null data pointer")));
    }
    if !addr.is_multiple_of(std::mem::align_of::<T>()) {
        return Err(value_err(format!(
            "{what}: data pointer {addr:#x} is not aligned for its dtype"
        )));
    }
    if len.checked_mul(std::mem::size_of::<T>()).is_none() {
        return Err(value_err(format!("{what}: size overflows")));
    }
    Ok(())
}

/// Borrows `len` elements at `addr`.
///
/// # Safety
/// `addr` must point to `len` initialised `T`s that stay alive and unmodified for `'a`.
pub unsafe fn slice<'a, T>(addr: usize, len: usize, what: &str) -> PyResult<&'a [T]> {
    check_ptr::<T>(addr, len, what)?;
    // SAFETY: non-null and aligned (checked above); validity and lifetime are the caller's
    // contract, upheld by the Python layer (contiguous CPU tensor of this dtype and size).
    Ok(unsafe { std::slice::from_raw_parts(addr as *const T, len) })
}

/// Mutably borrows `len` elements at `addr`.
///
/// # Safety
/// As [`slice`], and no other reference to that memory may exist for `'a`.
pub unsafe fn slice_mut<'a, T>(addr: usize, len: usize, what: &str) -> PyResult<&'a mut [T]> {
    check_ptr::<T>(addr, len, what)?;
    // SAFETY: non-null and aligned (checked above); the Python layer passes a freshly
    // allocated output tensor that no input aliases.
    Ok(unsafe { std::slice::from_raw_parts_mut(addr as *mut T, len) })
}
