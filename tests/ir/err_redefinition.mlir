// RUN: sparseflow opt %s
func.func @f(%x: tensor<?x64xf16>, %w: !sparseflow.sparse24<32x64xf16>, %b: tensor<32xf16>) -> tensor<?x32xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>) -> tensor<?x32xf16>
  %0 = arith.relu %0 : tensor<?x32xf16> // expected-error {{redefinition of SSA value '%0' (first defined at 3:3)}}
  return %0 : tensor<?x32xf16>
}
