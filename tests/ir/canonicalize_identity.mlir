// x * 1, x + 0 and relu(relu(x)) fold away.
// RUN: sparseflow opt %s --pass-pipeline=canonicalize
// CHECK: %0 = sparseflow.sparse_gemm %x, %w
// CHECK-NEXT: %1 = arith.relu %0 : tensor<?x32xf16>
// CHECK-NEXT: return %1
// CHECK-NOT: arith.
func.func @f(%x: tensor<?x64xf16>, %w: !sparseflow.sparse24<32x64xf16>, %b: tensor<32xf16>) -> tensor<?x32xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>) -> tensor<?x32xf16>
  %1 = arith.constant {value = 1.0} : tensor<32xf16>
  %2 = arith.mulf %0, %1 : (tensor<?x32xf16>, tensor<32xf16>) -> tensor<?x32xf16>
  %3 = arith.constant {value = 0.0} : tensor<32xf16>
  %4 = arith.addf %2, %3 : (tensor<?x32xf16>, tensor<32xf16>) -> tensor<?x32xf16>
  %5 = arith.relu %4 : tensor<?x32xf16>
  %6 = arith.relu %5 : tensor<?x32xf16>
  return %6 : tensor<?x32xf16>
}
