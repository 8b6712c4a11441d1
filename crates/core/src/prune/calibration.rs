//! Calibration statistics for activation-aware pruning: the layer-input Gram matrix
//! `H = XᵀX`, accumulated in f64 over as many batches of activations as the caller has.
//!
//! `X [tokens, K]` holds the inputs this layer sees (PyTorch `nn.Linear` layout, one token per
//! row). Wanda reads the column norms `‖X_j‖₂ = sqrt(H_jj)`; SparseGPT and the refinement read
//! all of `H`, because the output error of a weight change `δ` on the calibration tokens is
//! `‖X δ‖² = δᵀ H δ`.

use std::sync::{Arc, Mutex};

use faer::linalg::matmul::triangular::{matmul as triangular_matmul, BlockStructure};
use faer::{Accum, Mat, MatRef};

use super::linalg::par;
use super::PruneError;
use crate::{Element, Result};

/// Tokens converted to f64 and multiplied in one go (bounds the scratch to 256·K doubles).
const TOKENS_PER_CHUNK: usize = 256;

/// `H = Σ xᵀx` over every calibration token seen so far, for one layer input of width `K`.
///
/// Only the lower triangle is stored (`H` is symmetric); [`Calibration::hessian`] reads either
/// half. Memory: `8·K²` bytes (1.6 GB for K = 14336), plus as much again once SparseGPT has
/// factorised it: the factor is kept (per requested damping) so that layers sharing one `H`
/// (`q/k/v_proj`) and the row chunks of one layer (`convert`) factorise it once.
#[derive(Debug)]
pub struct Calibration {
    k: usize,
    tokens: usize,
    /// Column-major `[K, K]`, lower triangle (with the diagonal) valid, upper part unspecified.
    lower: Mat<f64>,
    /// SparseGPT's factor of the damped `H` for the requested damping: `(requested, factor)`.
    factor: Mutex<Option<(f64, SharedFactor)>>,
}

/// The reversed Cholesky factor and the relative damping it used.
pub(crate) type SharedFactor = Arc<(Mat<f64>, f64)>;

impl Clone for Calibration {
    fn clone(&self) -> Self {
        Calibration {
            k: self.k,
            tokens: self.tokens,
            lower: self.lower.clone(),
            factor: Mutex::new(None),
        }
    }
}

impl Calibration {
    /// An empty accumulator for inputs of width `k` (no tokens yet: pruning with it is an
    /// error until [`Calibration::accumulate`] has added some).
    pub fn new(k: usize) -> Result<Self> {
        if k == 0 {
            return Err(PruneError::ZeroChannels.into());
        }
        Ok(Calibration {
            k,
            tokens: 0,
            lower: Mat::zeros(k, k),
            factor: Mutex::new(None),
        })
    }

    /// `H` of the activations `x [m, k]` (row-major, one token per row).
    pub fn from_activations<T: Element>(x: &[T], m: usize, k: usize) -> Result<Self> {
        let mut cal = Calibration::new(k)?;
        cal.accumulate(x, m)?;
        Ok(cal)
    }

    /// Adds the tokens `x [m, K]` (row-major) to `H`. Errors (nothing is added): `m == 0`, a
    /// length that is not `m·K`, NaN/Inf (named by token and channel).
    pub fn accumulate<T: Element>(&mut self, x: &[T], m: usize) -> Result<()> {
        let k = self.k;
        if m == 0 || x.is_empty() {
            return Err(PruneError::EmptyCalibration.into());
        }
        let expected = m.checked_mul(k).ok_or(PruneError::CalibrationShape {
            rows: m,
            k,
            got: x.len(),
        })?;
        if x.len() != expected {
            return Err(PruneError::CalibrationShape {
                rows: m,
                k,
                got: x.len(),
            }
            .into());
        }
        if let Some(i) = x.iter().position(|v| !v.to_f64().is_finite()) {
            return Err(PruneError::NonFiniteCalibration {
                token: i / k,
                channel: i % k,
                value: x[i].to_f64(),
            }
            .into());
        }
        let mut chunk = Vec::with_capacity(TOKENS_PER_CHUNK.min(m) * k);
        for rows in x.chunks(TOKENS_PER_CHUNK * k) {
            chunk.clear();
            chunk.extend(rows.iter().map(|v| v.to_f64()));
            let xc = MatRef::from_row_major_slice(&chunk, rows.len() / k, k);
            triangular_matmul(
                self.lower.as_mut(),
                BlockStructure::TriangularLower,
                Accum::Add,
                xc.transpose(),
                BlockStructure::Rectangular,
                xc,
                BlockStructure::Rectangular,
                1.0,
                par(),
            );
        }
        self.tokens += m;
        self.factor = Mutex::new(None); // H changed
        Ok(())
    }

    /// The factor `make(self, damping)` computes, from the cache when `damping` was asked
    /// before (a poisoned lock just recomputes).
    pub(crate) fn factor_cached(
        &self,
        damping: f64,
        make: impl FnOnce(&Calibration, f64) -> Result<(Mat<f64>, f64)>,
    ) -> Result<SharedFactor> {
        if let Ok(guard) = self.factor.lock() {
            if let Some((d, f)) = guard.as_ref() {
                if *d == damping {
                    return Ok(Arc::clone(f));
                }
            }
        }
        let f = Arc::new(make(self, damping)?);
        if let Ok(mut guard) = self.factor.lock() {
            *guard = Some((damping, Arc::clone(&f)));
        }
        Ok(f)
    }

