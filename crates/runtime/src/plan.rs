//! Planning for the runtime: the families it plans with and the one bucketing rule, both from
//! the library (`sparseflow_codegen::Registry::plan`, `sparseflow_ir::select::m_bucket`), so a
//! layer call here gets the kernel `sparseflow compile` prepared for it.

use sparseflow_codegen::{PlannedKernel, Registry};
use sparseflow_core::{DType, EpilogueKind};
use sparseflow_ir::select::m_bucket;
use sparseflow_ir::LayerProblem;

use crate::context::GpuState;
use crate::error::{Result, RuntimeError};

/// What a layer computes: `Y[m×n] = epilogue(X[m×k] · Wᵀ [+ b])` in `dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LayerDesc {
    pub(crate) n: usize,
    pub(crate) k: usize,
    pub(crate) dtype: DType,
    pub(crate) epilogue: EpilogueKind,
}

impl LayerDesc {
    pub(crate) fn problem(&self, m: usize) -> LayerProblem {
        LayerProblem {
            m: m as u64,
            n: self.n as u64,
            k: self.k as u64,
            dtype: self.dtype,
            epilogue: self.epilogue,
        }
    }
}

/// The families the runtime plans with.
pub(crate) fn registry() -> &'static Registry {
    Registry::builtin()
}

/// The M bucket a plan is made for (`sparseflow_ir::select::m_bucket`, the one rule), as the
/// runtime's shape error.
pub(crate) fn bucket(m: usize) -> Result<usize> {
    match m_bucket(m as u64) {
        Ok(b) => Ok(b as usize),
        Err(sparseflow_ir::IrError::Plan(why)) => Err(RuntimeError::Shape(why)),
        Err(e) => Err(e.into()),
    }
}

/// Plans `m` tokens of `layer` on the context's GPU: the registry's one planning function.
pub(crate) fn plan(g: &GpuState, m: usize, layer: &LayerDesc) -> Result<PlannedKernel> {
    bucket(m)?;
    Ok(registry().plan(&layer.problem(m), &g.target)?)
}
