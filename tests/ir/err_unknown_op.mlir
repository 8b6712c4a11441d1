// RUN: sparseflow opt %s
func.func @f(%x: tensor<?x64xf16>, %w: !sparseflow.sparse24<32x64xf16>, %b: tensor<32xf16>) -> tensor<?x32xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>) -> tensor<?x32xf16>
  // expected-error@+1 {{unknown op 'arith.tanh'; known ops:}}
  %1 = arith.tanh %0 : tensor<?x32xf16>
  return %1 : tensor<?x32xf16>
}
