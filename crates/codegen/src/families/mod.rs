//! The built-in kernel families, one file each beside its template in `kernels/`:
//! [`sm80`] (`kernels/sm80_sparse_gemm.cu`), [`decode`] (`kernels/decode_sparse_gemm.cu`) and
//! [`sm90`] (`kernels/sm90_sparse_gemm.cu`, sm_90a; registered six times: `sm90` and, all
//! measured-only, `sm90a` with the asynchronous, persistent consumer loop, `sm90d2` with two
//! stages of its wgmmas in flight, `sm90sk` with a stream-K schedule, and `sm90c2` / `sm90c4`,
//! sm90a in 2- / 4-CTA clusters multicasting the token tile).
//! They are listed once, in [`Registry::builtin`](crate::Registry::builtin).

pub mod decode;
pub mod sm80;
pub mod sm90;

pub use decode::DECODE;
pub use sm80::SM80;
pub use sm90::{SM90, SM90_ASYNC, SM90_CLUSTER2, SM90_CLUSTER4, SM90_DEEP, SM90_STREAMK};

/// Bytes of the split-K hand-off both split families use (kernels/README.md): per output tile,
/// `split_k - 1` peers' fp32 partial tiles; none without a split.
pub(crate) fn split_k_workspace_bytes(cfg: &sparseflow_ir::KernelConfig, m: u32, n: u32) -> usize {
    if cfg.split_k <= 1 {
        return 0;
    }
    let tiles = blocks(n, cfg.tile_n) as usize * blocks(m, cfg.tile_m) as usize;
    tiles * (cfg.split_k - 1) as usize * partial_tile_bytes(cfg)
}

/// Bytes of one fp32 partial output tile handed between CTAs (split-K and stream-K slots).
pub(crate) fn partial_tile_bytes(cfg: &sparseflow_ir::KernelConfig) -> usize {
    (cfg.tile_m * cfg.tile_n) as usize * 4
}

/// `ceil(a / b)`, at least 1 (a grid dimension).
pub(crate) fn blocks(a: u32, b: u32) -> u32 {
    a.div_ceil(b).max(1)
}