    /// Input width `K`.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Tokens accumulated so far.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// `H[i, j] = Σ_t x_ti · x_tj`.
    pub fn hessian(&self, i: usize, j: usize) -> f64 {
        self.lower[(i.max(j), i.min(j))]
    }

    /// `‖X_j‖₂` of every input channel (Wanda's activation norms).
    pub fn column_norms(&self) -> Vec<f64> {
        (0..self.k).map(|j| self.lower[(j, j)].sqrt()).collect()
    }

    /// The calibration of the permuted input `x[:, perm]`: `H'[i, j] = H[perm[i], perm[j]]`.
    pub fn permuted(&self, perm: &[usize]) -> Result<Calibration> {
        super::permute::check_permutation(perm, self.k)?;
        let lower = Mat::from_fn(self.k, self.k, |i, j| {
            if i >= j {
                self.hessian(perm[i], perm[j])
            } else {
                0.0
            }
        });
        Ok(Calibration {
            k: self.k,
            tokens: self.tokens,
            lower,
            factor: Mutex::new(None),
        })
    }

    /// The full symmetric `H + λ·I` (column-major).
    pub(crate) fn damped_full(&self, lambda: f64) -> Mat<f64> {
        Mat::from_fn(self.k, self.k, |i, j| {
            self.hessian(i, j) + if i == j { lambda } else { 0.0 }
        })
    }

    /// Checks that this calibration can drive the pruning of a weight with `k` input channels:
    /// same width, at least one token, not all zero. Returns the mean diagonal of `H` over the
    /// channels that are not dead (the scale damping is relative to).
    pub(crate) fn check_for(&self, k: usize) -> Result<f64> {
        if k != self.k {
            return Err(PruneError::CalibrationK {
                expected: k,
                got: self.k,
            }
            .into());
        }
        if self.tokens == 0 {
            return Err(PruneError::EmptyCalibration.into());
        }
        let (sum, live) = (0..k)
            .map(|j| self.lower[(j, j)])
            .filter(|&d| d > 0.0)
            .fold((0.0, 0usize), |(s, c), d| (s + d, c + 1));
        if live == 0 {
            return Err(PruneError::ZeroCalibration.into());
        }
        Ok(sum / live as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CoreError;

    #[test]
    fn hessian_is_xtx_over_batches() {
        let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut cal = Calibration::from_activations(&x[..3], 1, 3).unwrap();
        cal.accumulate(&x[3..], 1).unwrap();
        assert_eq!(cal.tokens(), 2);
        assert_eq!(cal.hessian(0, 2), 1.0 * 3.0 + 4.0 * 6.0);
        assert_eq!(cal.hessian(2, 0), cal.hessian(0, 2));
        assert_eq!(cal.column_norms()[1], (4.0f64 + 25.0).sqrt());
    }

    #[test]
    fn factor_is_cached_per_damping_and_dropped_with_new_tokens() {
        let x: Vec<f32> = (0..64).map(|i| ((i * 37 % 11) as f32) - 5.0).collect();
        let mut cal = Calibration::from_activations(&x, 16, 4).unwrap();
        let make = super::super::linalg::reversed_cholesky;
        let a = cal.factor_cached(0.01, make).unwrap();
        assert!(Arc::ptr_eq(&a, &cal.factor_cached(0.01, make).unwrap()));
        let b = cal.factor_cached(0.1, make).unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(cal.clone().factor.lock().unwrap().is_none());
        cal.accumulate(&x[..4], 1).unwrap();
        assert!(!Arc::ptr_eq(&b, &cal.factor_cached(0.1, make).unwrap()));
    }

    #[test]
    fn bad_input_is_named() {
        let err = |e: CoreError| match e {
            CoreError::Prune(p) => p,
            e => panic!("unexpected {e}"),
        };
        let mut cal = Calibration::new(4).unwrap();
        assert_eq!(
            err(cal.accumulate::<f32>(&[], 0).unwrap_err()),
            PruneError::EmptyCalibration
        );
        assert!(matches!(
            err(cal.accumulate(&[1.0f32; 6], 2).unwrap_err()),
            PruneError::CalibrationShape { got: 6, .. }
        ));
        let mut x = [1.0f32; 8];
        x[6] = f32::NAN;
        assert!(matches!(
            err(cal.accumulate(&x, 2).unwrap_err()),
            PruneError::NonFiniteCalibration {
                token: 1,
                channel: 2,
                ..
            }
        ));
        assert_eq!(cal.tokens(), 0, "a refused batch adds nothing");
        assert_eq!(
            err(cal.check_for(4).unwrap_err()),
            PruneError::EmptyCalibration
        );
        cal.accumulate(&[0.0f32; 4], 1).unwrap();
        assert_eq!(
            err(cal.check_for(4).unwrap_err()),
            PruneError::ZeroCalibration
        );
        assert!(matches!(
            err(cal.check_for(8).unwrap_err()),
            PruneError::CalibrationK {
                expected: 8,
                got: 4
            }
        ));
    }
}
