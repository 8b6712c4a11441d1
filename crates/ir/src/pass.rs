//! The pass manager: runs named passes in order and verifies the IR before the
//! first pass and after each one, so a buggy pass is caught at the pass that
//! broke the IR rather than in the code generator.

use crate::error::IrError;
use crate::function::Module;
// `PassContext` lives with the registry (what every pass is handed), so the passes need
// nothing from the manager and the dependency runs one way: pass -> passes.
use crate::passes::{PassContext, PassInfo, PASSES};
use crate::verify::verify_module;

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
