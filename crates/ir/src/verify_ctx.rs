//! What the verifier's rules share: the options it checks against and the per-op context
//! that collects diagnostics (used by `verify.rs` and `verify_gemm.rs`).

use sparseflow_core::EpilogueSpec;

use crate::error::Diagnostic;
use crate::family::Families;
use crate::function::{Function, InstData, Value};
use crate::targets::Target;
use crate::types::Type;

/// What the verifier checks against.
#[derive(Clone, Copy)]
pub struct VerifyOptions<'a> {
    /// Tile attributes are checked against this target's limits when given.
    pub target: Option<&'a Target>,
    /// Tile attributes are checked against these families' spaces when given (without them,
    /// only their form is checked: the IR alone does not know the families).
    pub families: Option<&'a Families<'a>>,
    /// The epilogue table `epilogue` attributes must name an entry of.
    pub epilogues: &'a [EpilogueSpec],
}

impl Default for VerifyOptions<'static> {
    fn default() -> Self {
        VerifyOptions {
            target: None,
            families: None,
            epilogues: sparseflow_core::EPILOGUES,
        }
    }
}

pub(crate) struct Ctx<'f, 'd> {
    pub(crate) func: &'f Function,
    pub(crate) inst: &'f InstData,
    pub(crate) diags: &'d mut Vec<Diagnostic>,
}

impl Ctx<'_, '_> {
    pub(crate) fn err(&mut self, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            loc: self.inst.loc,
            op: self.inst.op.name().into(),
            message: message.into(),
        });
    }

    pub(crate) fn ty(&self, v: Value) -> Option<&Type> {
        self.func.values.get(v.0 as usize).map(|d| &d.ty)
    }

    pub(crate) fn operand_ty(&self, i: usize) -> Option<&Type> {
        self.inst.operands.get(i).and_then(|&v| self.ty(v))
    }

    pub(crate) fn result_ty(&self) -> Option<&Type> {
        self.inst.result.and_then(|v| self.ty(v))
    }
}
