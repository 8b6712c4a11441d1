// 4 stages of 128x128x64 need 100 KiB of shared memory: legal on H100, not on sm_86.
// RUN: sparseflow opt %s --target=sm_86
func.func @f(%x: tensor<?x64xf16>, %w: !sparseflow.sparse24<32x64xf16>, %b: tensor<32xf16>) -> tensor<?x32xf16> {
  // expected-error@+1 {{illegal tile configuration: needs 102400 bytes of shared memory per block, sm_86 allows 101376}}
  %0 = sparseflow.fused_sparse_gemm %x, %w {epilogue = "none", family = "sm80", tile_m = 128, tile_n = 128, tile_k = 64, warps = 8, stages = 4, split_k = 1} : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>) -> tensor<?x32xf16>
  return %0 : tensor<?x32xf16>
}
