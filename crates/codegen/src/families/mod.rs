//! The built-in kernel families, one file each beside its template in `kernels/`:
//! [`sm80`] (`kernels/sm80_sparse_gemm.cu`), [`decode`] (`kernels/decode_sparse_gemm.cu`) and
//! [`sm90`] (`kernels/sm90_sparse_gemm.cu`, sm_90a; registered twice: `sm90` and, measured-only,
//! `sm90a` with the asynchronous consumer loop).
//! They are listed once, in [`Registry::builtin`](crate::Registry::builtin).

pub mod decode;
pub mod sm80;
pub mod sm90;

pub use decode::DECODE;
pub use sm80::SM80;
pub use sm90::{SM90, SM90_ASYNC};

/// `ceil(a / b)`, at least 1 (a grid dimension).
pub(crate) fn blocks(a: u32, b: u32) -> u32 {
    a.div_ceil(b).max(1)
}
