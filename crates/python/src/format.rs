//! The 2:4 format on host memory: prune + compress, decompress, diff report.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use sparseflow_core::alloc::try_copy;
use sparseflow_core::format::meta_bytes_per_row;
use sparseflow_core::{
    diff_report, dispatch_dtype, CoreError, DiffReport, Element, EpilogueKind, Sparse24, EPILOGUES,
};

use crate::error::{core_err, runtime_err, value_err};
use crate::raw::{parse_dtype, slice, slice_mut};

/// Element counts of a `[n, k]` weight: (dense, values, meta bytes), refusing bad shapes with
/// core's own messages so Python and Rust users read the same text.
pub fn sizes(n: usize, k: usize) -> PyResult<(usize, usize, usize)> {
    if n == 0 || k == 0 {
        return Err(core_err(CoreError::ZeroDim {
            what: "weight [N, K]",
        }));
    }
    if !k.is_multiple_of(4) {
        return Err(core_err(CoreError::KNotMultipleOf4 { k }));
    }
    let overflow = || value_err(format!("weight [{n}, {k}] is too large"));
    let dense = n.checked_mul(k).ok_or_else(overflow)?;
    let meta = n.checked_mul(meta_bytes_per_row(k)).ok_or_else(overflow)?;
    Ok((dense, dense / 2, meta))
}

/// Copies a host `[n, k/2]` values + `[n, k/8]` meta pair into a checked [`Sparse24`].
///
/// # Safety
/// Both addresses must hold contiguous host tensors of the sizes [`sizes`] gives.
pub unsafe fn sparse_from_host<T: Element>(
    values_ptr: usize,
    meta_ptr: usize,
    n: usize,
    k: usize,
) -> PyResult<Sparse24<T>> {
    let (_, n_values, n_meta) = sizes(n, k)?;
    // SAFETY: forwarded caller contract.
    let values = try_copy(
        unsafe { slice::<T>(values_ptr, n_values, "values") }?,
        "values",
    )
    .map_err(core_err)?;
    // SAFETY: forwarded caller contract.
    let meta =
        try_copy(unsafe { slice::<u8>(meta_ptr, n_meta, "meta") }?, "meta").map_err(core_err)?;
    Sparse24::from_parts(n, k, values, meta).map_err(core_err)
}

/// Compresses the dense `[n, k]` weight at `w_ptr` into `values_ptr` / `meta_ptr`. With
/// `prune`, magnitude-prunes to 2:4 first; without, a weight that is not 2:4 is an error.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn prune_compress(
    py: Python<'_>,
    w_ptr: usize,
    n: usize,
    k: usize,
    dtype: &str,
    prune: bool,
    values_ptr: usize,
    meta_ptr: usize,
) -> PyResult<()> {
    let dtype = parse_dtype(dtype)?;
    let (n_dense, n_values, n_meta) = sizes(n, k)?;
    py.detach(|| {
        dispatch_dtype!(dtype, T => {
            // SAFETY: the Python caller passes contiguous CPU tensors of these sizes; the
            // outputs are fresh tensors that alias nothing.
            let (w, values, meta) = unsafe {
                (
                    slice::<T>(w_ptr, n_dense, "weight")?,
                    slice_mut::<T>(values_ptr, n_values, "values")?,
                    slice_mut::<u8>(meta_ptr, n_meta, "meta")?,
                )
            };
            // One parallel pass straight into the output tensors (no pruned dense copy).
            Sparse24::compress_into(w, n, k, prune, values, meta).map_err(core_err)
        })
    })
}

