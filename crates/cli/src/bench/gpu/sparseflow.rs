//! The SparseFlow contender: `sparseflow_runtime::SparseGemm::forward_raw` on the benchmark
//! stream, one `SparseGemm` (one uploaded weight) per rotated copy.

use std::ffi::c_void;

use anyhow::{anyhow, Result};
use sparseflow_core::{EpilogueKind, Sparse24};
use sparseflow_runtime::{Context, Device, SparseGemm};

use super::{Gemm, GpuElement};

/// Opens the runtime on device 0 (the primary context, shared with the benchmark's own).
pub fn open() -> Result<Context> {
    Context::new(Device::Cuda(0)).map_err(|e| anyhow!("SparseFlow runtime: {e}"))
}

/// Uploads `copies` copies of the weight.
pub fn upload<T: GpuElement>(
    ctx: &Context,
    w: &Sparse24<T>,
    bias: Option<&[T]>,
    epilogue: EpilogueKind,
    copies: usize,
) -> Result<Vec<SparseGemm>> {
    (0..copies.max(1))
        .map(|_| {
            SparseGemm::new(ctx, w, bias, epilogue).map_err(|e| anyhow!("SparseGemm::new: {e}"))
        })
        .collect()
}

/// Compiles, loads and uploads what `m` needs on every copy; returns the plan as one line.
pub fn prepare(gemms: &[SparseGemm], m: usize) -> Result<String> {
    for g in gemms {
        g.prepare(m).map_err(|e| anyhow!("prepare(m={m}): {e}"))?;
    }
    Ok(match gemms[0].plan(m) {
        Ok(p) => format!("{} {}", p.config.family, p.config.describe_tiles()),
        Err(e) => format!("plan: {e}"),
    })
}

pub struct SfGemm<'a> {
    pub gemms: &'a [SparseGemm],
    pub x: u64,
    pub y: u64,
    pub m: usize,
    pub stream: *mut c_void,
}

impl Gemm for SfGemm<'_> {
    fn copies(&self) -> usize {
        self.gemms.len()
    }
    fn launch(&mut self, copy: usize) -> Result<()> {
        // SAFETY: x holds m·k and y m·n elements of the layer's dtype (allocated by the
        // sweep from the same shape), they do not overlap, and both and the stream outlive
        // the launch (the sweep synchronises before freeing).
        unsafe {
            self.gemms[copy]
                .forward_raw(
                    self.x as *const c_void,
                    self.y as *mut c_void,
                    self.m,
                    Some(self.stream),
                )
                .map_err(|e| anyhow!("SparseFlow forward: {e}"))
        }
    }
}
