//! Activation-aware pruning (`sparseflow_core::prune`) for Python: a `Calibration` accumulator
//! (`H = XᵀX` in f64, shared by the layers that read the same input), `prune_calibrated` and
//! `find_permutation`. Host pointers, as everywhere in `_C`; the GIL is released while Rust
//! computes and re-taken only to call the progress callback.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use sparseflow_core::prune::{find_permutation as core_find_permutation, PermuteOptions, Progress};
use sparseflow_core::{
    dispatch_dtype, prune, Calibration as CoreCalibration, PruneMethod, PruneOptions, PruneReport,
};

use crate::error::{core_err, value_err};
use crate::format::sizes;
use crate::raw::{parse_dtype, slice, slice_mut};

/// `H = XᵀX` of one layer input, accumulated over batches of activations `[m, k]`.
#[pyclass(module = "sparseflow._C")]
pub struct Calibration {
    inner: CoreCalibration,
}

#[pymethods]
impl Calibration {
    #[new]
    fn new(k: usize) -> PyResult<Self> {
        Ok(Calibration {
            inner: CoreCalibration::new(k).map_err(core_err)?,
        })
    }

    /// Adds the host activations at `x_ptr` (`[m, k]`, contiguous, `dtype`).
    fn accumulate(&mut self, py: Python<'_>, x_ptr: usize, m: usize, dtype: &str) -> PyResult<()> {
        let dtype = parse_dtype(dtype)?;
        let k = self.inner.k();
        let len = m
            .checked_mul(k)
            .ok_or_else(|| value_err("calibration batch too large"))?;
        let inner = &mut self.inner;
        py.detach(|| {
            dispatch_dtype!(dtype, T => {
                // SAFETY: the Python caller passes a contiguous CPU tensor of m·k elements.
                let x = unsafe { slice::<T>(x_ptr, len, "calibration")? };
                inner.accumulate(x, m).map_err(core_err)
            })
        })
    }

    /// The calibration of the permuted input `x[:, perm]`.
    fn permuted(&self, perm: Vec<usize>) -> PyResult<Self> {
        Ok(Calibration {
            inner: self.inner.permuted(&perm).map_err(core_err)?,
        })
    }

    #[getter]
    fn k(&self) -> usize {
        self.inner.k()
    }

    #[getter]
    fn tokens(&self) -> usize {
        self.inner.tokens()
    }
}

/// Prunes the host weight `[n, k]` at `w_ptr` with `method` into `values_ptr` / `meta_ptr`
/// and returns the report as a dict. `progress(stage, done, total)` is called from the
/// calling thread after every block of the long stages.
#[pyfunction]
#[pyo3(signature = (w_ptr, n, k, dtype, method, calibration, values_ptr, meta_ptr, damping=0.01, block_size=128, refine_sweeps=4, progress=None))]
#[allow(clippy::too_many_arguments)]
pub fn prune_calibrated<'py>(
    py: Python<'py>,
    w_ptr: usize,
    n: usize,
    k: usize,
    dtype: &str,
    method: &str,
    calibration: Option<PyRef<'py, Calibration>>,
    values_ptr: usize,
    meta_ptr: usize,
    damping: f64,
    block_size: usize,
    refine_sweeps: usize,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let dtype = parse_dtype(dtype)?;
    let method = PruneMethod::from_name(method).map_err(core_err)?;
    let (n_dense, n_values, n_meta) = sizes(n, k)?;
    let cal = calibration.as_deref().map(|c| &c.inner);
    let report_cb = |p: Progress| {
        if let Some(cb) = &progress {
            // A failing callback (say, a closed progress bar) must not abort the pruning.
            Python::attach(|py| {
                cb.call1(py, (p.stage, p.done, p.total))
                    .map(drop)
                    .unwrap_or(())
            });
        }
    };
    let options = PruneOptions {
        damping,
        block_size,
        refine_sweeps,
        progress: Some(&report_cb),
    };
    let report: PruneReport = py.detach(|| {
        dispatch_dtype!(dtype, T => {
            // SAFETY: the Python caller passes a contiguous CPU weight of n·k elements and
            // fresh output tensors of the sizes `sizes` gives, aliasing nothing.
            let (w, values, meta) = unsafe {
                (
                    slice::<T>(w_ptr, n_dense, "weight")?,
                    slice_mut::<T>(values_ptr, n_values, "values")?,
                    slice_mut::<u8>(meta_ptr, n_meta, "meta")?,
                )
            };
            let (sparse, report) = prune(method, w, n, k, cal, &options).map_err(core_err)?;
            values.copy_from_slice(&sparse.values);
            meta.copy_from_slice(&sparse.meta);
            Ok::<_, PyErr>(report)
        })
    })?;
    let d = PyDict::new(py);
    d.set_item("method", report.method.name())?;
    d.set_item("max_error", report.diff.max_error)?;
    d.set_item("mean_abs_error", report.diff.mean_abs_error)?;
    d.set_item("rel_fro_error", report.diff.rel_fro_error)?;
    d.set_item("kept_magnitude", report.diff.kept_magnitude)?;
    d.set_item("sparsity", report.diff.sparsity)?;
    d.set_item("bytes_dense", report.diff.bytes_dense)?;
    d.set_item("bytes_sparse", report.diff.bytes_sparse)?;
    if let Some(tokens) = report.calibration_tokens {
        d.set_item("calibration_tokens", tokens)?;
    }
    if let Some(damping) = report.damping {
        d.set_item("damping", damping)?;
    }
    if let Some(r) = report.refine {
        d.set_item("refine_sweeps", r.sweeps)?;
        d.set_item("refine_swaps", r.swaps)?;
        d.set_item(
            "refine_objective_ratio",
            r.objective_after / r.objective_before.max(f64::MIN_POSITIVE),
        )?;
    }
    Ok(d)
}

/// A permutation of the input channels of the host weight `[n, k]` under which 2:4 keeps
/// more importance (see `sparseflow_core::prune::permute`).
#[pyfunction]
#[pyo3(signature = (w_ptr, n, k, dtype, calibration=None, window=64, passes=4))]
#[allow(clippy::too_many_arguments)]
pub fn find_permutation(
    py: Python<'_>,
    w_ptr: usize,
    n: usize,
    k: usize,
    dtype: &str,
    calibration: Option<PyRef<'_, Calibration>>,
    window: usize,
    passes: usize,
) -> PyResult<Vec<usize>> {
    let dtype = parse_dtype(dtype)?;
    let (n_dense, _, _) = sizes(n, k)?;
    let cal = calibration.as_deref().map(|c| &c.inner);
    let options = PermuteOptions { window, passes };
    py.detach(|| {
        dispatch_dtype!(dtype, T => {
            // SAFETY: contiguous CPU weight of n·k elements (Python layer).
            let w = unsafe { slice::<T>(w_ptr, n_dense, "weight")? };
            core_find_permutation(w, n, k, cal, &options).map_err(core_err)
        })
    })
}
