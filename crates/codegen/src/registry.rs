//! The one list of kernel families. Selection (through [`Registry::models`]), codegen, the
//! runtime and `sparseflow compile` all iterate a `Registry`; [`Registry::builtin`] is the
//! library's, and [`Registry::with`] adds a family (tests register their own this way).

use std::sync::OnceLock;

use sparseflow_core::{DType, EpilogueKind};
use sparseflow_ir::family::check;
use sparseflow_ir::kernel_config::candidates;
use sparseflow_ir::select::m_bucket;
use sparseflow_ir::{
    plan_layer, FamilyModel, GemmShape, IrError, KernelConfig, LayerPlan, LayerProblem, Target,
    Tuning, MAX_DIM,
};

use crate::error::CodegenError;
use crate::families::{
    DECODE, SM80, SM90, SM90_ASYNC, SM90_CLUSTER2, SM90_CLUSTER4, SM90_DEEP, SM90_STREAMK,
};
use crate::family::Family;
use crate::generate::{generate_with, GeneratedKernel};
use crate::spec::{parse_target, KernelSpec};

/// Registered families, in registration order.
#[derive(Debug, Clone)]
pub struct Registry {
    families: Vec<&'static dyn Family>,
    /// The same families as selection sees them (for `sparseflow_ir`'s `Families`).
    models: Vec<&'static dyn FamilyModel>,
}

/// A planned layer: the IR's decision and the kernel that implements it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedKernel {
    pub plan: LayerPlan,
    pub spec: KernelSpec,
}

