//! The diff report: what pruning a weight cost, in numbers a user can judge.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::shape::{check_weight, expect_len};
use crate::{CoreError, Element, Result, Sparse24};

/// Weight-space (and optionally output-space) difference between a dense weight and its
/// 2:4 version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffReport {
    /// `max |W - Ws|`.
    pub max_error: f64,
    /// `mean |W - Ws|` over all N·K entries.
    pub mean_abs_error: f64,
    /// `‖W - Ws‖_F / ‖W‖_F` (0 when W is all zero).
    pub rel_fro_error: f64,
    /// `Σ|Ws| / Σ|W|`: the fraction of L1 magnitude kept (1 when W is all zero).
    pub kept_magnitude: f64,
    /// Fraction of zero entries in Ws.
    pub sparsity: f64,
    /// Bytes of W in its dtype.
    pub bytes_dense: usize,
    /// Bytes of the compressed form: values + metadata.
    pub bytes_sparse: usize,
    /// With an activation sample X: `max |X·Wᵀ - X·Wsᵀ|` (float64).
    pub output_max_error: Option<f64>,
    /// With an activation sample X: `‖X·Wᵀ - X·Wsᵀ‖_F / ‖X·Wᵀ‖_F` (float64).
    pub output_rel_error: Option<f64>,
}

/// Compares the dense weight `w [n, k]` with its compressed version. `x`, when given, is an
/// activation sample `[m, k]` used to measure the output error.
pub fn diff_report<T: Element>(
    w: &[T],
    sparse: &Sparse24<T>,
    x: Option<(&[T], usize)>,
) -> Result<DiffReport> {
    let (n, k) = (sparse.n, sparse.k);
    check_weight(w.len(), n, k)?;
    // Rows in parallel, each summed in column order, then the rows in row order: the same
    // report on any thread count.
    let per_row: Vec<Sums> = w
        .par_chunks(k)
        .enumerate()
        .map(|(row, w_row)| row_sums(w_row, sparse, row))
        .collect();
    let t = per_row.iter().fold(Sums::default(), |a, b| a.add(b));
    let (max_err, sum_abs_err, sq_err, sq_w) = (t.max_err, t.sum_abs_err, t.sq_err, t.sq_w);
    let (l1_w, l1_ws, zeros) = (t.l1_w, t.l1_ws, t.zeros);
    let count = w.len() as f64;
    let (output_max_error, output_rel_error) = match x {
        None => (None, None),
        Some((x, m)) => {
            let (max, rel) = output_error(x, m, w, &sparse.decompress(), n, k)?;
            (Some(max), Some(rel))
        }
    };
    Ok(DiffReport {
        max_error: max_err,
        mean_abs_error: sum_abs_err / count,
        rel_fro_error: ratio_or(sq_err.sqrt(), sq_w.sqrt(), 0.0),
        kept_magnitude: ratio_or(l1_ws, l1_w, 1.0),
        sparsity: zeros as f64 / count,
        bytes_dense: w.len() * T::DTYPE.size_bytes(),
        bytes_sparse: sparse.bytes(),
        output_max_error,
        output_rel_error,
    })
}

/// One row's share of the weight-space report.
#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    max_err: f64,
    sum_abs_err: f64,
    sq_err: f64,
    sq_w: f64,
    l1_w: f64,
    l1_ws: f64,
    zeros: usize,
}

impl Sums {
    fn add(self, o: &Sums) -> Sums {
        Sums {
            max_err: self.max_err.max(o.max_err),
            sum_abs_err: self.sum_abs_err + o.sum_abs_err,
            sq_err: self.sq_err + o.sq_err,
            sq_w: self.sq_w + o.sq_w,
            l1_w: self.l1_w + o.l1_w,
            l1_ws: self.l1_ws + o.l1_ws,
            zeros: self.zeros + o.zeros,
        }
    }
}

/// Row `row` of `w` against the same row of `sparse`, without decompressing the matrix.
fn row_sums<T: Element>(w_row: &[T], sparse: &Sparse24<T>, row: usize) -> Sums {
    let mut s = Sums::default();
    for (g, group) in w_row.chunks_exact(4).enumerate() {
        let [i0, i1] = sparse.positions(row, g);
        let v = row * sparse.k / 2 + 2 * g;
        for (i, a) in group.iter().enumerate() {
            let a = a.to_f64();
            let b = if i == i0 {
                sparse.values[v].to_f64()
            } else if i == i1 {
                sparse.values[v + 1].to_f64()
            } else {
                0.0
            };
            let e = (a - b).abs();
            s.max_err = s.max_err.max(e);
            s.sum_abs_err += e;
            s.sq_err += e * e;
            s.sq_w += a * a;
            s.l1_w += a.abs();
            s.l1_ws += b.abs();
            s.zeros += usize::from(b == 0.0);
        }
    }
    s
}

fn ratio_or(num: f64, den: f64, if_zero: f64) -> f64 {
    if den == 0.0 {
        if_zero
    } else {
        num / den
    }
}

/// Output error of X·Wᵀ vs X·Wsᵀ in float64.
fn output_error<T: Element>(
    x: &[T],
    m: usize,
    w: &[T],
    ws: &[T],
    n: usize,
    k: usize,
) -> Result<(f64, f64)> {
    expect_len(x.len(), m, k, "activation sample X [M, K]")?;
    let none = crate::EpilogueKind::None;
    let y = crate::oracle_gemm_f64(x, m, w, n, k, None, none)?;
    let ys = crate::oracle_gemm_f64(x, m, ws, n, k, None, none)?;
    if y.iter().chain(&ys).any(|v| !v.is_finite()) {
        return Err(CoreError::NonFiniteInput("activation sample X"));
    }
    let (mut max, mut sq_err, mut sq_y) = (0.0f64, 0.0, 0.0);
    for (a, b) in y.iter().zip(&ys) {
        let e = (a - b).abs();
        max = max.max(e);
        sq_err += e * e;
        sq_y += a * a;
    }
    Ok((max, ratio_or(sq_err.sqrt(), sq_y.sqrt(), 0.0)))
}
