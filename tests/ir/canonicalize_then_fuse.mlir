// canonicalize first exposes a fusable chain (the x*1 in the middle is folded).
// RUN: sparseflow opt %s --pass-pipeline=canonicalize,fuse-epilogue,canonicalize
// CHECK: %0 = sparseflow.fused_sparse_gemm %x, %w {epilogue = "silu"}
// CHECK-NEXT: return %0
// CHECK-NOT: arith.
func.func @f(%x: tensor<?x64xf16>, %w: !sparseflow.sparse24<32x64xf16>, %b: tensor<32xf16>) -> tensor<?x32xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>) -> tensor<?x32xf16>
  %1 = arith.constant {value = 1.0} : tensor<?x32xf16>
  %2 = arith.mulf %0, %1 : tensor<?x32xf16>
  %3 = arith.silu %2 : tensor<?x32xf16>
  return %3 : tensor<?x32xf16>
}
