//! The device weight of a GPU `SparseGemm`: owned (uploaded by the runtime from a host
//! `Sparse24`) or borrowed (caller-owned device buffers, adopted without a copy).
//!
//! Every kernel family reads one device layout, the *fragment layout* of
//! `sparseflow_codegen::layout` (docs/FORMAT.md, "The device layout"): values per 16-row block
//! × 32-wide K step as 32 lanes × 16 bytes (the `mma.sp.m16n8k32` A registers, which are also
//! the per-warp A fragment of the Hopper `wgmma.mma_async.sp` with A from registers), metadata
//! per 16-row block × 64-wide K pair as 32 lanes × u32; N padded to 128, K to 64. So a weight
//! exists once on the device, whichever family a given M runs, and a caller that already holds
//! the weight in that layout (PyTorch's `SparseLinear`, a C program) lends its buffers instead
//! of having the runtime upload a second copy.

use std::ffi::c_void;

use sparseflow_codegen::{padded_dims, WeightLayout};
use sparseflow_core::{CoreError, DType, EpilogueKind};

use crate::context::{Context, Device};
use crate::device_weights::{DeviceBytes, DeviceWeights};
use crate::error::{Result, RuntimeError};
use crate::gemm::SparseGemm;
use crate::gpu_layer::{check_device_ptr, GpuLayer};

/// Bytes of a `[n, k]` fp16/bf16 weight in the fragment layout: `(values, meta)`. N is padded
/// to 128 and K to 64, so Llama-style shapes take exactly the canonical `[N, K/2]` +
/// `[N, K/8]` bytes.
pub fn fragment_layout_bytes(n: usize, k: usize) -> Result<(usize, usize)> {
    let (np, kp) = padded_dims(n, k);
    // Values: np · kp/2 elements of 2 bytes; metadata: one u32 per lane per (16 rows × 64 K).
    let values = np.checked_mul(kp).ok_or_else(|| overflow(n, k))?;
    Ok((values, values / 8))
}

fn overflow(n: usize, k: usize) -> RuntimeError {
    RuntimeError::Shape(format!(
        "weight [{n}, {k}] overflows the device layout's size"
    ))
}

/// A caller-owned device weight in the fragment layout, for [`SparseGemm::from_device_layout`].
#[derive(Debug, Clone, Copy)]
pub struct BorrowedWeight {
    /// Device address of the values, [`fragment_layout_bytes`]`.0` bytes, 16-byte aligned.
    pub values: *const c_void,
    /// Device address of the metadata, [`fragment_layout_bytes`]`.1` bytes, 16-byte aligned.
    pub meta: *const c_void,
    /// Device address of the bias (`n` elements of the dtype), or `None`. Read at every launch,
    /// never copied, so writes to it are seen by the next launch.
    pub bias: Option<*const c_void>,
}

impl SparseGemm {
    /// Binds a weight that already lives on `ctx`'s GPU in the fragment layout, without
    /// copying it: every launch reads `w.values`, `w.meta` and `w.bias` where they are.
    /// Checks the context (GPU), dtype (f16/bf16), shape, the bias against the epilogue, and
    /// that each pointer is 16-byte aligned memory of this device; the metadata codes are not
    /// checked (they are on the device; lay them out from a checked `Sparse24`, e.g. with
    /// `sparseflow_codegen::upload_layout`).
    ///
    /// # Safety
    /// `w.values` / `w.meta` must hold [`fragment_layout_bytes`]`(n, k)` bytes of a valid
    /// 2:4 weight in the fragment layout and `w.bias` `n` elements of `dtype`; all three must
    /// stay allocated until this `SparseGemm` is dropped and work queued with it has completed.
    /// Writes to them are seen by launches queued after the write (stream order).
    pub unsafe fn from_device_layout(
        ctx: &Context,
        dtype: DType,
        n: usize,
        k: usize,
        w: BorrowedWeight,
        epilogue: EpilogueKind,
    ) -> Result<Self> {
        let ordinal = match ctx.device() {
            Device::Cuda(i) => i,
            Device::Cpu => return Err(RuntimeError::NeedsGpu("from_device_layout")),
        };
        if dtype == DType::F32 {
            return Err(RuntimeError::UnsupportedDType {
                dtype,
                backend: "the GPU (sparse tensor cores)",
                hint: "the fragment layout holds f16 or bf16 values",
            });
        }
        if n == 0 || k == 0 {
            return Err(CoreError::ZeroDim {
                what: "weight [N, K]",
            }
            .into());
        }
        if !k.is_multiple_of(4) {
            return Err(CoreError::KNotMultipleOf4 { k }.into());
        }
        if n > i32::MAX as usize || k > i32::MAX as usize {
            return Err(RuntimeError::Shape(format!(
                "N = {n} / K = {k} exceed the kernels' 32-bit dimensions"
            )));
        }
        let (values_bytes, meta_bytes) = fragment_layout_bytes(n, k)?;
        // A device bias holds `n` elements by the caller's contract (see # Safety).
        epilogue.check_bias(w.bias.map(|_| n), n)?;
        for (what, p) in [("weight values", w.values), ("weight metadata", w.meta)] {
            if p.is_null() {
                return Err(RuntimeError::NullPointer(what));
            }
            check_device_ptr(what, p, ordinal)?;
        }
        if let Some(b) = w.bias {
            if b.is_null() {
                return Err(RuntimeError::NullPointer("bias"));
            }
            check_device_ptr("bias", b, ordinal)?;
        }
        let weights = DeviceWeights {
            values: DeviceBytes::Borrowed {
                ptr: w.values as usize as u64,
                bytes: values_bytes,
            },
            meta: DeviceBytes::Borrowed {
                ptr: w.meta as usize as u64,
                bytes: meta_bytes,
            },
        };
        let bias = w.bias.map(|b| DeviceBytes::Borrowed {
            ptr: b as usize as u64,
            bytes: n * dtype.size_bytes(),
        });
        let desc = crate::plan::LayerDesc {
            n,
            k,
            dtype,
            epilogue,
        };
        let layer = GpuLayer::adopt(desc, weights, bias);
        Ok(SparseGemm::with_gpu_layer(
            ctx, n, k, dtype, epilogue, layer,
        ))
    }
}

