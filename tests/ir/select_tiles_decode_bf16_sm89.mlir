// M = 16 in bf16 on Ada: decode with tile_m = 16 (tokens on the MMA n side).
// RUN: sparseflow opt %s --pass-pipeline=fuse-epilogue,select-tiles --target=sm_89
// CHECK: {epilogue = "bias_silu", family = "decode", tile_m = 16,
func.func @mlp_up(%x: tensor<16x4096xbf16>, %w: !sparseflow.sparse24<14336x4096xbf16>,
                  %b: tensor<14336xbf16>) -> tensor<16x14336xbf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<16x4096xbf16>, !sparseflow.sparse24<14336x4096xbf16>) -> tensor<16x14336xbf16>
  %1 = arith.addf %0, %b : (tensor<16x14336xbf16>, tensor<14336xbf16>) -> tensor<16x14336xbf16>
  %2 = arith.silu %1 : tensor<16x14336xbf16>
  return %2 : tensor<16x14336xbf16>
}
