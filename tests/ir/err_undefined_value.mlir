// RUN: sparseflow opt %s
func.func @f(%x: tensor<?x64xf16>, %w: !sparseflow.sparse24<32x64xf16>, %b: tensor<32xf16>) -> tensor<?x32xf16> {
  // expected-error@+1 {{use of undefined value '%y'}}
  %0 = sparseflow.sparse_gemm %y, %w : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>) -> tensor<?x32xf16>
  return %0 : tensor<?x32xf16>
}
