// A Llama MLP block: gate/up projections and down projection, whole pipeline on A100.
// RUN: sparseflow opt %s --pass-pipeline=fuse-epilogue,select-tiles,canonicalize --target=sm_80
// CHECK-LABEL: func.func @mlp(
// CHECK-NEXT: %0 = sparseflow.fused_sparse_gemm %x, %wg {epilogue = "silu", family = "sm80", tile_m = 128, tile_n = 128, tile_k = 64,
// CHECK-NEXT: %1 = sparseflow.fused_sparse_gemm %x, %wu {epilogue = "none", family = "sm80"
// CHECK-NEXT: %2 = arith.mulf %0, %1
// CHECK-NEXT: %3 = sparseflow.fused_sparse_gemm %2, %wd {epilogue = "none", family = "sm80"
// CHECK-LABEL: func.func @decode_step(
// CHECK-NEXT: %0 = sparseflow.fused_sparse_gemm %x, %w {epilogue = "none", family = "decode", tile_m = 8,
// CHECK-NOT: arith.silu
func.func @mlp(%x: tensor<?x4096xf16>, %wg: !sparseflow.sparse24<14336x4096xf16>, %wu: !sparseflow.sparse24<14336x4096xf16>, %wd: !sparseflow.sparse24<4096x14336xf16>) -> tensor<?x4096xf16> {
  %0 = sparseflow.sparse_gemm %x, %wg : (tensor<?x4096xf16>, !sparseflow.sparse24<14336x4096xf16>) -> tensor<?x14336xf16>
  %1 = arith.silu %0 : tensor<?x14336xf16>
  %2 = sparseflow.sparse_gemm %x, %wu : (tensor<?x4096xf16>, !sparseflow.sparse24<14336x4096xf16>) -> tensor<?x14336xf16>
  %3 = arith.mulf %1, %2 : tensor<?x14336xf16>
  %4 = sparseflow.sparse_gemm %3, %wd : (tensor<?x14336xf16>, !sparseflow.sparse24<4096x14336xf16>) -> tensor<?x4096xf16>
  return %4 : tensor<?x4096xf16>
}

func.func @decode_step(%x: tensor<1x4096xf16>, %w: !sparseflow.sparse24<4096x4096xf16>) -> tensor<1x4096xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<1x4096xf16>, !sparseflow.sparse24<4096x4096xf16>) -> tensor<1x4096xf16>
  return %0 : tensor<1x4096xf16>
}
