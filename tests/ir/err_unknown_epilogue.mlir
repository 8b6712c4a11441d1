// RUN: sparseflow opt %s
func.func @f(%x: tensor<?x64xf16>, %w: !sparseflow.sparse24<32x64xf16>, %b: tensor<32xf16>) -> tensor<?x32xf16> {
  // expected-error@+1 {{unknown epilogue 'swish'; known: none, relu, silu, gelu, bias, bias_relu, bias_silu, bias_gelu}}
  %0 = sparseflow.fused_sparse_gemm %x, %w {epilogue = "swish"} : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>) -> tensor<?x32xf16>
  return %0 : tensor<?x32xf16>
}
