// fuse-epilogue turns gemm + [relu2] into epilogue 'relu2'.
// RUN: sparseflow opt %s --pass-pipeline=fuse-epilogue
// CHECK-LABEL: func.func @f(
// CHECK-NEXT: %0 = sparseflow.fused_sparse_gemm %x, %w {epilogue = "relu2"}
// CHECK-NEXT: return %0 : tensor<?x32xf16>
// CHECK-NOT: arith.
func.func @f(%x: tensor<?x64xf16>, %w: !sparseflow.sparse24<32x64xf16>, %b: tensor<32xf16>) -> tensor<?x32xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>) -> tensor<?x32xf16>
  %1 = arith.relu2 %0 : tensor<?x32xf16>
  return %1 : tensor<?x32xf16>
}
