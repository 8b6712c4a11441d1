// RUN: sparseflow opt %s
func.func @f(%x: tensor<?x64xf16>, %w: !sparseflow.sparse24<32x64xf16>, %b: tensor<32xf16>) -> tensor<?x32xf16> {
  // expected-error@+1 {{tile_n = 96 is not supported by family 'sm80' (allowed: [64, 128])}}
  %0 = sparseflow.fused_sparse_gemm %x, %w {epilogue = "none", family = "sm80", tile_m = 128, tile_n = 96, tile_k = 64, warps = 8, stages = 4, split_k = 1} : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>) -> tensor<?x32xf16>
  return %0 : tensor<?x32xf16>
}
