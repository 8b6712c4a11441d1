//! `select-tiles`: writes `family, tile_m, tile_n, tile_k, warps, stages,
//! split_k` on every `fused_sparse_gemm`: a tuning table's measured winner for the target's
//! GPU (`PassContext::tuning`, precedence in `crate::tuning`) when one matches and is still
//! legal, else the cost model's best for the `--target`. Deterministic; re-running it gives
//! the same attributes. `--explain` says which source chose.
//!
//! Candidates come from the registered families (`PassContext::families`).
//! Dynamic M (`?`): uses the op's `m_hint` integer attribute if present, else
//! `select::DYNAMIC_M_DEFAULT`, at least `first_unbounded_m` so only families valid for any
//! M compete. The runtime plans each actual M (at its bucket) through `plan_layer`.
//!
//! A bare `sparse_gemm` is an error naming fuse-epilogue: tiles belong on the fused op, so
//! running select-tiles alone would otherwise silently change nothing.

use sparseflow_core::EpilogueKind;

use super::PassContext;
use crate::attrs::{Attr, Attrs};
use crate::error::{Diagnostic, IrError};
use crate::family::names;
use crate::function::{Function, Inst, Module};
use crate::kernel_config::GemmShape;
use crate::ops::Opcode;
use crate::select::{describe, first_unbounded_m, rank, DYNAMIC_M_DEFAULT};
use crate::targets::Target;
use crate::tuning::{gpu_name, PlanSource, TuningKey};
use crate::types::{Dim, Type};

/// Why select-tiles refuses a bare `sparse_gemm`.
pub const NOT_FUSED: &str = "is not fused: select-tiles chooses tiles only for sparseflow.fused_sparse_gemm; run fuse-epilogue first (--pass-pipeline=fuse-epilogue,select-tiles)";

/// Candidates shown per op by `--explain`.
const EXPLAIN_TOP: usize = 5;

pub fn run(module: &mut Module, cx: &mut PassContext<'_>) -> Result<(), IrError> {
    let target = cx.require_target("select-tiles")?;
    // Tiles live on the fused op only (the verifier rejects them on a bare GEMM), so a
    // bare `sparse_gemm` here would silently get none: say which pass must run first.
    let unfused: Vec<Diagnostic> = module
        .functions
        .iter()
        .flat_map(|f| {
            f.insts_with(Opcode::SparseGemm)
                .into_iter()
                .map(|i| Diagnostic {
                    loc: f.inst(i).loc,
                    op: Opcode::SparseGemm.name().into(),
                    message: NOT_FUSED.into(),
                })
        })
        .collect();
    if !unfused.is_empty() {
        return Err(IrError::Verify(unfused));
    }
    for f in &mut module.functions {
        for inst in f.insts_with(Opcode::FusedSparseGemm) {
            select_one(f, inst, target, cx)?;
        }
    }
    Ok(())
}

fn select_one(
    f: &mut Function,
    inst: Inst,
    target: &Target,
    cx: &mut PassContext<'_>,
) -> Result<(), IrError> {
    let data = f.inst(inst);
    let (Some(&x), Some(&w)) = (data.operands.first(), data.operands.get(1)) else {
        return Ok(()); // the verifier has already rejected this shape
    };
    let (Type::Tensor { shape, dtype }, Type::Sparse24 { n, k, .. }) =
        (f.value_type(x), f.value_type(w))
    else {
        return Ok(());
    };
    let static_m = shape.first().and_then(|d| d.as_static());
    let hint = data
        .attrs
        .get("m_hint")
        .and_then(Attr::as_int)
        .and_then(|v| u64::try_from(v).ok())
        .filter(|&v| v > 0);
    let gemm = GemmShape {
        m: static_m,
        n: *n,
        k: *k,
        dtype: *dtype,
    };
    // Dynamic M must work for every M, so only the any-M family is eligible.
    let m = match (shape.first(), static_m) {
        (_, Some(m)) => m,
        (Some(Dim::Dynamic), _) => hint
            .unwrap_or(DYNAMIC_M_DEFAULT)
            .max(first_unbounded_m(cx.families)),
        _ => DYNAMIC_M_DEFAULT,
    };
    let ranked = rank(cx.families, &gemm, m, target);
    let tuned = match (static_m, tuning_key(&data.attrs, target, &gemm, m)) {
        (None, _) => Err(PlanSource::CostModel {
            why: "M is dynamic; tuning tables hold concrete M buckets".into(),
        }),
        (_, None) => Err(PlanSource::CostModel {
            why: "no tuning key (unknown epilogue, or M beyond the buckets)".into(),
        }),
        (Some(_), Some(key)) => {
            let concrete = GemmShape { m: Some(m), ..gemm };
            cx.tuning.choose(&key, cx.families, &concrete, target)
        }
    };
    let (config, source) = match (tuned, ranked.first()) {
        (Ok(tuned), _) => tuned,
        (Err(source), Some(best)) => (best.config, source),
        (Err(_), None) => {
            let loc = data.loc.map(|l| format!("{l}: ")).unwrap_or_default();
            return Err(IrError::Plan(format!(
                "{loc}select-tiles: no legal tile configuration for M={m} N={n} K={k} {dtype} on {} (families: {})",
                target.name,
                names(cx.families)
            )));
        }
    };
    if cx.explain {
        let loc = data.loc.map(|l| format!(" at {l}")).unwrap_or_default();
        let m_text = match static_m {
            Some(m) => m.to_string(),
            None => format!("? (using {m})"),
        };
        cx.notes.push(format!(
            "select-tiles: @{}: fused_sparse_gemm{loc}: M={m_text} N={n} K={k} {dtype} on {} ({}): {} legal candidates, family {}",
            f.name, target.name, target.description, ranked.len(), config.family
        ));
        cx.notes.push(format!(
            "  chosen by {source}: {} {}",
            config.family,
            config.describe_tiles()
        ));
        for (i, c) in ranked.iter().take(EXPLAIN_TOP).enumerate() {
            cx.notes.push(format!("  #{} {}", i + 1, describe(c)));
        }
    }
    config.write_attrs(&mut f.inst_mut(inst).attrs);
    cx.tile_sources.push(source);
    Ok(())
}

/// The tuning key of one op: the target's GPU, the shape, M's bucket, the dtype and the
/// epilogue's class (`None` when the epilogue attribute or M's bucket cannot be read).
fn tuning_key(attrs: &Attrs, target: &Target, gemm: &GemmShape, m: u64) -> Option<TuningKey> {
    let epilogue = attrs
        .get("epilogue")
        .and_then(Attr::as_str)
        .and_then(|name| EpilogueKind::from_name(name).ok())?;
    TuningKey::new(gpu_name(target), gemm.n, gemm.k, m, gemm.dtype, epilogue).ok()
}
