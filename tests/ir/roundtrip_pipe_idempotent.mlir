// Printed IR parses back to the same text, after every pass.
// RUN: sparseflow opt %s --pass-pipeline=fuse-epilogue,select-tiles --target=sm_80 | sparseflow opt - --target=sm_80 | sparseflow opt - --pass-pipeline=fuse-epilogue,select-tiles,canonicalize --target=sm_80
// CHECK: %0 = sparseflow.fused_sparse_gemm %x, %w, %b {epilogue = "bias_silu", family = "sm80", tile_m = 128, tile_n = 128, tile_k = 64, warps = 8, stages = 4, split_k = 1}
// CHECK-NEXT: return %0
func.func @mlp_up(%x: tensor<?x4096xf16>, %w: !sparseflow.sparse24<14336x4096xf16>,
                  %b: tensor<14336xf16>) -> tensor<?x14336xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<?x4096xf16>, !sparseflow.sparse24<14336x4096xf16>) -> tensor<?x14336xf16>
  %1 = arith.addf %0, %b : (tensor<?x14336xf16>, tensor<14336xf16>) -> tensor<?x14336xf16>
  %2 = arith.silu %1 : tensor<?x14336xf16>
  return %2 : tensor<?x14336xf16>
}
