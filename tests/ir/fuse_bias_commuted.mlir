// `arith.addf %b, %0` (bias first) is the same sum as `arith.addf %0, %b` (addf commutes
// exactly): the verifier accepts it and fuse-epilogue fuses it (issue 25).
// RUN: sparseflow opt %s --pass-pipeline=fuse-epilogue
// CHECK-LABEL: func.func @bias_first(
// CHECK-NEXT: %0 = sparseflow.fused_sparse_gemm %x, %w, %b {epilogue = "bias"}
// CHECK-NEXT: return %0 : tensor<?x32xf16>
// CHECK-LABEL: func.func @bias_first_relu(
// CHECK-NEXT: %0 = sparseflow.fused_sparse_gemm %x, %w, %b {epilogue = "bias_relu"}
// CHECK-NEXT: return %0 : tensor<8x32xbf16>
// CHECK-NOT: arith.
func.func @bias_first(%x: tensor<?x64xf16>, %w: !sparseflow.sparse24<32x64xf16>, %b: tensor<32xf16>) -> tensor<?x32xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>) -> tensor<?x32xf16>
  %1 = arith.addf %b, %0 : (tensor<32xf16>, tensor<?x32xf16>) -> tensor<?x32xf16>
  return %1 : tensor<?x32xf16>
}
func.func @bias_first_relu(%x: tensor<8x64xbf16>, %w: !sparseflow.sparse24<32x64xbf16>, %b: tensor<32xbf16>) -> tensor<8x32xbf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<8x64xbf16>, !sparseflow.sparse24<32x64xbf16>) -> tensor<8x32xbf16>
  %1 = arith.addf %b, %0 : (tensor<32xbf16>, tensor<8x32xbf16>) -> tensor<8x32xbf16>
  %2 = arith.relu %1 : tensor<8x32xbf16>
  return %2 : tensor<8x32xbf16>
}
