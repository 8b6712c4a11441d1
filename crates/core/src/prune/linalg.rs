//! The dense f64 linear algebra the pruning methods share, on faer: row-major views, the
//! damped "upper" Cholesky factor SparseGPT needs, and the fast output-error measurement.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch};
use faer::{Accum, Mat, MatMut, MatRef, Par};

use super::{Calibration, PruneError};
use crate::shape::{check_weight, expect_len};
use crate::{Element, Result};

/// faer's parallelism: the current rayon pool.
pub(crate) fn par() -> Par {
    Par::rayon(0)
}

/// `[rows, cols]` row-major slice as a faer matrix.
pub(crate) fn rm(data: &[f64], rows: usize, cols: usize) -> MatRef<'_, f64> {
    MatRef::from_row_major_slice(data, rows, cols)
}

/// `[rows, cols]` row-major mutable slice as a faer matrix.
pub(crate) fn rm_mut(data: &mut [f64], rows: usize, cols: usize) -> MatMut<'_, f64> {
    MatMut::from_row_major_slice_mut(data, rows, cols)
}

/// `dst (+)= lhs · rhs`.
pub(crate) fn gemm(
    dst: MatMut<'_, f64>,
    accumulate: bool,
    lhs: MatRef<'_, f64>,
    rhs: MatRef<'_, f64>,
) {
    let beta = if accumulate {
        Accum::Add
    } else {
        Accum::Replace
    };
    faer::linalg::matmul::matmul(dst, beta, lhs, rhs, 1.0, par());
}

/// Relative damping tried after `damping` when `H + λI` is not numerically positive definite.
const DAMPING_RETRIES: usize = 4;

/// The upper-triangular `R` with `H + λI = R·Rᵀ` (λ = `damping` × mean live diagonal), in the
/// upper triangle of the returned column-major matrix (the strict lower part is scratch).
///
/// Why this factor: SparseGPT needs the rows of `U`, the upper Cholesky factor of `(H + λI)⁻¹`
/// (`H⁻¹ = UᵀU`), and `U = R⁻¹`. Factoring the index-reversed matrix (`P·H·P = L·Lᵀ`, then
/// `R = P·L·P`) gives `R` with one Cholesky and no k×k inverse; the blocked algorithm then only
/// inverts `R`'s diagonal blocks.
///
/// Dead channels (`H_jj == 0`: the input never fires) get `H_jj = 1` as in the reference
/// implementation. When the factorization fails, retries with 10× the damping, up to
/// [`DAMPING_RETRIES`] times. Returns the factor and the relative damping used.
pub(crate) fn reversed_cholesky(cal: &Calibration, damping: f64) -> Result<(Mat<f64>, f64)> {
    let k = cal.k();
    let mean_diag = cal.check_for(k)?;
    let mut rel = damping;
    let mut a = Mat::<f64>::zeros(k, k);
    let mut mem = MemBuffer::new(cholesky_in_place_scratch::<f64>(
        k,
        par(),
        Default::default(),
    ));
    for _ in 0..=DAMPING_RETRIES {
        let lambda = rel * mean_diag;
        fill_reversed_lower(&mut a, cal, lambda);
        let ok = cholesky_in_place(
            a.as_mut(),
            Default::default(),
            par(),
            MemStack::new(&mut mem),
            Default::default(),
        )
        .is_ok();
        if ok && (0..k).all(|i| a[(i, i)].is_finite() && a[(i, i)] > 0.0) {
            reverse_lower_into_upper(&mut a);
            return Ok((a, rel));
        }
        rel *= 10.0;
    }
    Err(PruneError::NotPositiveDefinite {
        damping: rel / 10.0,
    }
    .into())
}

