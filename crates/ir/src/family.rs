//! What selection needs to know about a kernel family: [`FamilyModel`]. The families
//! themselves live in `crates/codegen/src/families/` (one file per family, beside its CUDA
//! template), whose `Family` trait extends this one with the template and the launch; the IR
//! never names a family. Selection, the verifier and `plan_layer` take the registry's models as
//! a [`Families`] slice, so a family registered anywhere (a test's included) is enumerated,
//! checked and ranked like the built-in ones.

use crate::kernel_config::{ConfigSpace, GemmShape, KernelConfig};
use crate::targets::Target;

/// The registered families, in registry order (ties in the ranking keep it).
pub type Families<'a> = [&'a dyn FamilyModel];

/// Whether a family competes for a token count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Eligibility {
    /// Cannot serve it (M too large, wrong architecture, shape unsupported).
    Unfit,
    /// Competes by estimate.
    Candidate,
    /// Only the families that say `Preferred` compete (the decode family below 17 tokens,
    /// where its calibration is trusted and the others' models are not).
    Preferred,
}

/// What one block of a configuration occupies on an SM: the one formula per family that
/// selection (occupancy, legality) and the launch (threads, dynamic shared memory) share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    pub threads: u32,
    /// Dynamic shared memory passed at launch (static shared memory is the template's).
    pub dynamic_smem: u32,
    /// Estimated registers per thread (the cost models' occupancy input).
    pub regs_per_thread: u32,
}

/// A legal candidate with its estimate; lower `est_us` is better.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TileChoice {
    pub config: KernelConfig,
    pub est_us: f64,
    pub compute_us: f64,
    pub dram_us: f64,
    pub l2_us: f64,
    pub blocks_per_sm: u32,
    pub grid: u64,
    pub waves: f64,
    pub wave_efficiency: f64,
}

/// A kernel family as selection sees it.
pub trait FamilyModel: Send + Sync + std::fmt::Debug {
    /// Registry and IR `family` attribute name.
    fn name(&self) -> &'static str;
    /// One line for `--explain` and docs.
    fn summary(&self) -> &'static str;
    /// The configuration space: every combination is a candidate.
    fn space(&self) -> &ConfigSpace;
    /// Largest M the family handles; `None` = any M (only such families serve a dynamic M).
    fn max_m(&self) -> Option<u64> {
        None
    }
    /// Whether the family has a template for this codegen architecture (`sm_80` … `sm_90a`).
    fn supports_arch(&self, _arch: &str) -> bool {
        true
    }
    /// Whether it competes for `m` tokens of `shape` on `target` (after `max_m` and
    /// `supports_arch`, which selection checks first).
    fn eligibility(&self, _m: u64, _shape: &GemmShape, _target: &Target) -> Eligibility {
        Eligibility::Candidate
    }
    /// The family's own rules beyond its space (e.g. tile_m against M); `Err` says why.
    fn check(&self, _cfg: &KernelConfig, _shape: &GemmShape) -> Result<(), String> {
        Ok(())
    }
    /// Whether `cfg` runs only where a tuning table measured it (checked against the float64
    /// reference and timed on that GPU): configurations whose estimate has no measurement behind
    /// it yet. Planning by the cost model alone ([`crate::select::rank`]) skips them; what
    /// `sparseflow tune` measures ([`crate::select::top_k_per_family`]) and a table's winner
    /// may include them.
    fn measured_only(&self, _cfg: &KernelConfig) -> bool {
        false
    }
    /// Threads, dynamic shared memory and registers of one block.
    fn resources(&self, cfg: &KernelConfig, dtype: sparseflow_core::DType) -> Resources;
    /// Launch grid for `Y[m, n] = X[m, k]·Wᵀ` on `target` (persistent kernels size it from
    /// the SM count).
    fn grid(&self, cfg: &KernelConfig, m: u32, n: u32, k: u32, target: &Target) -> (u32, u32, u32);
    /// Device scratch one launch on `target` needs (the runtime fills it with `WORKSPACE_EMPTY`
    /// once); a kernel whose grid follows the SM count sizes it from the same grid.
    fn workspace_bytes(
        &self,
        _cfg: &KernelConfig,
        _m: u32,
        _n: u32,
        _k: u32,
        _target: &Target,
    ) -> usize {
        0
    }
    /// Time estimate for a concrete `m`; `None` when the configuration cannot run well
    /// (spills, no block fits an SM).
    fn estimate(
        &self,
        cfg: &KernelConfig,
        shape: &GemmShape,
        m: u64,
        target: &Target,
    ) -> Option<TileChoice>;
}

/// The family registered under `name`.
pub fn find<'a>(families: &Families<'a>, name: &str) -> Option<&'a dyn FamilyModel> {
    families.iter().copied().find(|f| f.name() == name)
}

/// `"sm80, decode"`, for error messages.
pub fn names(families: &Families<'_>) -> String {
    if families.is_empty() {
        return "none registered".into();
    }
    families
        .iter()
        .map(|f| f.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The smallest M that every bounded family declines: a dynamic M is planned at least this
/// large, so its kernel comes from a family valid for any M.
pub fn first_unbounded_m(families: &Families<'_>) -> u64 {
    families
        .iter()
        .filter_map(|f| f.max_m())
        .max()
        .map_or(1, |max| max + 1)
}

/// Whether `cfg` is a point of its family's space, fits `shape` and (when given) the target.
/// `Err` says which rule failed. The one legality check of the verifier, selection and codegen.
pub fn check(
    families: &Families<'_>,
    cfg: &KernelConfig,
    shape: &GemmShape,
    target: Option<&Target>,
) -> Result<(), String> {
    let Some(family) = find(families, cfg.family) else {
        return Err(format!(
            "unknown kernel family '{}'; known: {}",
            cfg.family,
            names(families)
        ));
    };
    cfg.check_space(family.space())?;
    if let (Some(max_m), Some(m)) = (family.max_m(), shape.m) {
        if m > max_m {
            return Err(format!(
                "family '{}' handles M <= {max_m}, got M = {m}",
                cfg.family
            ));
        }
    }
    family.check(cfg, shape)?;
    let k_tiles = shape.k.div_ceil(u64::from(cfg.tile_k));
    if u64::from(cfg.split_k) > k_tiles {
        return Err(format!(
            "split_k = {} exceeds the {k_tiles} K tiles of K = {} / tile_k = {}",
            cfg.split_k, shape.k, cfg.tile_k
        ));
    }
    if let Some(t) = target {
        if !family.supports_arch(&t.arch) {
            return Err(format!(
                "family '{}' has no kernel for {} ({})",
                cfg.family, t.arch, t.name
            ));
        }
        let smem = family.resources(cfg, shape.dtype).dynamic_smem;
        if smem > t.max_smem_per_block {
            return Err(format!(
                "needs {smem} bytes of shared memory per block, {} allows {}",
                t.name, t.max_smem_per_block
            ));
        }
    }
    Ok(())
}
