//! What a kernel is: a [`KernelConfig`] (family + tiles) for a dtype, an epilogue and a codegen
//! architecture. Checking a spec against its family is the registry's job
//! ([`Registry::validate`](crate::Registry::validate)), with the same rules selection uses.

use crate::error::CodegenError;
use sparseflow_core::{DType, EpilogueKind};
use sparseflow_ir::KernelConfig;

/// Architectures the code generator accepts (sm_80 or newer); CI compiles these.
pub const TARGETS: &[&str] = &["sm_80", "sm_86", "sm_89", "sm_90a"];

/// Everything that determines one generated kernel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KernelSpec {
    pub config: KernelConfig,
    pub dtype: DType,
    pub epilogue: EpilogueKind,
    /// Codegen architecture: `"sm_80"` … `"sm_90a"` (a target's `arch`).
    pub target: String,
}

/// `"sm_90a"` → (90, true). Anything older than sm_80 has no sparse tensor cores.
pub fn parse_target(target: &str) -> Result<(u32, bool), CodegenError> {
    let bad = || {
        CodegenError::Unsupported(format!(
            "target {target:?}: expected sm_XX with XX >= 80 (e.g. sm_80, sm_86, sm_89, sm_90a); \
             2:4 sparse tensor cores need sm_80 or newer"
        ))
    };
    let rest = target.strip_prefix("sm_").ok_or_else(bad)?;
    let (digits, arch_specific) = match rest.strip_suffix('a') {
        Some(d) => (d, true),
        None => (rest, false),
    };
    let cc: u32 = digits.parse().map_err(|_| bad())?;
    if cc < 80 {
        return Err(bad());
    }
    Ok((cc, arch_specific))
}
