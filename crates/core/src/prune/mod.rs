//! Activation-aware 2:4 pruning behind one interface:
//! [`prune`]`(method, weight, calibration) → (Sparse24, PruneReport)`.
//!
//! | method | keeps, per group of 4 along K | then |
//! | --- | --- | --- |
//! | `magnitude` | the 2 largest `\|W_ij\|` | — |
//! | `wanda` | the 2 largest `\|W_ij\|·‖X_j‖₂` (Sun et al. 2023) | — |
//! | `sparsegpt` | the 2 largest OBS saliencies `w²/[H⁻¹]_jj`, block by block | updates the remaining weights to compensate (Frantar & Alistarh 2023) |
//! | `sparsegpt-refine` | SparseGPT's mask | swaps kept/pruned pairs and re-fits kept weights while that lowers the calibration output error ([`refine`]) |
//!
//! `X [tokens, K]` are the inputs the layer sees on calibration data, summarised as
//! `H = XᵀX` in a [`Calibration`]. [`permute`] finds input-channel permutations that make 2:4
//! keep more; they cost nothing at run time when the producing layer's output rows are permuted
//! to match (see its docs for which layers pair).
//!
//! Every entry point checks its input (shapes, K, NaN/Inf, empty or all-zero calibration) and
//! returns a [`PruneError`] naming the problem; none panics on bad input.

mod calibration;
mod linalg;
pub mod permute;
pub mod refine;
mod sparsegpt;

use serde::{Deserialize, Serialize};

pub use calibration::Calibration;
pub use linalg::output_rel_error;
pub use permute::{
    find_permutation, invert_permutation, permute_columns, permute_rows, PermuteOptions,
};

// Defined beside `CoreError`, which wraps it, so that the error module needs nothing from
// here and `prune` -> `error` runs one way; re-exported where the pruning API is.
pub use crate::error::PruneError;
pub(crate) use crate::format::two_largest;
use crate::format::{check_finite, prune_magnitude};
use crate::shape::check_weight;
use crate::{diff_report, DiffReport, Element, Result, Sparse24};

/// A pruning method. Spelled `magnitude`, `wanda`, `sparsegpt`, `sparsegpt-refine` in every
/// interface (Rust, C, CLI, Python, model files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PruneMethod {
    #[serde(rename = "magnitude")]
    Magnitude,
    #[serde(rename = "wanda")]
    Wanda,
    #[serde(rename = "sparsegpt")]
    SparseGpt,
    #[serde(rename = "sparsegpt-refine")]
    SparseGptRefine,
}

impl PruneMethod {
    pub const ALL: [PruneMethod; 4] = [
        PruneMethod::Magnitude,
        PruneMethod::Wanda,
        PruneMethod::SparseGpt,
        PruneMethod::SparseGptRefine,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PruneMethod::Magnitude => "magnitude",
            PruneMethod::Wanda => "wanda",
            PruneMethod::SparseGpt => "sparsegpt",
            PruneMethod::SparseGptRefine => "sparsegpt-refine",
        }
    }

    pub fn from_name(name: &str) -> Result<PruneMethod> {
        PruneMethod::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| PruneError::UnknownMethod { name: name.into() }.into())
    }

    /// Whether the method reads calibration activations (all but `magnitude`).
    pub fn needs_calibration(self) -> bool {
        self != PruneMethod::Magnitude
    }
}

impl std::fmt::Display for PruneMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for PruneMethod {
    type Err = crate::CoreError;
    fn from_str(s: &str) -> Result<Self> {
        PruneMethod::from_name(s)
    }
}

/// Where a long pruning job is: `done` of `total` units of `stage` (`sparsegpt`: columns,
/// `refine`: columns over all sweeps). Reported from the calling thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub stage: &'static str,
    pub done: usize,
    pub total: usize,
}

/// Knobs of the activation-aware methods; [`PruneOptions::default`] is what the papers use.
#[derive(Clone, Copy)]
pub struct PruneOptions<'a> {
    /// SparseGPT / refinement damping λ, relative to the mean diagonal of `H` (default 0.01).
    /// Raised 10× at a time when `H + λI` is not numerically positive definite.
    pub damping: f64,
    /// SparseGPT columns per block (default 128, a multiple of 4).
    pub block_size: usize,
    /// Maximum refinement sweeps over the columns (`sparsegpt-refine`, default 4); a sweep
    /// that lowers the calibration error by less than 0.1% ends it early.
    pub refine_sweeps: usize,
    /// Called after every block with the progress of the long stages.
    pub progress: Option<&'a (dyn Fn(Progress) + Sync)>,
}

impl Default for PruneOptions<'_> {
    fn default() -> Self {
        PruneOptions {
            damping: 0.01,
            block_size: 128,
            refine_sweeps: 4,
            progress: None,
        }
    }
}

