// The example of docs/IR.md "Syntax": bias + silu is the longest table match (beats bias alone).
// RUN: sparseflow opt %s --pass-pipeline=fuse-epilogue
// CHECK: %0 = sparseflow.fused_sparse_gemm %x, %w, %b {epilogue = "bias_silu"} : (tensor<?x4096xf16>, !sparseflow.sparse24<14336x4096xf16>, tensor<14336xf16>) -> tensor<?x14336xf16>
// CHECK-NOT: arith.
// CHECK-NEXT: return %0 : tensor<?x14336xf16>
func.func @mlp_up(%x: tensor<?x4096xf16>, %w: !sparseflow.sparse24<14336x4096xf16>,
                  %b: tensor<14336xf16>) -> tensor<?x14336xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<?x4096xf16>, !sparseflow.sparse24<14336x4096xf16>) -> tensor<?x14336xf16>
  %1 = arith.addf %0, %b : (tensor<?x14336xf16>, tensor<14336xf16>) -> tensor<?x14336xf16>
  %2 = arith.silu %1 : tensor<?x14336xf16>
  return %2 : tensor<?x14336xf16>
}
