// The kernels index M, N and K with 32-bit ints: the runtime refuses 2^31 and more, so the
// verifier does too, naming the value and the limit (issue 25).
// RUN: sparseflow opt %s
func.func @n(%x: tensor<?x64xf16>, %w: !sparseflow.sparse24<2147483648x64xf16>) -> tensor<?x2147483648xf16> {
  // expected-error@+1 {{N = 2147483648 exceeds the kernels' 32-bit limit of 2147483647 (i32::MAX)}}
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<?x64xf16>, !sparseflow.sparse24<2147483648x64xf16>) -> tensor<?x2147483648xf16>
  return %0 : tensor<?x2147483648xf16>
}
func.func @m(%x: tensor<4294967296x64xf16>, %w: !sparseflow.sparse24<32x64xf16>) -> tensor<4294967296x32xf16> {
  // expected-error@+1 {{M = 4294967296 exceeds the kernels' 32-bit limit of 2147483647 (i32::MAX)}}
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<4294967296x64xf16>, !sparseflow.sparse24<32x64xf16>) -> tensor<4294967296x32xf16>
  return %0 : tensor<4294967296x32xf16>
}
func.func @k(%x: tensor<1x2147483652xf16>, %w: !sparseflow.sparse24<32x2147483652xf16>) -> tensor<1x32xf16> {
  // expected-error@+1 {{K = 2147483652 exceeds the kernels' 32-bit limit of 2147483647 (i32::MAX)}}
  %0 = sparseflow.fused_sparse_gemm %x, %w {epilogue = "none"} : (tensor<1x2147483652xf16>, !sparseflow.sparse24<32x2147483652xf16>) -> tensor<1x32xf16>
  return %0 : tensor<1x32xf16>
}
// The largest legal value passes.
func.func @max(%x: tensor<2147483647x64xf16>, %w: !sparseflow.sparse24<2147483647x64xf16>) -> tensor<2147483647x2147483647xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<2147483647x64xf16>, !sparseflow.sparse24<2147483647x64xf16>) -> tensor<2147483647x2147483647xf16>
  return %0 : tensor<2147483647x2147483647xf16>
}
