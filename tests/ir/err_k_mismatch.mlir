// RUN: sparseflow opt %s --pass-pipeline=fuse-epilogue
func.func @f(%x: tensor<?x4096xf16>, %w: !sparseflow.sparse24<14336x4092xf16>) -> tensor<?x14336xf16> {
  // expected-error@+1 {{X's K (4096) does not match W's K (4092)}}
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<?x4096xf16>, !sparseflow.sparse24<14336x4092xf16>) -> tensor<?x14336xf16>
  return %0 : tensor<?x14336xf16>
}
