//! SparseGPT for 2:4 (Frantar & Alistarh, arXiv 2301.00774), blocked and left-looking.
//!
//! The reference algorithm walks the columns in order; at the first column of every group of 4
//! it keeps, per row, the two weights with the largest OBS saliency `w² / [H⁻¹]_jj` (with
//! `[H⁻¹]_jj = U_jj²`, `U` the upper Cholesky factor of the damped `H⁻¹`), and after each
//! column spreads that column's error `e = (w − q) / U_jj` over the columns still to come:
//! `w[j+1..] −= e · U[j, j+1..]`. The errors satisfy `E·U = W − Q`, and the calibration output
//! error of the result is exactly `Σ δᵀ(H + λI)δ = ‖E‖²`.
//!
//! Here the factor comes as `R = U⁻¹` ([`super::linalg::reversed_cholesky`]: one Cholesky, no
//! k×k inverse). Block `b` (columns `i1..i2`) starts from `W̃_b = W_b + (D[:, :i1]·R[:i1, b])·U_bb`
//! where `D = W − Q` of the finished blocks and `U_bb = R_bb⁻¹` (derivation: `E = D·R`, and
//! `R·U = I` gives `R[:i1,:i1]·U[:i1, b] = −R[:i1, b]·U_bb`). Two GEMMs per block, then the
//! sequential part runs inside the block on `U_bb`, each row independently (rayon).

use faer::linalg::triangular_inverse::invert_upper_triangular;
use faer::Mat;
use rayon::prelude::*;

use super::linalg::{gemm, par, reversed_cholesky, rm_mut};
use super::{report_progress, Calibration, PruneOptions};
use crate::{Element, Result};

/// A pruned weight in f64 (row-major `[n, k]`, exact zeros where pruned) and what it took.
pub(crate) struct Pruned {
    pub weights: Vec<f64>,
    /// Relative damping actually used (after retries).
    pub damping: f64,
}

/// Runs SparseGPT 2:4 on `w [n, k]` (checked by the caller) with calibration `cal`.
pub(crate) fn sparsegpt<T: Element>(
    w: &[T],
    n: usize,
    k: usize,
    cal: &Calibration,
    options: &PruneOptions<'_>,
) -> Result<Pruned> {
    let factor = cal.factor_cached(options.damping, reversed_cholesky)?;
    let (r, damping) = (&factor.0, factor.1);
    report_progress(options, "factor", 1, 1);
    // Dead channels (input always zero) are zeroed, as in the reference implementation.
    let dead: Vec<bool> = (0..k).map(|j| cal.hessian(j, j) == 0.0).collect();
    // `d = W − Q` of the finished blocks, in f32: it only feeds the cross-block GEMM (the
    // reference implementation runs entirely in f32); `q` collects the pruned weights.
    let mut d = vec![0.0f32; n * k];
    let mut q = vec![0.0f64; n * k];
    let block = options.block_size;
    let mut i1 = 0;
    while i1 < k {
        let b = block.min(k - i1);
        let mut u_bb = Mat::<f64>::zeros(b, b);
        invert_upper_triangular(u_bb.as_mut(), r.as_ref().submatrix(i1, i1, b, b), par());
        // W̃_b, row-major [n, b].
        let mut wt: Vec<f64> = w
            .chunks_exact(k)
            .flat_map(|row| (i1..i1 + b).map(|j| if dead[j] { 0.0 } else { row[j].to_f64() }))
            .collect();
        if i1 > 0 {
            let r_panel = Mat::<f32>::from_fn(i1, b, |i, j| r[(i, i1 + j)] as f32);
            let mut s = Mat::<f32>::zeros(n, b);
            faer::linalg::matmul::matmul(
                s.as_mut(),
                faer::Accum::Replace,
                faer::MatRef::from_row_major_slice(&d, n, k).subcols(0, i1),
                r_panel.as_ref(),
                1.0f32,
                par(),
            );
            let s = Mat::<f64>::from_fn(n, b, |i, j| f64::from(s[(i, j)]));
            gemm(rm_mut(&mut wt, n, b), true, s.as_ref(), u_bb.as_ref());
        }
        let u_rows: Vec<f64> = (0..b * b).map(|t| u_bb[(t / b, t % b)]).collect();
        wt.par_chunks_mut(b)
            .zip(q.par_chunks_mut(k))
            .zip(d.par_chunks_mut(k))
            .zip(w.par_chunks(k))
            .for_each(|(((wt_row, q_row), d_row), w_row)| {
                prune_block_row(wt_row, &u_rows, &mut q_row[i1..i1 + b]);
                for (j, (dv, qv)) in d_row[i1..i1 + b]
                    .iter_mut()
                    .zip(&q_row[i1..i1 + b])
                    .enumerate()
                {
                    let wv = if dead[i1 + j] {
                        0.0
                    } else {
                        w_row[i1 + j].to_f64()
                    };
                    *dv = (wv - qv) as f32;
                }
            });
        i1 += b;
        report_progress(options, "sparsegpt", i1, k);
    }
    Ok(Pruned {
        weights: q,
        damping,
    })
}

/// The sequential OBS pass over one row's block: `w` is `W̃_b` of the row (consumed), `u` is
/// `U_bb` row-major, `q` receives the pruned weights.
fn prune_block_row(w: &mut [f64], u: &[f64], q: &mut [f64]) {
    let b = w.len();
    for g in (0..b).step_by(4) {
        let saliency: [f64; 4] = std::array::from_fn(|t| {
            let (wj, ujj) = (w[g + t], u[(g + t) * b + g + t]);
            wj * wj / (ujj * ujj)
        });
        let keep = super::two_largest(saliency);
        for t in 0..4 {
            let c = g + t;
            let kept = keep.contains(&t);
            q[c] = if kept { w[c] } else { 0.0 };
            if !kept {
                let err = w[c] / u[c * b + c];
                for (wv, uv) in w[c + 1..].iter_mut().zip(&u[c * b + c + 1..(c + 1) * b]) {
                    *wv -= err * uv;
                }
            }
        }
    }
}
