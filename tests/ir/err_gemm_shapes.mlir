// Every problem of one op is reported, not just the first.
// RUN: sparseflow opt %s
func.func @bad(%x: tensor<8x66xf16>, %w: !sparseflow.sparse24<32x66xbf16>) -> tensor<8x16xf16> {
  // expected-error@+3 {{X is f16 but W is bf16; both must have the same dtype}}
  // expected-error@+2 {{K (66) must be a multiple of 4 (2:4 groups run along K)}}
  // expected-error@+1 {{result must be tensor<8x32xf16>, got tensor<8x16xf16>}}
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<8x66xf16>, !sparseflow.sparse24<32x66xbf16>) -> tensor<8x16xf16>
  return %0 : tensor<8x16xf16>
}
