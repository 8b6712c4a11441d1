// RUN: sparseflow opt %s --pass-pipeline=fuse-epilogue,select-tiles
// expected-error@unknown {{pass 'select-tiles' needs a target GPU; pass --target=<sm_80|sm_86|sm_89|sm_90a|h200>}}
func.func @f(%x: tensor<?x64xf16>, %w: !sparseflow.sparse24<32x64xf16>, %b: tensor<32xf16>) -> tensor<?x32xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>) -> tensor<?x32xf16>
  %1 = arith.relu %0 : tensor<?x32xf16>
  return %1 : tensor<?x32xf16>
}
