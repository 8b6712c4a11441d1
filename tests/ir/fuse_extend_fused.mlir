// An already-fused op grows when the table continues its sequence (bias + gelu).
// RUN: sparseflow opt %s --pass-pipeline=fuse-epilogue
// CHECK: %0 = sparseflow.fused_sparse_gemm %x, %w, %b {epilogue = "bias_gelu"}
// CHECK-NEXT: return %0
// CHECK-NOT: arith.gelu
func.func @f(%x: tensor<?x64xf16>, %w: !sparseflow.sparse24<32x64xf16>, %b: tensor<32xf16>) -> tensor<?x32xf16> {
  %0 = sparseflow.fused_sparse_gemm %x, %w, %b {epilogue = "bias"} : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>, tensor<32xf16>) -> tensor<?x32xf16>
  %1 = arith.gelu %0 : tensor<?x32xf16>
  return %1 : tensor<?x32xf16>
}
