// fuse-epilogue turns gemm + [bias, relu2] into epilogue 'bias_relu2'.
// RUN: sparseflow opt %s --pass-pipeline=fuse-epilogue
// CHECK-LABEL: func.func @f(
// CHECK-NEXT: %0 = sparseflow.fused_sparse_gemm %x, %w, %b {epilogue = "bias_relu2"}
// CHECK-NEXT: return %0 : tensor<?x32xf16>
// CHECK-NOT: arith.
func.func @f(%x: tensor<?x64xf16>, %w: !sparseflow.sparse24<32x64xf16>, %b: tensor<32xf16>) -> tensor<?x32xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>) -> tensor<?x32xf16>
  %1 = arith.addf %0, %b : (tensor<?x32xf16>, tensor<32xf16>) -> tensor<?x32xf16>
  %2 = arith.relu2 %1 : tensor<?x32xf16>
  return %2 : tensor<?x32xf16>
}
