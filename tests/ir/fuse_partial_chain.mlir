// bias + relu fuses; the mulf after it is not an epilogue and stays.
// RUN: sparseflow opt %s --pass-pipeline=fuse-epilogue
// CHECK: %0 = sparseflow.fused_sparse_gemm %x, %w, %b {epilogue = "bias_relu"}
// CHECK-NOT: arith.relu
// CHECK-NEXT: %1 = arith.mulf %0, %s
func.func @f(%x: tensor<?x64xf16>, %w: !sparseflow.sparse24<32x64xf16>, %b: tensor<32xf16>, %s: tensor<?x32xf16>) -> tensor<?x32xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>) -> tensor<?x32xf16>
  %1 = arith.addf %0, %b : (tensor<?x32xf16>, tensor<32xf16>) -> tensor<?x32xf16>
  %2 = arith.relu %1 : tensor<?x32xf16>
  %3 = arith.mulf %2, %s : tensor<?x32xf16>
  return %3 : tensor<?x32xf16>
}
