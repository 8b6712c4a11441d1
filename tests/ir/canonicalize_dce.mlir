// Unused ops disappear; the return keeps what it needs.
// RUN: sparseflow opt %s --pass-pipeline=canonicalize
// CHECK: %0 = sparseflow.sparse_gemm %x, %w
// CHECK-NEXT: return %0
// CHECK-NOT: arith.
func.func @f(%x: tensor<?x64xf16>, %w: !sparseflow.sparse24<32x64xf16>, %b: tensor<32xf16>) -> tensor<?x32xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>) -> tensor<?x32xf16>
  %1 = arith.silu %0 : tensor<?x32xf16>
  %2 = arith.gelu %1 : tensor<?x32xf16>
  return %0 : tensor<?x32xf16>
}
