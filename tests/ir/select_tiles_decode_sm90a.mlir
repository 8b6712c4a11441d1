// M = 1 (token generation): the decode family. 14336 rows in tiles of 16 already give 896 CTAs,
// several per SM on all 132 SMs, so no split-K: split_k = 1 (a K split would only add a hand-off).
// RUN: sparseflow opt %s --pass-pipeline=fuse-epilogue,select-tiles --target=sm_90a
// CHECK: %0 = sparseflow.fused_sparse_gemm %x, %w, %b {epilogue = "bias_silu", family = "decode", tile_m = 8, tile_n = 16, tile_k = 256, warps = 4, stages = 2, split_k = 1}
// CHECK-NOT: family = "sm80"
func.func @mlp_up(%x: tensor<1x4096xf16>, %w: !sparseflow.sparse24<14336x4096xf16>,
                  %b: tensor<14336xf16>) -> tensor<1x14336xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<1x4096xf16>, !sparseflow.sparse24<14336x4096xf16>) -> tensor<1x14336xf16>
  %1 = arith.addf %0, %b : (tensor<1x14336xf16>, tensor<14336xf16>) -> tensor<1x14336xf16>
  %2 = arith.silu %1 : tensor<1x14336xf16>
  return %2 : tensor<1x14336xf16>
}
