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
