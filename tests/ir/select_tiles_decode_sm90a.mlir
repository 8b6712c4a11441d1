// M = 1 (token generation): the decode family, split-K so all 132 SMs stream W.
// RUN: sparseflow opt %s --pass-pipeline=fuse-epilogue,select-tiles --target=sm_90a
// CHECK: %0 = sparseflow.fused_sparse_gemm %x, %w, %b {epilogue = "bias_silu", family = "decode", tile_m = 8, tile_n =
// CHECK-NOT: family = "sm80"
func.func @mlp_up(%x: tensor<1x4096xf16>, %w: !sparseflow.sparse24<14336x4096xf16>,
                  %b: tensor<14336xf16>) -> tensor<1x14336xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<1x4096xf16>, !sparseflow.sparse24<14336x4096xf16>) -> tensor<1x14336xf16>
  %1 = arith.addf %0, %b : (tensor<1x14336xf16>, tensor<14336xf16>) -> tensor<1x14336xf16>
  %2 = arith.silu %1 : tensor<1x14336xf16>
  return %2 : tensor<1x14336xf16>
}
