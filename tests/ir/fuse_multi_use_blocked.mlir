// %1 has two uses, so relu cannot be fused through it; the bias still fuses.
// RUN: sparseflow opt %s --pass-pipeline=fuse-epilogue
// CHECK: %0 = sparseflow.fused_sparse_gemm %x, %w, %b {epilogue = "bias"}
// CHECK-NEXT: %1 = arith.relu %0
// CHECK-NEXT: %2 = arith.addf %0, %1
// CHECK-NEXT: return %2
func.func @f(%x: tensor<?x64xf16>, %w: !sparseflow.sparse24<32x64xf16>, %b: tensor<32xf16>) -> tensor<?x32xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>) -> tensor<?x32xf16>
  %1 = arith.addf %0, %b : (tensor<?x32xf16>, tensor<32xf16>) -> tensor<?x32xf16>
  %2 = arith.relu %1 : tensor<?x32xf16>
  %3 = arith.addf %1, %2 : tensor<?x32xf16>
  return %3 : tensor<?x32xf16>
}
