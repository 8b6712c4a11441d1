//! `plan_layer`: the runtime's entry. Builds the IR of one layer (sparse_gemm +
//! the epilogue's elementwise tail) with the builder, runs
//! `fuse-epilogue,select-tiles,canonicalize` with verification after each pass,
//! and reads the decision back from the fused op. Going through the real passes
//! (instead of calling the selector directly) keeps the runtime and
//! `sparseflow opt` on one code path. Cost: a few dozen candidates, microseconds.

use sparseflow_core::{DType, EpilogueKind};

use crate::builder::FunctionBuilder;
use crate::error::IrError;
use crate::family::{find, Families};
use crate::function::Module;
use crate::kernel_config::KernelConfig;
use crate::ops::Opcode;
use crate::pass::PassManager;
use crate::passes::PassContext;
use crate::print::print_module;
use crate::select::m_bucket;
use crate::targets::Target;
use crate::tuning::{PlanSource, Tuning};
use crate::types::{check_dim, Dim, Type, MAX_DIM};

/// One layer call: `Y[m×n] = epilogue(X[m×k] · Wᵀ [+ b])`, M the actual token count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerProblem {
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub dtype: DType,
    pub epilogue: EpilogueKind,
}

/// The kernel decision for one layer shape and M bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerPlan {
    pub config: KernelConfig,
    pub epilogue: EpilogueKind,
    /// The M the plan was made for ([`m_bucket`] of the problem's M).
    pub bucket_m: u64,
    /// Which source chose `config`: a tuning table's measurement or the cost model.
    pub source: PlanSource,
    /// The optimized IR, for logs and `SPARSEFLOW_DUMP`-style debugging.
    pub ir_text: String,
}

pub const PLAN_PIPELINE: &str = "fuse-epilogue,select-tiles,canonicalize";

/// Plans `p` on `target` among `families`: M is planned at its bucket ([`m_bucket`]), so two
/// calls whose M share a bucket get the same kernel, whoever calls. `tuning`'s measured winner
/// for the call's key is taken before the cost model (select-tiles decides; see
/// [`crate::tuning`]).
pub fn plan_layer(
    p: &LayerProblem,
    target: &Target,
    families: &Families<'_>,
    tuning: &Tuning,
) -> Result<LayerPlan, IrError> {
    let LayerProblem {
        n,
        k,
        dtype,
        epilogue,
        ..
    } = *p;
    if p.m == 0 || n == 0 || k == 0 {
        return Err(IrError::Plan(format!(
            "plan_layer: dimensions must be >= 1, got M={} N={n} K={k}",
            p.m
        )));
    }
    let bucket_m = m_bucket(p.m)?;
    // The bucket of an M <= MAX_DIM may be MAX_DIM + 1 (2^31): the tiles chosen for MAX_DIM
    // serve it.
    let m = bucket_m.min(MAX_DIM);
    for (name, value) in [("N", n), ("K", k)] {
        check_dim(name, value).map_err(|why| IrError::Plan(format!("plan_layer: {why}")))?;
    }
    let spec = epilogue.spec();

    let mut b = FunctionBuilder::new("layer");
    let x = b.param("x", Type::tensor(&[Dim::Static(m), Dim::Static(k)], dtype));
    let w = b.param("w", Type::Sparse24 { n, k, dtype });
    let bias = spec
        .uses_bias
        .then(|| b.param("b", Type::tensor(&[Dim::Static(n)], dtype)));
    let mut y = b.sparse_gemm(x, w)?;
    for &op in spec.ops {
        y = b.elementwise(op, y, bias)?;
    }
    let mut module = Module {
        functions: vec![b.ret(&[y])],
    };

    let mut cx = PassContext::new(Some(target))
        .with_families(families)
        .with_tuning(tuning);
    PassManager::parse_pipeline(PLAN_PIPELINE)?.run(&mut module, &mut cx)?;

    let f = &module.functions[0];
    let fused = f.insts_with(Opcode::FusedSparseGemm);
    let [inst] = fused[..] else {
        return Err(IrError::Plan(format!(
            "plan_layer: expected one fused_sparse_gemm after fusion, found {}",
            fused.len()
        )));
    };
    let attrs = &f.inst(inst).attrs;
    let config = KernelConfig::read_attrs(attrs, |name| find(families, name).map(|f| f.name()))
        .map_err(|why| IrError::Plan(format!("plan_layer: fused op: {why}")))?;
    let name = attrs
        .get("epilogue")
        .and_then(crate::attrs::Attr::as_str)
        .unwrap_or("");
    let fused_kind = EpilogueKind::from_name(name).map_err(|e| IrError::Plan(e.to_string()))?;
    if fused_kind != epilogue {
        return Err(IrError::Plan(format!(
            "plan_layer: fusion produced epilogue '{name}' instead of '{}'",
            spec.name
        )));
    }
    let [source] = &cx.tile_sources[..] else {
        return Err(IrError::Plan(format!(
            "plan_layer: select-tiles recorded {} sources for one op",
            cx.tile_sources.len()
        )));
    };
    Ok(LayerPlan {
        config,
        epilogue,
        bucket_m,
        source: source.clone(),
        ir_text: print_module(&module),
    })
}