/// Writes the dense `[n, k]` weight of a compressed pair into `out_ptr`.
#[pyfunction]
pub fn decompress(
    py: Python<'_>,
    values_ptr: usize,
    meta_ptr: usize,
    n: usize,
    k: usize,
    dtype: &str,
    out_ptr: usize,
) -> PyResult<()> {
    let dtype = parse_dtype(dtype)?;
    let (n_dense, _, _) = sizes(n, k)?;
    py.detach(|| {
        dispatch_dtype!(dtype, T => {
            // SAFETY: contiguous CPU tensors of the right sizes (Python layer); `out` is fresh.
            let sparse = unsafe { sparse_from_host::<T>(values_ptr, meta_ptr, n, k)? };
            // SAFETY: as above.
            let out = unsafe { slice_mut::<T>(out_ptr, n_dense, "out")? };
            out.copy_from_slice(&sparse.decompress());
            Ok(())
        })
    })
}

/// The diff report of a dense `[n, k]` weight against its compressed form, optionally with an
/// activation sample `x [m, k]` for the output error. Returns a dict.
#[pyfunction]
#[pyo3(signature = (w_ptr, values_ptr, meta_ptr, n, k, dtype, x_ptr=None, m=0))]
#[allow(clippy::too_many_arguments)]
pub fn diff<'py>(
    py: Python<'py>,
    w_ptr: usize,
    values_ptr: usize,
    meta_ptr: usize,
    n: usize,
    k: usize,
    dtype: &str,
    x_ptr: Option<usize>,
    m: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let dtype = parse_dtype(dtype)?;
    let (n_dense, _, _) = sizes(n, k)?;
    let x_len = match x_ptr {
        Some(_) if m == 0 => return Err(value_err("calibration sample has no rows")),
        Some(_) => m
            .checked_mul(k)
            .ok_or_else(|| value_err("calibration sample too large"))?,
        None => 0,
    };
    let report: DiffReport = py.detach(|| {
        dispatch_dtype!(dtype, T => {
            // SAFETY: contiguous CPU tensors of the stated sizes (Python layer).
            let sparse = unsafe { sparse_from_host::<T>(values_ptr, meta_ptr, n, k)? };
            // SAFETY: as above.
            let w = unsafe { slice::<T>(w_ptr, n_dense, "weight")? };
            let x = match x_ptr {
                // SAFETY: as above.
                Some(p) => Some((unsafe { slice::<T>(p, x_len, "calibration")? }, m)),
                None => None,
            };
            diff_report(w, &sparse, x).map_err(core_err)
        })
    })?;
    let d = PyDict::new(py);
    d.set_item("max_error", report.max_error)?;
    d.set_item("mean_abs_error", report.mean_abs_error)?;
    d.set_item("rel_fro_error", report.rel_fro_error)?;
    d.set_item("kept_magnitude", report.kept_magnitude)?;
    d.set_item("sparsity", report.sparsity)?;
    d.set_item("bytes_dense", report.bytes_dense)?;
    d.set_item("bytes_sparse", report.bytes_sparse)?;
    if let (Some(max), Some(rel)) = (report.output_max_error, report.output_rel_error) {
        d.set_item("output_max_error", max)?;
        d.set_item("output_rel_error", rel)?;
    }
    Ok(d)
}

