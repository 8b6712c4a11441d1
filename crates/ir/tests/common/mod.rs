// Shared fixtures for the IR integration tests (included with `mod common;`).
#![allow(dead_code)]

pub const MLP_UP: &str = "func.func @mlp_up(%x: tensor<?x4096xf16>, %w: !sparseflow.sparse24<14336x4096xf16>, %b: tensor<14336xf16>) -> tensor<?x14336xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<?x4096xf16>, !sparseflow.sparse24<14336x4096xf16>) -> tensor<?x14336xf16>
  %1 = arith.addf %0, %b : (tensor<?x14336xf16>, tensor<14336xf16>) -> tensor<?x14336xf16>
  %2 = arith.silu %1 : tensor<?x14336xf16>
  return %2 : tensor<?x14336xf16>
}
";

pub const DECODE: &str = "func.func @decode(%x: tensor<1x4096xbf16>, %w: !sparseflow.sparse24<4096x4096xbf16>) -> tensor<1x4096xbf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<1x4096xbf16>, !sparseflow.sparse24<4096x4096xbf16>) -> tensor<1x4096xbf16>
  %1 = arith.relu %0 : tensor<1x4096xbf16>
  return %1 : tensor<1x4096xbf16>
}
";

/// Wraps a body in a function over the usual M=?, K=64, N=32 f16 operands.
pub fn small(body: &str) -> String {
    format!(
        "func.func @f(%x: tensor<?x64xf16>, %w: !sparseflow.sparse24<32x64xf16>, %b: tensor<32xf16>, %r: tensor<?x32xf16>) -> tensor<?x32xf16> {{\n{body}}}\n"
    )
}

pub const G: &str = "  %0 = sparseflow.sparse_gemm %x, %w : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>) -> tensor<?x32xf16>\n";
pub const T: &str = "tensor<?x32xf16>";

use sparseflow_core::DType;
use sparseflow_ir::cost_model::estimate_tiled;
use sparseflow_ir::{
    ConfigSpace, FamilyModel, GemmShape, KernelConfig, Resources, Target, TileChoice,
};

/// A stand-in kernel family for the IR's own tests (the real ones are `sparseflow_codegen`'s):
/// any M, sm80-like tiles and shared memory, the tiled cost model.
#[derive(Debug)]
pub struct Tiled;

pub static FAMILIES: &[&dyn FamilyModel] = &[&Tiled];

const SPACE: ConfigSpace = ConfigSpace {
    tile_m: &[32, 64, 128],
    tile_n: &[64, 128],
    tile_k: &[64],
    warps: &[4, 8],
    stages: &[2, 3, 4],
    split_k: &[1],
};

impl FamilyModel for Tiled {
    fn name(&self) -> &'static str {
        "tiled"
    }
    fn summary(&self) -> &'static str {
        "test family"
    }
    fn space(&self) -> &ConfigSpace {
        &SPACE
    }
    fn resources(&self, c: &KernelConfig, _dtype: DType) -> Resources {
        Resources {
            threads: c.warps * 32,
            dynamic_smem: c.stages * (c.tile_n * 72 + c.tile_m * 128),
            regs_per_thread: c.tile_m * c.tile_n / (c.warps * 32) + 48,
        }
    }
    fn grid(&self, c: &KernelConfig, m: u32, n: u32, _k: u32, _t: &Target) -> (u32, u32, u32) {
        (n.div_ceil(c.tile_n), m.div_ceil(c.tile_m), 1)
    }
    fn estimate(
        &self,
        c: &KernelConfig,
        shape: &GemmShape,
        m: u64,
        t: &Target,
    ) -> Option<TileChoice> {
        estimate_tiled(c, self.resources(c, shape.dtype), shape, m, t, 1.0)
    }
}