/// The fragment layout of a host weight, as the bytes the device buffers hold: `(values,
/// meta)` of [`fragment_layout_bytes`]`(w.n, w.k)` bytes. For callers that lay a weight out
/// themselves before lending it ([`SparseGemm::from_device_layout`]); every family reads it.
pub fn to_fragment_layout<T: sparseflow_core::Element>(
    w: &sparseflow_core::Sparse24<T>,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let up = sparseflow_codegen::upload_layout(WeightLayout::Fragment, w)?;
    Ok((up.values, up.meta))
}

/// The inverse of [`to_fragment_layout`]: the canonical `Sparse24` `[n, k]` of a weight's
/// fragment-layout bytes (reading one back from the device, or checking a layout).
pub fn from_fragment_layout<T: sparseflow_core::Element>(
    values: Vec<u8>,
    meta: Vec<u8>,
    n: usize,
    k: usize,
) -> Result<sparseflow_core::Sparse24<T>> {
    let (_, k_padded) = padded_dims(n, k);
    let up = sparseflow_codegen::UploadLayout {
        values,
        meta,
        k_padded,
    };
    Ok(sparseflow_codegen::from_upload_layout(
        WeightLayout::Fragment,
        &up,
        n,
        k,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparseflow_core::{prune_magnitude, Sparse24};

    #[test]
    fn fragment_bytes_equal_canonical_bytes_for_aligned_shapes() {
        assert_eq!(
            fragment_layout_bytes(4096, 14336).unwrap(),
            (4096 * 14336, 4096 * 14336 / 8)
        );
        // Padded: N to 128, K to 64.
        assert_eq!(
            fragment_layout_bytes(8, 16).unwrap(),
            (128 * 64, 128 * 64 / 8)
        );
    }

    #[test]
    fn fragment_layout_round_trips() {
        let (n, k) = (136, 72);
        let dense: Vec<half::f16> = (0..n * k)
            .map(|i| half::f16::from_f32(((i * 7919) % 61) as f32 - 30.0))
            .collect();
        let w = Sparse24::compress(&prune_magnitude(&dense, n, k).unwrap(), n, k).unwrap();
        let (v, m) = to_fragment_layout(&w).unwrap();
        assert_eq!((v.len(), m.len()), fragment_layout_bytes(n, k).unwrap());
        assert_eq!(from_fragment_layout::<half::f16>(v, m, n, k).unwrap(), w);
    }

    #[test]
    fn adopting_needs_a_gpu_context() {
        let w = BorrowedWeight {
            values: std::ptr::null(),
            meta: std::ptr::null(),
            bias: None,
        };
        // SAFETY: refused before any pointer is used (CPU context).
        let e = unsafe {
            SparseGemm::from_device_layout(
                &Context::cpu(),
                DType::F16,
                8,
                16,
                w,
                EpilogueKind::None,
            )
        }
        .unwrap_err();
        assert!(matches!(e, RuntimeError::NeedsGpu(_)), "{e}");
    }
}
