//! Family `decode` (`kernels/decode_sparse_gemm.cu`): weight streaming for small M (tokens on
//! the MMA's n8 side) with split-K, each output tile's last split reducing its peers' fp32
//! partials from the workspace (kernels/README.md, "decode family"). M above `tile_m` runs
//! `ceil(M / tile_m)` token tiles (grid.z), each streaming the weight again (from L2 while it
//! fits), so past 16 tokens it competes with `sm80` by estimate. Its time is the streaming
//! model of `sparseflow_ir::decode_cost`, calibrated on this template.

use sparseflow_core::DType;
use sparseflow_ir::decode_cost::{estimate_streaming, streaming_regs};
use sparseflow_ir::{
    ConfigSpace, Eligibility, FamilyModel, GemmShape, KernelConfig, Resources, Target, TileChoice,
};

use super::{blocks, split_k_workspace_bytes};
use crate::family::{Family, Source};

/// The family value registered in [`Registry::builtin`](crate::Registry::builtin).
pub const DECODE: Decode = Decode;

#[derive(Debug, Clone, Copy)]
pub struct Decode;

/// Largest M (tokens) the family serves.
pub const MAX_M: u64 = 64;

/// Token counts up to which `decode` is the only family considered (one token tile).
pub const ONLY_FAMILY_UP_TO_M: u64 = 16;

const SPACE: ConfigSpace = ConfigSpace {
    tile_m: &[8, 16],
    // Every warp covers all tile_n rows (A fragments live in registers).
    tile_n: &[16, 32, 64],
    // K per CTA step = 4 warps x one 64-wide K pair.
    tile_k: &[256],
    warps: &[4],
    // K pairs each warp keeps in flight (weights in registers, X in shared memory). 4 measured
    // 1-2% faster only where a warp has <= 4 K pairs at M <= 8 and slower elsewhere, spills at
    // 8x16 split 1 and overflows 48 KB of static shared memory at 16x64.
    stages: &[2, 3],
    split_k: &[1, 2, 4, 8, 16, 32],
};

impl FamilyModel for Decode {
    fn name(&self) -> &'static str {
        "decode"
    }

    fn summary(&self) -> &'static str {
        "weight-streaming split-K for M <= 64 (tokens on the MMA n8 side)"
    }

    fn space(&self) -> &ConfigSpace {
        &SPACE
    }

    fn max_m(&self) -> Option<u64> {
        Some(MAX_M)
    }

    fn eligibility(&self, m: u64, _shape: &GemmShape, _target: &Target) -> Eligibility {
        if m <= ONLY_FAMILY_UP_TO_M {
            Eligibility::Preferred
        } else {
            Eligibility::Candidate
        }
    }

    fn check(&self, cfg: &KernelConfig, shape: &GemmShape) -> Result<(), String> {
        // One token tile holds all of M while M fits the largest tile_m; beyond that, the
        // largest tile_m (fewest weight re-streams).
        let largest = SPACE.tile_m.iter().copied().max().unwrap_or(0) as u64;
        match shape.m {
            Some(m) if (cfg.tile_m as u64) < m.min(largest) => {
                Err(format!("tile_m = {} is smaller than M = {m}", cfg.tile_m))
            }
            _ => Ok(()),
        }
    }

    fn resources(&self, cfg: &KernelConfig, _dtype: DType) -> Resources {
        Resources {
            threads: cfg.warps * 32,
            // Static shared memory only (the X ring and the reduction, sized by the template).
            dynamic_smem: 0,
            regs_per_thread: streaming_regs(cfg),
        }
    }

    fn grid(&self, cfg: &KernelConfig, m: u32, n: u32, _k: u32, _t: &Target) -> (u32, u32, u32) {
        (blocks(n, cfg.tile_n), cfg.split_k, blocks(m, cfg.tile_m))
    }

    /// fp32 split-K hand-off slots: split_k - 1 partial tiles of tile_m × tile_n per output
    /// tile (the reducer keeps its own in registers).
    fn workspace_bytes(
        &self,
        cfg: &KernelConfig,
        m: u32,
        n: u32,
        _k: u32,
        _target: &Target,
    ) -> usize {
        split_k_workspace_bytes(cfg, m, n)
    }

    fn estimate(
        &self,
        cfg: &KernelConfig,
        shape: &GemmShape,
        m: u64,
        target: &Target,
    ) -> Option<TileChoice> {
        let regs = self.resources(cfg, shape.dtype).regs_per_thread;
        Some(estimate_streaming(cfg, regs, shape, m, target))
    }
}

impl Family for Decode {
    fn template(&self) -> Source {
        Source {
            file: "decode_sparse_gemm.cu",
            text: include_str!("../../kernels/decode_sparse_gemm.cu"),
        }
    }
}
