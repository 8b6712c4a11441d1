// canonicalize puts the broadcast vector of a commutative op second (issue 25).
// RUN: sparseflow opt %s --pass-pipeline=canonicalize | sparseflow opt -
// CHECK-LABEL: func.func @f(
// CHECK-NEXT: %0 = arith.addf %r, %b : (tensor<?x32xf16>, tensor<32xf16>) -> tensor<?x32xf16>
// CHECK-NEXT: %1 = arith.mulf %0, %b : (tensor<?x32xf16>, tensor<32xf16>) -> tensor<?x32xf16>
// CHECK-NEXT: return %1
func.func @f(%r: tensor<?x32xf16>, %b: tensor<32xf16>) -> tensor<?x32xf16> {
  %0 = arith.addf %b, %r : (tensor<32xf16>, tensor<?x32xf16>) -> tensor<?x32xf16>
  %1 = arith.mulf %b, %0 : (tensor<32xf16>, tensor<?x32xf16>) -> tensor<?x32xf16>
  return %1 : tensor<?x32xf16>
}
