// --explain prints the source that chose (here the cost model) and the ranked candidates.
// RUN: sparseflow opt %s --pass-pipeline=fuse-epilogue,select-tiles --target=sm_80 --explain
// CHECK: // fuse-epilogue: @mlp_up: sparseflow.sparse_gemm at 13:8 + 2 elementwise op(s) -> epilogue 'bias_silu'
// CHECK-NEXT: // select-tiles: @mlp_up: fused_sparse_gemm at 13:8: M=1 N=14336 K=4096 f16 on sm_80
// CHECK-NEXT: //   chosen by cost model (no tuning entry for sm_80 14336x4096 M bucket 1 f16 fused): decode tile 8x
// CHECK-NEXT: //   #1 decode tile 8x
// CHECK-NEXT: //   #2 decode
// CHECK: //   #5 decode
// CHECK-NEXT: func.func @mlp_up(
// CHECK-NEXT: {epilogue = "bias_silu", family = "decode", tile_m = 8, tile_n =
func.func @mlp_up(%x: tensor<1x4096xf16>, %w: !sparseflow.sparse24<14336x4096xf16>,
                  %b: tensor<14336xf16>) -> tensor<1x14336xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<1x4096xf16>, !sparseflow.sparse24<14336x4096xf16>) -> tensor<1x14336xf16>
  %1 = arith.addf %0, %b : (tensor<1x14336xf16>, tensor<14336xf16>) -> tensor<1x14336xf16>
  %2 = arith.silu %1 : tensor<1x14336xf16>
  return %2 : tensor<1x14336xf16>
}
