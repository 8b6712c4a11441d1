//! Family `sm80` (`kernels/sm80_sparse_gemm.cu`): `mma.sp m16n8k32` + `ldmatrix` + a
//! `cp.async` multi-stage pipeline; any M; sm_80 and newer. Its time is the tiled model of
//! `sparseflow_ir::cost_model`.

use sparseflow_core::DType;
use sparseflow_ir::cost_model::{estimate_tiled, REG_OVERHEAD};
use sparseflow_ir::{
    ConfigSpace, FamilyModel, GemmShape, KernelConfig, Resources, Target, TileChoice,
};

use super::blocks;
use crate::family::{Family, Source};

/// The family value registered in [`Registry::builtin`](crate::Registry::builtin).
pub const SM80: Sm80 = Sm80;

#[derive(Debug, Clone, Copy)]
pub struct Sm80;

const SPACE: ConfigSpace = ConfigSpace {
    tile_m: &[32, 64, 128],
    tile_n: &[64, 128],
    tile_k: &[64],
    warps: &[4, 8],
    stages: &[2, 3, 4],
    split_k: &[1],
};

/// The template measured at about half the rate the tiled model predicts on the H100
/// (kernels/README.md, 2026-11-25: ~350 TFLOP/s, 34–116 µs at M=64 where the model said
/// 17–37). Scaling its estimates keeps the within-family order and makes the decode-vs-sm80
/// choice for 16 < M <= 64 follow the measurements.
const MEASURED_SLOWDOWN: f64 = 2.0;

impl FamilyModel for Sm80 {
    fn name(&self) -> &'static str {
        "sm80"
    }

    fn summary(&self) -> &'static str {
        "mma.sp m16n8k32 + ldmatrix + cp.async multi-stage; any M; sm_80+"
    }

    fn space(&self) -> &ConfigSpace {
        &SPACE
    }

    fn check(&self, cfg: &KernelConfig, _shape: &GemmShape) -> Result<(), String> {
        // WARPS = 2 (features) x WARPS/2 (tokens); each token warp covers >= one n8 MMA.
        if cfg.tile_m / (cfg.warps / 2) < 8 {
            return Err(format!(
                "tile_m {} over {} token-warps leaves fewer than 8 tokens per warp",
                cfg.tile_m,
                cfg.warps / 2
            ));
        }
        Ok(())
    }

    fn resources(&self, cfg: &KernelConfig, _dtype: DType) -> Resources {
        let threads = cfg.warps * 32;
        Resources {
            threads,
            // Per stage: A values (tile_n/16 blocks × 2 K steps × 512 B), metadata
            // (tile_n/16 × 128 B) and X (tile_m rows × 128 B).
            dynamic_smem: cfg.stages * (cfg.tile_n * 64 + cfg.tile_n * 8 + cfg.tile_m * 128),
            // The fp32 accumulators plus fragments, addresses and loop state.
            regs_per_thread: (cfg.tile_m * cfg.tile_n).div_ceil(threads) + REG_OVERHEAD,
        }
    }

    fn grid(&self, cfg: &KernelConfig, m: u32, n: u32, _k: u32, _t: &Target) -> (u32, u32, u32) {
        (blocks(n, cfg.tile_n), blocks(m, cfg.tile_m), 1)
    }

    fn estimate(
        &self,
        cfg: &KernelConfig,
        shape: &GemmShape,
        m: u64,
        target: &Target,
    ) -> Option<TileChoice> {
        let res = self.resources(cfg, shape.dtype);
        estimate_tiled(cfg, res, shape, m, target, MEASURED_SLOWDOWN)
    }
}

impl Family for Sm80 {
    fn template(&self) -> Source {
        Source {
            file: "sm80_sparse_gemm.cu",
            text: include_str!("../../kernels/sm80_sparse_gemm.cu"),
        }
    }
}
