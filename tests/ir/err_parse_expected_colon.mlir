// A missing ':' before the type is reported at line:col with what was found.
// RUN: sparseflow opt %s
func.func @f(%x: tensor<?x64xf16>, %w: !sparseflow.sparse24<32x64xf16>, %b: tensor<32xf16>) -> tensor<?x32xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>) -> tensor<?x32xf16>
  %1 = arith.relu %0 tensor<?x32xf16> // expected-error {{expected ':' after operands, found 'tensor'}}
  return %1 : tensor<?x32xf16>
}
