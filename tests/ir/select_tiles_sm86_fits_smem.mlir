// sm_86 has 99 KiB per block: every chosen tile must fit (the verifier re-checks).
// RUN: sparseflow opt %s --pass-pipeline=fuse-epilogue,select-tiles --target=sm_86
// CHECK: family = "sm80", tile_m = 128, tile_n = 128, tile_k = 64, warps = 8, stages = 3, split_k = 1}
// CHECK-NOT: stages = 4
func.func @mlp_up(%x: tensor<2048x4096xf16>, %w: !sparseflow.sparse24<14336x4096xf16>,
                  %b: tensor<14336xf16>) -> tensor<2048x14336xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<2048x4096xf16>, !sparseflow.sparse24<14336x4096xf16>) -> tensor<2048x14336xf16>
  %1 = arith.addf %0, %b : (tensor<2048x14336xf16>, tensor<14336xf16>) -> tensor<2048x14336xf16>
  %2 = arith.silu %1 : tensor<2048x14336xf16>
  return %2 : tensor<2048x14336xf16>
}
