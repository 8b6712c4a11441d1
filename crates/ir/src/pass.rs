//! The pass manager: runs named passes in order and verifies the IR before the
//! first pass and after each one, so a buggy pass is caught at the pass that
//! broke the IR rather than in the code generator.

use sparseflow_core::EpilogueSpec;

use crate::error::IrError;
use crate::family::Families;
use crate::function::Module;
use crate::passes::{PassInfo, PASSES};
use crate::targets::Target;
use crate::verify::{verify_module, VerifyOptions};

/// What passes may read (target, kernel families, epilogue table) and write (explanations).
pub struct PassContext<'a> {
    pub target: Option<&'a Target>,
    /// The registered kernel families (`sparseflow_codegen::Registry::models`); empty =
    /// select-tiles has nothing to choose from and the verifier checks tile attributes only
    /// for form.
    pub families: &'a Families<'a>,
    pub epilogues: &'a [EpilogueSpec],
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
            explain: false,
            notes: Vec::new(),
        }
    }

    /// The same context choosing among `families`.
    pub fn with_families(self, families: &'a Families<'a>) -> Self {
        PassContext { families, ..self }
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

/// Looks a pass up by its pipeline name.
pub fn pass_by_name(name: &str) -> Result<&'static PassInfo, IrError> {
    PASSES
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| IrError::UnknownPass {
            name: name.to_string(),
            known: PASSES.iter().map(|p| p.name).collect::<Vec<_>>().join(", "),
        })
}

pub struct PassManager {
    passes: Vec<&'static PassInfo>,
}

impl PassManager {
    pub fn new(passes: Vec<&'static PassInfo>) -> Self {
        PassManager { passes }
    }

    /// `"fuse-epilogue,select-tiles"`; blanks around names are ignored and an
    /// empty pipeline is valid (parse + verify + print only).
    pub fn parse_pipeline(pipeline: &str) -> Result<Self, IrError> {
        let passes = pipeline
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(pass_by_name)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PassManager::new(passes))
    }

    pub fn passes(&self) -> &[&'static PassInfo] {
        &self.passes
    }

    /// Verifies the input, then runs each pass and verifies after it.
    pub fn run(&self, module: &mut Module, cx: &mut PassContext<'_>) -> Result<(), IrError> {
        verify_module(module, &cx.verify_options())?;
        for pass in &self.passes {
            (pass.run)(module, cx)?;
            if let Err(err) = verify_module(module, &cx.verify_options()) {
                return Err(IrError::PassBrokeIr {
                    pass: pass.name.to_string(),
                    diagnostics: err.diagnostics().to_vec(),
                });
            }
        }
        Ok(())
    }
}
