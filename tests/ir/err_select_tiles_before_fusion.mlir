// select-tiles alone used to change nothing silently: tiles belong on the fused op, so a
// bare sparse_gemm is an error that names the pass to run first (issue 25).
// RUN: sparseflow opt %s --pass-pipeline=select-tiles --target=sm_90a
func.func @f(%x: tensor<?x64xf16>, %w: !sparseflow.sparse24<32x64xf16>) -> tensor<?x32xf16> {
  // expected-error@+1 {{is not fused: select-tiles chooses tiles only for sparseflow.fused_sparse_gemm; run fuse-epilogue first (--pass-pipeline=fuse-epilogue,select-tiles)}}
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>) -> tensor<?x32xf16>
  return %0 : tensor<?x32xf16>
}
