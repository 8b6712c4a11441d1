// RUN: sparseflow opt %s
func.func @f(%x: tensor<?x64xf16>, %w: !sparseflow.sparse24<32x64xf16>, %b: tensor<64xf16>) -> tensor<?x32xf16> {
  // expected-error@+1 {{bias must be tensor<32xf16>}}
  %0 = sparseflow.fused_sparse_gemm %x, %w, %b {epilogue = "bias"} : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>, tensor<64xf16>) -> tensor<?x32xf16>
  return %0 : tensor<?x32xf16>
}
