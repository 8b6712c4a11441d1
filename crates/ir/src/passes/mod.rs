//! The pass registry (one file per pass, one line each here) and [`PassContext`], what every
//! pass is handed. The pass manager (`pass.rs`) depends on this module, never the reverse.

use sparseflow_core::EpilogueSpec;

use crate::error::IrError;
use crate::family::Families;
use crate::function::Module;
use crate::targets::Target;
use crate::tuning::{PlanSource, Tuning};
use crate::verify::VerifyOptions;

pub mod canonicalize;
pub mod fuse_epilogue;
pub mod select_tiles;

/// What passes may read (target, kernel families, epilogue table) and write (explanations).
pub struct PassContext<'a> {
    pub target: Option<&'a Target>,
    /// The registered kernel families (`sparseflow_codegen::Registry::models`); empty =
    /// select-tiles has nothing to choose from and the verifier checks tile attributes only
    /// for form.
    pub families: &'a Families<'a>,
    pub epilogues: &'a [EpilogueSpec],
    /// Tuning tables select-tiles consults before its cost model (none by default; the
    /// runtime's and the CLI's planning pass [`Tuning::active`]).
    pub tuning: &'a Tuning,
    /// Which source chose each `fused_sparse_gemm`'s tiles, in the order select-tiles visited
    /// them (`plan_layer` reads its one op's).
    pub tile_sources: Vec<PlanSource>,
    /// When true, passes append human-readable reasoning to `notes` (`--explain`).
    pub explain: bool,
    pub notes: Vec<String>,
}

impl<'a> PassContext<'a> {
    pub fn new(target: Option<&'a Target>) -> Self {
        PassContext {
            target,
            families: &[],
            epilogues: sparseflow_core::EPILOGUES,
            tuning: Tuning::none(),
            tile_sources: Vec::new(),
            explain: false,
            notes: Vec::new(),
        }
    }

    /// The same context choosing among `families`.
    pub fn with_families(self, families: &'a Families<'a>) -> Self {
        PassContext { families, ..self }
    }

    /// The same context consulting `tuning` before the cost model.
    pub fn with_tuning(self, tuning: &'a Tuning) -> Self {
        PassContext { tuning, ..self }
    }

    pub fn verify_options(&self) -> VerifyOptions<'a> {
        VerifyOptions {
            target: self.target,
            families: (!self.families.is_empty()).then_some(self.families),
            epilogues: self.epilogues,
        }
    }

    pub(crate) fn require_target(&self, pass: &str) -> Result<&'a Target, IrError> {
        self.target.ok_or_else(|| IrError::MissingTarget {
            pass: pass.to_string(),
            known: crate::targets::known_targets().replace(", ", "|"),
        })
    }
}

/// A named pass for `--pass-pipeline` and `--list-passes`.
pub struct PassInfo {
    pub name: &'static str,
    pub summary: &'static str,
    pub run: fn(&mut Module, &mut PassContext<'_>) -> Result<(), IrError>,
}

pub static PASSES: &[PassInfo] = &[
    PassInfo {
        name: "fuse-epilogue",
        summary: "fold single-use elementwise chains after sparse_gemm into fused_sparse_gemm {epilogue}, matching the epilogue table",
        run: fuse_epilogue::run,
    },
    PassInfo {
        name: "select-tiles",
        summary: "choose kernel family and tile sizes for each fused_sparse_gemm: a tuning table's measured winner for the target's GPU, else the target's occupancy model (needs --target; run fuse-epilogue first)",
        run: select_tiles::run,
    },
    PassInfo {
        name: "canonicalize",
        summary: "dead-code elimination, identity folding (x*1, x+0, relu(relu(x))), broadcast vector as the second operand",
        run: canonicalize::run,
    },
];
