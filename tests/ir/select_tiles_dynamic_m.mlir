// Dynamic M uses m_hint (here 64) and always the any-M family sm80.
// RUN: sparseflow opt %s --pass-pipeline=select-tiles --target=sm_80
// CHECK: {epilogue = "relu", m_hint = 64, family = "sm80", tile_m = 32,
func.func @f(%x: tensor<?x64xf16>, %w: !sparseflow.sparse24<32x64xf16>, %b: tensor<32xf16>) -> tensor<?x32xf16> {
  %0 = sparseflow.fused_sparse_gemm %x, %w {epilogue = "relu", m_hint = 64} : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>) -> tensor<?x32xf16>
  return %0 : tensor<?x32xf16>
}
