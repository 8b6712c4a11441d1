// Large M (prefill) before Hopper: the sm80 family with the big 128x128 tile.
// RUN: sparseflow opt %s --pass-pipeline=fuse-epilogue,select-tiles --target=sm_80
// CHECK: {epilogue = "bias_silu", family = "sm80", tile_m = 128, tile_n = 128, tile_k = 64,
func.func @mlp_up(%x: tensor<4096x4096xf16>, %w: !sparseflow.sparse24<14336x4096xf16>,
                  %b: tensor<14336xf16>) -> tensor<4096x14336xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<4096x4096xf16>, !sparseflow.sparse24<14336x4096xf16>) -> tensor<4096x14336xf16>
  %1 = arith.addf %0, %b : (tensor<4096x14336xf16>, tensor<14336xf16>) -> tensor<4096x14336xf16>
  %2 = arith.silu %1 : tensor<4096x14336xf16>
  return %2 : tensor<4096x14336xf16>
}
