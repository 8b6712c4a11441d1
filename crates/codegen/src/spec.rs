//! What a kernel is: family, dtype, epilogue, tile configuration and target. The supported
//! configuration space of each family is `sparseflow_ir::kernel_space` (the contract with
//! select-tiles); `validate` checks a spec against it.

use crate::error::CodegenError;
use sparseflow_core::{DType, EpilogueKind};
use sparseflow_ir::kernel_space::{self, FamilySpace};
use sparseflow_ir::LayerPlan;

/// A kernel family: one template file each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelFamily {
    /// `mma.sp` + `ldmatrix` + `cp.async` ring; any M (sm_80 and newer).
    Sm80,
    /// Weight streaming for small M (token tiles of 8 or 16; up to M = 64 as grid.z) with
    /// split-K: each output tile's last split is its reducer, summing the peers' fp32 partials
    /// from the workspace and applying the epilogue (kernels/README.md, "decode family").
    Decode,
}

impl KernelFamily {
    /// The IR / selector spelling (`"sm80"`, `"decode"`).
    pub fn name(self) -> &'static str {
        match self {
            KernelFamily::Sm80 => "sm80",
            KernelFamily::Decode => "decode",
        }
    }

    pub fn from_name(name: &str) -> Result<Self, CodegenError> {
        match name {
            "sm80" => Ok(KernelFamily::Sm80),
            "decode" => Ok(KernelFamily::Decode),
            other => Err(CodegenError::Unsupported(format!(
                "unknown kernel family {other:?} (known: sm80, decode)"
            ))),
        }
    }
}

/// Targets the code generator accepts (sm_80 or newer); CI compiles these.
pub const TARGETS: &[&str] = &["sm_80", "sm_86", "sm_89", "sm_90a"];

/// Everything that determines one generated kernel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KernelSpec {
    pub family: KernelFamily,
    pub dtype: DType,
    pub epilogue: EpilogueKind,
    pub tile_m: u32,
    pub tile_n: u32,
    pub tile_k: u32,
    pub warps: u32,
    pub stages: u32,
    pub split_k: u32,
    /// `"sm_80"` … `"sm_90a"`.
    pub target: String,
}

impl KernelFamily {
    /// The family's configuration space: `sparseflow_ir::kernel_space` is the one contract
    /// between select-tiles and these templates.
    pub fn space(self) -> &'static FamilySpace {
        match self {
            KernelFamily::Sm80 => &kernel_space::SM80,
            KernelFamily::Decode => &kernel_space::DECODE,
        }
    }
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

impl KernelSpec {
    /// The kernel for one planned layer (`sparseflow_ir::plan_layer`'s output).
    pub fn from_plan(plan: &LayerPlan, dtype: DType, target: &str) -> Result<Self, CodegenError> {
        let spec = KernelSpec {
            family: KernelFamily::from_name(&plan.family)?,
            dtype,
            epilogue: plan.epilogue,
            tile_m: plan.tile_m,
            tile_n: plan.tile_n,
            tile_k: plan.tile_k,
            warps: plan.warps,
            stages: plan.stages,
            split_k: plan.split_k,
            target: target.to_string(),
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Checks the spec against its family's space and the target.
    pub fn validate(&self) -> Result<(), CodegenError> {
        parse_target(&self.target)?;
        if !matches!(self.dtype, DType::F16 | DType::BF16) {
            return Err(CodegenError::Unsupported(format!(
                "dtype {} (sparse kernels take f16 or bf16)",
                self.dtype
            )));
        }
        let space = self.family.space();
        let check = |what: &str, v: u32, allowed: &[u32]| {
            if allowed.contains(&v) {
                Ok(())
            } else {
                Err(CodegenError::Unsupported(format!(
                    "{} family: {what} = {v} not in {allowed:?}",
                    self.family.name()
                )))
            }
        };
        check("tile_m", self.tile_m, space.tile_m)?;
        check("tile_n", self.tile_n, space.tile_n)?;
        check("tile_k", self.tile_k, space.tile_k)?;
        check("warps", self.warps, space.warps)?;
        check("stages", self.stages, space.stages)?;
        check("split_k", self.split_k, space.split_k)?;
        if self.family == KernelFamily::Sm80 && self.tile_m / (self.warps / 2) < 8 {
            return Err(CodegenError::Unsupported(format!(
                "sm80 family: tile_m {} over {} token-warps leaves fewer than 8 tokens per warp",
                self.tile_m,
                self.warps / 2
            )));
        }
        Ok(())
    }

    /// Every (tile_m, tile_n, tile_k, warps, stages, split_k) of a family's space, for one
    /// dtype / epilogue / target.
    pub fn enumerate(
        family: KernelFamily,
        dtype: DType,
        epilogue: EpilogueKind,
        target: &str,
    ) -> Vec<KernelSpec> {
        kernel_space::candidates(family.space())
            .map(|c| KernelSpec {
                family,
                dtype,
                epilogue,
                tile_m: c.tile_m,
                tile_n: c.tile_n,
                tile_k: c.tile_k,
                warps: c.warps,
                stages: c.stages,
                split_k: c.split_k,
                target: target.to_string(),
            })
            .filter(|spec| spec.validate().is_ok())
            .collect()
    }
}