/// The epilogue table (`sparseflow_core::EPILOGUES`) in ABI order: one dict per epilogue with
/// `name`, `id` (its C ABI value), `activation` (`"none"`, `"relu2"`, ...), `activation_ops`
/// (the activation names it applies in order, `[]` for none) and `has_bias`. Python's
/// `EPILOGUES`, `ACTIVATIONS`, `epilogue_name`, `split_epilogue` and autograd are built from it.
#[pyfunction]
pub fn epilogues(py: Python<'_>) -> PyResult<Vec<Bound<'_, PyDict>>> {
    EPILOGUES
        .iter()
        .map(|e| {
            let d = PyDict::new(py);
            d.set_item("name", e.name)?;
            d.set_item("id", e.abi_value)?;
            d.set_item("activation", e.activation())?;
            d.set_item("activation_ops", e.activation_names())?;
            d.set_item("has_bias", e.uses_bias)?;
            Ok(d)
        })
        .collect()
}

/// Whether the named epilogue reads a bias vector; unknown names are a `ValueError`.
#[pyfunction]
pub fn epilogue_uses_bias(name: &str) -> PyResult<bool> {
    Ok(EpilogueKind::from_name(name).map_err(core_err)?.uses_bias())
}

/// `(values, meta)` bytes of a `[n, k]` fp16/bf16 weight in the device (fragment) layout.
#[pyfunction]
pub fn fragment_layout_bytes(n: usize, k: usize) -> PyResult<(usize, usize)> {
    sizes(n, k)?;
    sparseflow_runtime::fragment_layout_bytes(n, k).map_err(runtime_err)
}

/// The Rust definition of the device layout (`sparseflow_codegen::upload_layout`) on host
/// tensors: writes the fragment layout of the canonical pair at `values_ptr` / `meta_ptr` into
/// `out_values_ptr` / `out_meta_ptr` (sizes from `fragment_layout_bytes`). The torch relayout
/// (`sparseflow.layout`) is tested against it.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn to_fragment_layout(
    py: Python<'_>,
    values_ptr: usize,
    meta_ptr: usize,
    n: usize,
    k: usize,
    dtype: &str,
    out_values_ptr: usize,
    out_meta_ptr: usize,
) -> PyResult<()> {
    let dtype = parse_dtype(dtype)?;
    let (vb, mb) = fragment_layout_bytes(n, k)?;
    py.detach(|| {
        dispatch_dtype!(dtype, T => {
            // SAFETY: contiguous CPU tensors of the stated sizes (Python layer); the outputs
            // are fresh tensors of `fragment_layout_bytes` bytes that alias nothing.
            let w = unsafe { sparse_from_host::<T>(values_ptr, meta_ptr, n, k)? };
            let (v, m) = sparseflow_runtime::to_fragment_layout(&w).map_err(runtime_err)?;
            // SAFETY: as above.
            let (ov, om) = unsafe {
                (
                    slice_mut::<u8>(out_values_ptr, vb, "out values")?,
                    slice_mut::<u8>(out_meta_ptr, mb, "out meta")?,
                )
            };
            ov.copy_from_slice(&v);
            om.copy_from_slice(&m);
            Ok(())
        })
    })
}

/// The inverse of [`to_fragment_layout`]: the canonical `values [n, k/2]` / `meta [n, k/8]` of
/// fragment-layout host bytes.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn from_fragment_layout(
    py: Python<'_>,
    fvalues_ptr: usize,
    fmeta_ptr: usize,
    n: usize,
    k: usize,
    dtype: &str,
    values_ptr: usize,
    meta_ptr: usize,
) -> PyResult<()> {
    let dtype = parse_dtype(dtype)?;
    let (_, n_values, n_meta) = sizes(n, k)?;
    let (vb, mb) = fragment_layout_bytes(n, k)?;
    py.detach(|| {
        dispatch_dtype!(dtype, T => {
            // SAFETY: contiguous CPU tensors of the stated sizes (Python layer); outputs fresh.
            let (fv, fm) = unsafe {
                (
                    slice::<u8>(fvalues_ptr, vb, "fragment values")?,
                    slice::<u8>(fmeta_ptr, mb, "fragment meta")?,
                )
            };
            let w: Sparse24<T> = sparseflow_runtime::from_fragment_layout(
                try_copy(fv, "fragment values").map_err(core_err)?,
                try_copy(fm, "fragment meta").map_err(core_err)?,
                n,
                k,
            )
            .map_err(runtime_err)?;
            // SAFETY: as above.
            let (v, m) = unsafe {
                (
                    slice_mut::<T>(values_ptr, n_values, "values")?,
                    slice_mut::<u8>(meta_ptr, n_meta, "meta")?,
                )
            };
            v.copy_from_slice(&w.values);
            m.copy_from_slice(&w.meta);
            Ok(())
        })
    })
}
