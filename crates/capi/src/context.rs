//! `sparseflow_context_create` / `sparseflow_context_destroy`.

use crate::boundary::ffi_boundary;
use crate::engine::{self, Context, Device};
use crate::error::{Error, Result};
use crate::handles::{self, Handle};
use crate::types::{SparseFlowContext, SparseFlowContext_, SparseFlowStatus};

/// What a `SparseFlowContext` handle refers to.
pub(crate) struct ContextObj {
    pub ctx: Context,
}

impl Handle for ContextObj {
    type Opaque = SparseFlowContext_;
    const TAG: usize = 0xC5;
    const NAME: &'static str = "context";
}

/// Writes `value` through a C out-pointer.
///
/// # Safety
/// `out` must be NULL (an error) or valid for a write of `T`.
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T) {
    // SAFETY: callers check `out` for NULL first; validity is the C caller's contract.
    unsafe { out.write(value) }
}

pub(crate) fn check_out<T>(out: *mut T) -> Result<()> {
    if out.is_null() {
        return Err(Error::invalid("the out-pointer is NULL"));
    }
    Ok(())
}

/// Creates a context on `device`: `-1` for the CPU backend (always available; exact reference
/// semantics, host pointers), `0, 1, ...` for that CUDA device (needs an NVIDIA driver and an
/// sm_80+ GPU; uses the device's primary context, so pointers and streams of the CUDA runtime,
/// PyTorch, etc. in the same process work with it).
///
/// On success `*out` is a new handle, to be released with `sparseflow_context_destroy`. On
/// failure `*out` is set to NULL (when `out` is not NULL) and the status says why:
/// `INVALID_ARGUMENT` (NULL `out`, device < -1, device index that does not exist),
/// `CUDA_ERROR` (no driver, driver failure), `UNSUPPORTED` (GPU older than sm_80),
/// `OUT_OF_MEMORY`.
///
/// Thread safety: callable from any thread. The context itself may be used from any number of
/// threads at once (kernel creation and runs included).
///
/// # Safety
/// `out` must be NULL or point to writable storage for one `SparseFlowContext`.
#[no_mangle]
pub unsafe extern "C" fn sparseflow_context_create(
    device: i32,
    out: *mut SparseFlowContext,
) -> SparseFlowStatus {
    ffi_boundary!("sparseflow_context_create", {
        check_out(out)?;
        // SAFETY: `out` is non-NULL; the caller guarantees it is writable.
        unsafe { write_out(out, std::ptr::null_mut()) };
        let device = match device {
            -1 => Device::Cpu,
            d if d >= 0 => Device::Cuda(d as usize),
            d => {
                return Err(Error::invalid(format!(
                    "device must be -1 (CPU backend) or a CUDA device index >= 0, got {d}"
                )))
            }
        };
        let ctx = Context::new(device).map_err(engine::runtime_error)?;
        let handle = handles::new_handle(ContextObj { ctx });
        // SAFETY: as above.
        unsafe { write_out(out, handle) };
        Ok(())
    })
}

/// Destroys a context handle. Kernels created from it stay valid (they keep what they need of
/// the context alive); the device resources go when the last of them is destroyed too.
///
/// `INVALID_HANDLE` for NULL, a foreign pointer, or a context already destroyed (double
/// destroy is detected, not undefined behaviour); nothing happens in that case.
///
/// Thread safety: callable from any thread, but the caller must make sure no other thread is
/// still using this handle (those calls fail with `INVALID_HANDLE` once it is gone; calls
/// already running finish safely).
#[no_mangle]
pub extern "C" fn sparseflow_context_destroy(context: SparseFlowContext) -> SparseFlowStatus {
    ffi_boundary!("sparseflow_context_destroy", {
        handles::destroy::<ContextObj>(context)
    })
}