impl std::fmt::Debug for PruneOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PruneOptions")
            .field("damping", &self.damping)
            .field("block_size", &self.block_size)
            .field("refine_sweeps", &self.refine_sweeps)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl PruneOptions<'_> {
    fn check(&self) -> Result<()> {
        if !(self.damping.is_finite() && self.damping > 0.0) {
            return Err(PruneError::BadOption {
                what: "damping",
                value: self.damping,
                expected: "a positive fraction of the mean Hessian diagonal, e.g. 0.01",
            }
            .into());
        }
        if self.block_size == 0 || !self.block_size.is_multiple_of(4) {
            return Err(PruneError::BadOption {
                what: "block_size",
                value: self.block_size as f64,
                expected: "a positive multiple of 4, e.g. 128",
            }
            .into());
        }
        Ok(())
    }
}

pub(crate) fn report_progress(
    options: &PruneOptions<'_>,
    stage: &'static str,
    done: usize,
    total: usize,
) {
    if let Some(cb) = options.progress {
        cb(Progress { stage, done, total });
    }
}

/// What [`prune`] did: the method, the weight-space diff and the method's own numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PruneReport {
    pub method: PruneMethod,
    /// Weight error, kept magnitude, sparsity, bytes (no output error: measure that on
    /// held-out activations with [`output_rel_error`] or [`diff_report`]).
    pub diff: DiffReport,
    /// Calibration tokens the method saw (`None` for `magnitude` without calibration).
    pub calibration_tokens: Option<usize>,
    /// SparseGPT: the relative damping actually used (larger than asked after a retry).
    pub damping: Option<f64>,
    /// Refinement: what it changed ([`refine::RefineStats`]).
    pub refine: Option<refine::RefineStats>,
}

/// Prunes the dense `w [n, k]` (row-major, PyTorch `nn.Linear` layout) to 2:4 with `method`.
///
/// `calibration` holds this layer's input activations (`H = XᵀX`); `wanda`, `sparsegpt` and
/// `sparsegpt-refine` need it, `magnitude` ignores it (but still checks its K). SparseGPT
/// changes the kept weights (that is how it compensates), so the result is not a subset of `w`.
///
/// Errors: bad shapes, K % 4 != 0, NaN/Inf weights, missing / empty / all-zero / wrong-K
/// calibration, bad options, a Hessian that no damping makes positive definite, or kept
/// weights that overflow `T` (fp16).
pub fn prune<T: Element>(
    method: PruneMethod,
    w: &[T],
    n: usize,
    k: usize,
    calibration: Option<&Calibration>,
    options: &PruneOptions<'_>,
) -> Result<(Sparse24<T>, PruneReport)> {
    check_weight(w.len(), n, k)?;
    check_finite(w, k)?;
    options.check()?;
    if let Some(cal) = calibration {
        cal.check_for(k)?;
    }
    let cal = match (method.needs_calibration(), calibration) {
        (true, None) => {
            return Err(PruneError::MissingCalibration {
                method: method.name(),
            }
            .into())
        }
        (_, cal) => cal,
    };
    let (mut damping, mut refine_stats) = (None, None);
    let pruned: Vec<T> = match (method, cal) {
        (PruneMethod::Magnitude, _) => prune_magnitude(w, n, k)?,
        (PruneMethod::Wanda, Some(cal)) => wanda(w, k, cal),
        (PruneMethod::SparseGpt | PruneMethod::SparseGptRefine, Some(cal)) => {
            let mut p = sparsegpt::sparsegpt(w, n, k, cal, options)?;
            damping = Some(p.damping);
            if method == PruneMethod::SparseGptRefine {
                refine_stats = Some(refine::refine(w, &mut p.weights, n, k, cal, options)?);
            }
            p.weights.iter().map(|&v| T::from_f64(v)).collect()
        }
        (_, None) => unreachable!("checked above: every other method has calibration"),
    };
    let sparse = Sparse24::compress(&pruned, n, k)?;
    let diff = diff_report(w, &sparse, None)?;
    let report = PruneReport {
        method,
        diff,
        calibration_tokens: cal.map(Calibration::tokens),
        damping,
        refine: refine_stats,
    };
    Ok((sparse, report))
}

/// Wanda for 2:4: per group, keep the 2 largest `|W_ij|·‖X_j‖₂`. A group whose channels never
/// fire (all scores zero) falls back to magnitude.
fn wanda<T: Element>(w: &[T], k: usize, cal: &Calibration) -> Vec<T> {
    let norms = cal.column_norms();
    let mut out = vec![T::default(); w.len()];
    for (i, (src, dst)) in w.chunks_exact(4).zip(out.chunks_exact_mut(4)).enumerate() {
        let col = (i * 4) % k;
        let mag: [f64; 4] = std::array::from_fn(|t| src[t].to_f64().abs());
        let score: [f64; 4] = std::array::from_fn(|t| mag[t] * norms[col + t]);
        let keep = if score.iter().all(|&s| s == 0.0) {
            two_largest(mag)
        } else {
            two_largest(score)
        };
        for t in keep {
            dst[t] = src[t];
        }
    }
    out
}