impl Registry {
    /// The library's families: `sm80` (any M), `decode` (M ≤ 64), `sm90` (M > 16, sm_90a;
    /// token tiles up to M's bucket), `sm90a` (sm90's asynchronous, persistent loop), `sm90d2`
    /// (sm90a with two stages of wgmmas in flight), `sm90sk` (sm90a with a stream-K schedule),
    /// `sm90c2` and `sm90c4` (sm90a in 2- and 4-CTA multicast clusters) — the last five
    /// measured-only: selected by tuning tables alone.
    pub fn builtin() -> &'static Registry {
        static BUILTIN: OnceLock<Registry> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            Registry::new(&[
                &SM80,
                &DECODE,
                &SM90,
                &SM90_ASYNC,
                &SM90_DEEP,
                &SM90_STREAMK,
                &SM90_CLUSTER2,
                &SM90_CLUSTER4,
            ])
        })
    }

    /// A registry of exactly these families. Panics on a repeated name (a programming error).
    pub fn new(families: &[&'static dyn Family]) -> Registry {
        families.iter().fold(Registry::empty(), |r, &f| r.with(f))
    }

    fn empty() -> Registry {
        Registry {
            families: Vec::new(),
            models: Vec::new(),
        }
    }

    /// This registry plus `family`. Panics when its name is taken.
    pub fn with(mut self, family: &'static dyn Family) -> Registry {
        assert!(
            self.find(family.name()).is_none(),
            "kernel family '{}' registered twice",
            family.name()
        );
        self.families.push(family);
        self.models.push(family);
        self
    }

    pub fn families(&self) -> &[&'static dyn Family] {
        &self.families
    }

    /// The families as selection's `sparseflow_ir::Families`.
    pub fn models(&self) -> &[&'static dyn FamilyModel] {
        &self.models
    }

    fn find(&self, name: &str) -> Option<&'static dyn Family> {
        self.families.iter().copied().find(|f| f.name() == name)
    }

    /// The family registered under `name`.
    pub fn get(&self, name: &str) -> Result<&'static dyn Family, CodegenError> {
        self.find(name).ok_or_else(|| {
            CodegenError::Unsupported(format!(
                "unknown kernel family {name:?} (known: {})",
                sparseflow_ir::family::names(self.models())
            ))
        })
    }

    /// Plans one layer call: `sparseflow_ir::plan_layer` (M at its bucket) over these
    /// families with the process's tuning tables ([`Tuning::active`]: `$SPARSEFLOW_TUNING`,
    /// then the embedded tables, then the cost model), and the kernel spec for `target`'s
    /// architecture. The one function from (shape, M, epilogue, dtype, target) to a kernel:
    /// the runtime, `sparseflow compile` and the benchmark call it. Errors are planning errors
    /// (the IR's, an unusable `$SPARSEFLOW_TUNING` file among them): selection only picks
    /// configurations the registry validates, so a spec it refuses is a bug in a family.
    pub fn plan(&self, p: &LayerProblem, target: &Target) -> Result<PlannedKernel, IrError> {
        self.plan_with(p, target, Tuning::active()?)
    }

    /// [`Registry::plan`] with these tuning tables instead of the process's.
    pub fn plan_with(
        &self,
        p: &LayerProblem,
        target: &Target,
        tuning: &Tuning,
    ) -> Result<PlannedKernel, IrError> {
        let plan = plan_layer(p, target, self.models(), tuning)?;
        let spec = self.spec(plan.config, p, target).map_err(|e| {
            IrError::Plan(format!(
                "the planned kernel is not valid (a family bug): {e}"
            ))
        })?;
        Ok(PlannedKernel { plan, spec })
    }

    /// The kernel of an explicit configuration for `p` (M at its bucket) on `target`, where
    /// planning would choose one (`sparseflow tune` measures candidates this way): `Err` says
    /// why `config` cannot serve the call (the legality check selection applies).
    pub fn kernel_for(
        &self,
        p: &LayerProblem,
        target: &Target,
        config: KernelConfig,
    ) -> Result<KernelSpec, IrError> {
        let shape = GemmShape {
            m: Some(m_bucket(p.m)?.min(MAX_DIM)),
            n: p.n,
            k: p.k,
            dtype: p.dtype,
        };
        let refused = |why: String| {
            IrError::Plan(format!(
                "{} {} cannot serve M={} N={} K={} {} on {}: {why}",
                config.family,
                config.describe_tiles(),
                p.m,
                p.n,
                p.k,
                p.dtype,
                target.name
            ))
        };
        check(self.models(), &config, &shape, Some(target)).map_err(refused)?;
        self.spec(config, p, target)
            .map_err(|e| refused(e.to_string()))
    }

    /// The spec of `config` for `p` on `target`'s architecture, validated.
    fn spec(
        &self,
        config: KernelConfig,
        p: &LayerProblem,
        target: &Target,
    ) -> Result<KernelSpec, CodegenError> {
        let spec = KernelSpec {
            config,
            dtype: p.dtype,
            epilogue: p.epilogue,
            target: target.arch.to_string(),
        };
        self.validate(&spec)?;
        Ok(spec)
    }

    /// Checks a spec against its family (space, rules, architecture) and the dtype.
    pub fn validate(&self, spec: &KernelSpec) -> Result<&'static dyn Family, CodegenError> {
        parse_target(&spec.target)?;
        if !matches!(spec.dtype, DType::F16 | DType::BF16) {
            return Err(CodegenError::Unsupported(format!(
                "dtype {} (sparse kernels take f16 or bf16)",
                spec.dtype
            )));
        }
        let family = self.get(spec.config.family)?;
        if !family.supports_arch(&spec.target) {
            return Err(CodegenError::Unsupported(format!(
                "{} family: no kernel for {}",
                family.name(),
                spec.target
            )));
        }
        // The space and the family's own rules; shape-dependent rules pass with a shape that
        // satisfies them (M unknown, K large).
        let any_shape = GemmShape {
            m: None,
            n: 1 << 16,
            k: 1 << 20,
            dtype: spec.dtype,
        };
        check(self.models(), &spec.config, &any_shape, None)
            .map_err(|why| CodegenError::Unsupported(format!("{} family: {why}", family.name())))?;
        Ok(family)
    }

    /// The CUDA source of `spec`.
    pub fn generate(&self, spec: &KernelSpec) -> Result<GeneratedKernel, CodegenError> {
        let family = self.validate(spec)?;
        generate_with(family, spec)
    }

    /// Every valid configuration of `family`'s space for one dtype / epilogue / architecture
    /// (none when the family has no kernel for it).
    pub fn enumerate(
        &self,
        family: &str,
        dtype: DType,
        epilogue: EpilogueKind,
        target: &str,
    ) -> Result<Vec<KernelSpec>, CodegenError> {
        let f = self.get(family)?;
        Ok(candidates(f.name(), f.space())
            .map(|config| KernelSpec {
                config,
                dtype,
                epilogue,
                target: target.to_string(),
            })
            .filter(|spec| self.validate(spec).is_ok())
            .collect())
    }
}

/// [`Registry::generate`] on the built-in registry.
pub fn generate(spec: &KernelSpec) -> Result<GeneratedKernel, CodegenError> {
    Registry::builtin().generate(spec)
}
