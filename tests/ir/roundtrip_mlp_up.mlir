// Parse + verify + print only: canonical form of the example of docs/IR.md "Syntax".
// RUN: sparseflow opt %s
// CHECK: func.func @mlp_up(%x: tensor<?x4096xf16>, %w: !sparseflow.sparse24<14336x4096xf16>, %b: tensor<14336xf16>) -> tensor<?x14336xf16> {
// CHECK-NEXT: %0 = sparseflow.sparse_gemm %x, %w : (tensor<?x4096xf16>, !sparseflow.sparse24<14336x4096xf16>) -> tensor<?x14336xf16>
// CHECK-NEXT: %1 = arith.addf %0, %b : (tensor<?x14336xf16>, tensor<14336xf16>) -> tensor<?x14336xf16>
// CHECK-NEXT: %2 = arith.silu %1 : tensor<?x14336xf16>
// CHECK-NEXT: return %2 : tensor<?x14336xf16>
// CHECK-NEXT: }
func.func @mlp_up(%x: tensor<?x4096xf16>, %w: !sparseflow.sparse24<14336x4096xf16>,
                  %b: tensor<14336xf16>) -> tensor<?x14336xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<?x4096xf16>, !sparseflow.sparse24<14336x4096xf16>) -> tensor<?x14336xf16>
  %1 = arith.addf %0, %b : (tensor<?x14336xf16>, tensor<14336xf16>) -> tensor<?x14336xf16>
  %2 = arith.silu %1 : tensor<?x14336xf16>
  return %2 : tensor<?x14336xf16>
}
