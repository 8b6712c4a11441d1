// Tile attributes are only meaningful on the fused op (found by the robustness test:
// fusion used to carry them over unchecked).
// RUN: sparseflow opt %s --pass-pipeline=fuse-epilogue
func.func @f(%x: tensor<?x64xf16>, %w: !sparseflow.sparse24<32x64xf16>) -> tensor<?x32xf16> {
  // expected-error@+1 {{tile attributes (tile_m) belong on sparseflow.fused_sparse_gemm; run fuse-epilogue first}}
  %0 = sparseflow.sparse_gemm %x, %w {tile_m = 64} : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>) -> tensor<?x32xf16>
  return %0 : tensor<?x32xf16>
}
