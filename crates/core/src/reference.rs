//! CPU reference GEMM: `Y[M×N] = epilogue(X[M×K] · Wᵀ [+ b])`.
//!
//! * [`sparse_gemm`] works directly on the compressed [`Sparse24`] form (no decompression):
//!   fp32 accumulation, parallel over output features with rayon. It is the CPU backend's
//!   production path and the semantics every GPU kernel must match.
//! * [`dense_gemm`] is the same algorithm on a dense weight, so the two are comparable.
//! * [`oracle_gemm_f64`] is the slow float64 truth the tests compare everything against.
//!
//! Both fast paths use the outer-product form: X is transposed into blocks of [`TOKEN_BLOCK`]
//! tokens, and every kept weight adds `w · X[:, col]` to a register-sized accumulator. The
//! sparse path therefore does half the multiply-adds of the dense one with the same loop.

use rayon::prelude::*;

use crate::shape::{check_weight, expect_len};
use crate::{CoreError, Element, EpilogueKind, Result, Sparse24};

/// Tokens processed together: 16 fp32 accumulators fit in registers on x86-64 and aarch64.
const TOKEN_BLOCK: usize = 16;

/// Output rows per rayon task: enough work per task to amortise scheduling.
const ROWS_PER_TASK: usize = 16;

/// Sparse GEMM on the compressed weight; returns `Y [m, w.n]`.
pub fn sparse_gemm<T: Element>(
    x: &[T],
    m: usize,
    w: &Sparse24<T>,
    bias: Option<&[T]>,
    epilogue: EpilogueKind,
) -> Result<Vec<T>> {
    let mut y = crate::alloc::try_filled(
        output_len(x, m, w.n, w.k, bias, epilogue)?,
        T::default(),
        "output [m, n]",
    )?;
    sparse_gemm_into(x, m, w, bias, epilogue, &mut y)?;
    Ok(y)
}

/// Like [`sparse_gemm`], writing into a caller-provided `y [m, w.n]`.
pub fn sparse_gemm_into<T: Element>(
    x: &[T],
    m: usize,
    w: &Sparse24<T>,
    bias: Option<&[T]>,
    epilogue: EpilogueKind,
    y: &mut [T],
) -> Result<()> {
    check_operands(x, m, w.n, w.k, bias, epilogue, y.len())?;
    let (half_k, meta_row_bytes) = (w.k / 2, crate::format::meta_bytes_per_row(w.k));
    run_blocked(
        x,
        m,
        w.n,
        w.k,
        bias,
        epilogue,
        y,
        |row, scratch, blocks, accs| {
            // Decode the row once (values to f32), then stream it over every token block.
            scratch.clear();
            scratch.extend(
                w.values[row * half_k..][..half_k]
                    .iter()
                    .map(|v| v.to_f32()),
            );
            let meta = &w.meta[row * meta_row_bytes..][..meta_row_bytes];
            for (xt, acc) in blocks.iter().zip(accs.iter_mut()) {
                for (g, (cols, v)) in xt.chunks_exact(4).zip(scratch.chunks_exact(2)).enumerate() {
                    let code = (meta[g / 2] >> (4 * (g % 2))) & 0xF;
                    axpy(acc, v[0], &cols[usize::from(code & 3)]);
                    axpy(acc, v[1], &cols[usize::from(code >> 2)]);
                }
            }
        },
    )
}

/// Dense GEMM with the same algorithm as [`sparse_gemm`]; `w` is `[n, k]` row-major.
pub fn dense_gemm<T: Element>(
    x: &[T],
    m: usize,
    w: &[T],
    n: usize,
    k: usize,
    bias: Option<&[T]>,
    epilogue: EpilogueKind,
) -> Result<Vec<T>> {
    check_weight(w.len(), n, k)?;
    let mut y = crate::alloc::try_filled(
        output_len(x, m, n, k, bias, epilogue)?,
        T::default(),
        "output [m, n]",
    )?;
    run_blocked(
        x,
        m,
        n,
        k,
        bias,
        epilogue,
        &mut y,
        |row, scratch, blocks, accs| {
            scratch.clear();
            scratch.extend(w[row * k..][..k].iter().map(|v| v.to_f32()));
            for (xt, acc) in blocks.iter().zip(accs.iter_mut()) {
                for (col, v) in xt.iter().zip(scratch.iter()) {
                    axpy(acc, *v, col);
                }
            }
        },
    )?;
    Ok(y)
}

