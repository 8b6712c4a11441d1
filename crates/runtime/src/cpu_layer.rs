//! The CPU backend of a `SparseGemm`: the weight and bias kept in their own element type, behind
//! a trait object so `SparseGemm` needs neither a type parameter nor a downcast (the element
//! type is fixed when the layer is built and dispatched through the vtable).

use std::ffi::c_void;

use sparseflow_core::alloc::try_copy;
use sparseflow_core::{Element, EpilogueKind, Sparse24};

use crate::error::Result;
use crate::launch;

pub(crate) trait CpuLayer: Send + Sync {
    /// Computes `y [m, n]` from `x [m, k]` with `sparseflow_core`'s reference GEMM.
    ///
    /// # Safety
    /// `x` must hold `m·k` and `y` `m·n` elements of the layer's dtype, not overlapping, both
    /// valid for the duration of the call.
    unsafe fn forward_raw(&self, x: *const c_void, y: *mut c_void, m: usize) -> Result<()>;
}

struct Typed<T: Element> {
    weight: Sparse24<T>,
    bias: Option<Vec<T>>,
    epilogue: EpilogueKind,
}

/// A CPU layer holding copies of `weight` and `bias` (a refused allocation is an error, not an
/// abort).
pub(crate) fn new<T: Element>(
    weight: &Sparse24<T>,
    bias: Option<&[T]>,
    epilogue: EpilogueKind,
) -> Result<Box<dyn CpuLayer>> {
    Ok(Box::new(Typed {
        weight: Sparse24 {
            n: weight.n,
            k: weight.k,
            values: try_copy(&weight.values, "weight values")?,
            meta: try_copy(&weight.meta, "weight metadata")?,
        },
        bias: bias.map(|b| try_copy(b, "bias")).transpose()?,
        epilogue,
    }))
}

impl<T: Element> CpuLayer for Typed<T> {
    unsafe fn forward_raw(&self, x: *const c_void, y: *mut c_void, m: usize) -> Result<()> {
        let (k, n) = (self.weight.k, self.weight.n);
        // SAFETY: forwarded from this function's contract (the caller checked m·k and m·n
        // against its buffers, and T is the layer's dtype by construction).
        let (xs, ys) = unsafe { launch::host_slices::<T>(x, m * k, y, m * n) };
        sparseflow_core::sparse_gemm_into(
            xs,
            m,
            &self.weight,
            self.bias.as_deref(),
            self.epilogue,
            ys,
        )?;
        Ok(())
    }
}
