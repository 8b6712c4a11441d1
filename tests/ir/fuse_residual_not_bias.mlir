// A full-shape addf is a residual add, not a bias: nothing is fused into the GEMM.
// RUN: sparseflow opt %s --pass-pipeline=fuse-epilogue
// CHECK: %0 = sparseflow.fused_sparse_gemm %x, %w {epilogue = "none"}
// CHECK-NEXT: %1 = arith.addf %0, %r : tensor<?x32xf16>
// CHECK-NEXT: %2 = arith.relu %1
func.func @f(%x: tensor<?x64xf16>, %w: !sparseflow.sparse24<32x64xf16>, %r: tensor<?x32xf16>) -> tensor<?x32xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>) -> tensor<?x32xf16>
  %1 = arith.addf %0, %r : tensor<?x32xf16>
  %2 = arith.relu %1 : tensor<?x32xf16>
  return %2 : tensor<?x32xf16>
}