/// Float64 oracle on a dense weight (pass `Sparse24::decompress()` for a sparse one).
pub fn oracle_gemm_f64<T: Element>(
    x: &[T],
    m: usize,
    w: &[T],
    n: usize,
    k: usize,
    bias: Option<&[T]>,
    epilogue: EpilogueKind,
) -> Result<Vec<f64>> {
    check_weight(w.len(), n, k)?;
    let mut y = crate::alloc::try_filled(
        output_len(x, m, n, k, bias, epilogue)?,
        0.0f64,
        "output [m, n] (f64)",
    )?;
    y.par_chunks_mut(n).enumerate().for_each(|(i, y_row)| {
        let x_row = &x[i * k..(i + 1) * k];
        for (j, out) in y_row.iter_mut().enumerate() {
            let acc: f64 = w[j * k..(j + 1) * k]
                .iter()
                .zip(x_row)
                .map(|(a, b)| a.to_f64() * b.to_f64())
                .sum();
            let b = bias.map_or(0.0, |b| b[j].to_f64());
            *out = epilogue.apply(acc, b);
        }
    });
    Ok(y)
}

/// Length of `Y [m, n]` once the operands are checked: validated before anything is
/// allocated, so a bogus M is an error rather than an allocation failure.
fn output_len<T: Element>(
    x: &[T],
    m: usize,
    n: usize,
    k: usize,
    bias: Option<&[T]>,
    epilogue: EpilogueKind,
) -> Result<usize> {
    let len = m.checked_mul(n).ok_or(CoreError::Overflow { what: "Y" })?;
    check_operands(x, m, n, k, bias, epilogue, len)?;
    Ok(len)
}

/// Shape, bias and length checks shared by every entry point.
fn check_operands<T: Element>(
    x: &[T],
    m: usize,
    n: usize,
    k: usize,
    bias: Option<&[T]>,
    epilogue: EpilogueKind,
    y_len: usize,
) -> Result<()> {
    expect_len(x.len(), m, k, "X [M, K]")?;
    expect_len(y_len, m, n, "Y [M, N]")?;
    epilogue.check_bias(bias.map(<[T]>::len), n)
}

/// One column of a token block: the activations of `TOKEN_BLOCK` tokens at one K index.
type Column = [f32; TOKEN_BLOCK];

/// `acc[t] += a * x[t]` for one token block; fixed length so it vectorises.
#[inline(always)]
fn axpy(acc: &mut Column, a: f32, x: &Column) {
    for t in 0..TOKEN_BLOCK {
        acc[t] += a * x[t];
    }
}

/// The shared driver: transposes X into token blocks (`blocks[b][col]` = one [`Column`]), calls
/// `row_kernel(row, scratch, blocks, accs)` for every output row in parallel (it fills one
/// accumulator per block), applies the epilogue and writes `y [m, n]`.
#[allow(clippy::too_many_arguments)]
fn run_blocked<T: Element>(
    x: &[T],
    m: usize,
    n: usize,
    k: usize,
    bias: Option<&[T]>,
    epilogue: EpilogueKind,
    y: &mut [T],
    row_kernel: impl Fn(usize, &mut Vec<f32>, &[Vec<Column>], &mut [Column]) + Sync,
) -> Result<()> {
    let block_count = m.div_ceil(TOKEN_BLOCK);
    let blocks: Vec<Vec<Column>> = (0..block_count)
        .into_par_iter()
        .map(|b| -> Result<Vec<Column>> {
            let mut block = crate::alloc::try_filled(k, [0.0f32; TOKEN_BLOCK], "input block")?;
            for t in 0..TOKEN_BLOCK.min(m - b * TOKEN_BLOCK) {
                let x_row = &x[(b * TOKEN_BLOCK + t) * k..][..k];
                for (col, v) in block.iter_mut().zip(x_row) {
                    col[t] = v.to_f32();
                }
            }
            Ok(block)
        })
        .collect::<Result<_>>()?;
    // Output computed transposed (yt[n][m]) so each task owns whole rows, then scattered.
    let mut yt = crate::alloc::try_filled(n * m, T::default(), "transposed output [n, m]")?;
    yt.par_chunks_mut(ROWS_PER_TASK * m)
        .enumerate()
        .for_each(|(task, rows)| {
            let mut scratch = Vec::with_capacity(k);
            let mut accs = vec![[0.0f32; TOKEN_BLOCK]; block_count];
            for (r, yt_row) in rows.chunks_mut(m).enumerate() {
                let row = task * ROWS_PER_TASK + r;
                let b_val = bias.map_or(0.0, |b| b[row].to_f64());
                accs.iter_mut().for_each(|a| *a = [0.0; TOKEN_BLOCK]);
                row_kernel(row, &mut scratch, &blocks, &mut accs);
                for (out, acc) in yt_row.iter_mut().zip(accs.iter().flatten()) {
                    *out = T::from_f64(epilogue.apply(*acc as f64, b_val));
                }
            }
        });
    for (row, yt_row) in yt.chunks(m).enumerate() {
        for (t, v) in yt_row.iter().enumerate() {
            y[t * n + row] = *v;
        }
    }
    Ok(())
}
