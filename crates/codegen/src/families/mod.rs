//! The built-in kernel families, one file each beside its template in `kernels/`:
//! [`sm80`] (`kernels/sm80_sparse_gemm.cu`) and [`decode`] (`kernels/decode_sparse_gemm.cu`).
//! They are listed once, in [`Registry::builtin`](crate::Registry::builtin).

pub mod decode;
pub mod sm80;

pub use decode::DECODE;
pub use sm80::SM80;

/// `ceil(a / b)`, at least 1 (a grid dimension).
pub(crate) fn blocks(a: u32, b: u32) -> u32 {
    a.div_ceil(b).max(1)
}