/// Lower triangle of `P·(H + λI)·P`: `a[i, j] = H[k-1-i, k-1-j]` (dead channels: `1 + λ` on
/// the diagonal). Walks 64×64 tiles: the index reversal is a transpose of the stored lower
/// triangle, which is cache-hostile row by row.
fn fill_reversed_lower(a: &mut Mat<f64>, cal: &Calibration, lambda: f64) {
    const TILE: usize = 64;
    let k = a.nrows();
    for jb in (0..k).step_by(TILE) {
        for ib in (jb..k).step_by(TILE) {
            for j in jb..(jb + TILE).min(k) {
                for i in ib.max(j)..(ib + TILE).min(k) {
                    a[(i, j)] = cal.hessian(k - 1 - i, k - 1 - j);
                }
            }
        }
    }
    for i in 0..k {
        let h = a[(i, i)];
        a[(i, i)] = if h == 0.0 { 1.0 + lambda } else { h + lambda };
    }
}

/// `R = P·L·P` in place: `R[i, j] = L[k-1-i, k-1-j]` for `i ≤ j`, written over the upper
/// triangle (the strict lower triangle keeps `L`'s entries, now meaningless).
fn reverse_lower_into_upper(a: &mut Mat<f64>) {
    let k = a.nrows();
    for j in 0..k {
        for i in 0..j {
            a[(i, j)] = a[(k - 1 - i, k - 1 - j)];
        }
    }
    for i in 0..k / 2 {
        let t = a[(i, i)];
        a[(i, i)] = a[(k - 1 - i, k - 1 - i)];
        a[(k - 1 - i, k - 1 - i)] = t;
    }
}

/// `‖X·Wᵀ − X·Wpᵀ‖_F / ‖X·Wᵀ‖_F` in f64 (0 when `X·Wᵀ` is zero): the relative output error of
/// a pruned weight `wp` against the dense `w` (both `[n, k]`) on activations `x [m, k]`.
/// Uses faer's GEMM, so it is quick enough for held-out sets of real layers.
pub fn output_rel_error<T: Element>(
    x: &[T],
    m: usize,
    w: &[T],
    wp: &[T],
    n: usize,
    k: usize,
) -> Result<f64> {
    check_weight(w.len(), n, k)?;
    check_weight(wp.len(), n, k)?;
    expect_len(x.len(), m, k, "activations X [M, K]")?;
    let to64 = |v: &[T]| v.iter().map(|e| e.to_f64()).collect::<Vec<f64>>();
    let (x, w, wp) = (to64(x), to64(w), to64(wp));
    if x.iter().any(|v| !v.is_finite()) {
        return Err(crate::CoreError::NonFiniteInput("activations X"));
    }
    let delta: Vec<f64> = w.iter().zip(&wp).map(|(a, b)| a - b).collect();
    let mut y = Mat::<f64>::zeros(m, n);
    gemm(y.as_mut(), false, rm(&x, m, k), rm(&w, n, k).transpose());
    let mut e = Mat::<f64>::zeros(m, n);
    gemm(
        e.as_mut(),
        false,
        rm(&x, m, k),
        rm(&delta, n, k).transpose(),
    );
    let (ne, ny) = (e.norm_l2(), y.norm_l2());
    Ok(if ny == 0.0 { 0.0 } else { ne / ny })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversed_factor_reproduces_damped_hessian() {
        let x: Vec<f32> = (0..40).map(|i| ((i * 37 % 11) as f32) - 5.0).collect();
        let cal = Calibration::from_activations(&x, 10, 4).unwrap();
        let (r, rel) = reversed_cholesky(&cal, 0.01).unwrap();
        assert_eq!(rel, 0.01);
        let mean = (0..4).map(|j| cal.hessian(j, j)).sum::<f64>() / 4.0;
        for i in 0..4 {
            for j in 0..4 {
                // (R Rᵀ)[i, j] = Σ_{t ≥ max(i, j)} R[i, t] R[j, t]
                let got: f64 = (i.max(j)..4).map(|t| r[(i, t)] * r[(j, t)]).sum();
                let want = cal.hessian(i, j) + if i == j { 0.01 * mean } else { 0.0 };
                assert!(
                    (got - want).abs() < 1e-9 * want.abs().max(1.0),
                    "{i} {j}: {got} vs {want}"
                );
            }
        }
    }
}
