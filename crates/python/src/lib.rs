//! `sparseflow._C`: the compiled half of the `sparseflow` Python package.
//!
//! Low level on purpose: every function takes raw data pointers, shapes and a dtype name, which
//! the Python layer (`python/sparseflow/`) takes from torch tensors after checking device,
//! dtype, shape and contiguity. Tensors therefore cross without copies and bf16 works (numpy
//! has no bf16). The GIL is released while Rust computes.
//!
//! * [`format`]: prune + compress, decompress, diff report (CPU, host pointers).
//! * [`model`]: `sf.save` / `sf.load` through `sparseflow-model` (one reader and writer).
//! * [`prune`]: activation-aware pruning (`Calibration`, `prune_calibrated`,
//!   `find_permutation`).
//! * [`gemm`]: `SparseGemmHandle`, one compiled/uploaded weight that runs
//!   `Y = epilogue(X · Wᵀ [+ b])` on the CPU reference or on a CUDA device (runtime).

mod error;
mod format;
mod gemm;
mod model;
mod prune;
mod raw;

use pyo3::prelude::*;

/// The extension module. Its Python-side stub is `python/sparseflow/_C.pyi`.
#[pymodule]
#[pyo3(name = "_C")]
fn sparseflow_c(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(format::prune_compress, m)?)?;
    m.add_function(wrap_pyfunction!(format::decompress, m)?)?;
    m.add_function(wrap_pyfunction!(format::diff, m)?)?;
    m.add_function(wrap_pyfunction!(format::epilogues, m)?)?;
    m.add_function(wrap_pyfunction!(format::epilogue_uses_bias, m)?)?;
    m.add_function(wrap_pyfunction!(format::fragment_layout_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(format::to_fragment_layout, m)?)?;
    m.add_function(wrap_pyfunction!(format::from_fragment_layout, m)?)?;
    m.add_function(wrap_pyfunction!(gemm::sparse_linear_host, m)?)?;
    m.add_function(wrap_pyfunction!(gemm::set_programmatic_launch, m)?)?;
    m.add_function(wrap_pyfunction!(gemm::programmatic_launch, m)?)?;
    m.add_function(wrap_pyfunction!(gemm::runtime_memory, m)?)?;
    m.add_class::<gemm::SparseGemmHandle>()?;
    m.add_class::<prune::Calibration>()?;
    m.add_function(wrap_pyfunction!(prune::prune_calibrated, m)?)?;
    m.add_function(wrap_pyfunction!(prune::find_permutation, m)?)?;
    m.add_function(wrap_pyfunction!(model::model_save, m)?)?;
    m.add_function(wrap_pyfunction!(model::model_load, m)?)?;
    m.add_function(wrap_pyfunction!(model::model_shard_tp, m)?)?;
    Ok(())
}
