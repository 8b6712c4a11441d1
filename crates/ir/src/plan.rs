//! `plan_layer`: the runtime's entry. Builds the IR of one layer (sparse_gemm +
//! the epilogue's elementwise tail) with the builder, runs
//! `fuse-epilogue,select-tiles,canonicalize` with verification after each pass,
//! and reads the decision back from the fused op. Going through the real passes
//! (instead of calling the selector directly) keeps the runtime and
//! `sparseflow opt` on one code path. Cost: a few dozen candidates, microseconds.

use sparseflow_core::{DType, EpilogueKind};

use crate::attrs::Attr;
use crate::builder::FunctionBuilder;
use crate::error::IrError;
use crate::function::Module;
use crate::ops::Opcode;
use crate::pass::{PassContext, PassManager};
use crate::print::print_module;
use crate::targets::target as lookup_target;
use crate::types::{check_dim, Dim, Type, MAX_DIM};

/// The kernel decision for one layer shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerPlan {
    pub family: String,
    pub epilogue: EpilogueKind,
    pub tile_m: u32,
    pub tile_n: u32,
    pub tile_k: u32,
    pub warps: u32,
    pub stages: u32,
    pub split_k: u32,
    /// The optimized IR, for logs and `SPARSEFLOW_DUMP`-style debugging.
    pub ir_text: String,
}

pub const PLAN_PIPELINE: &str = "fuse-epilogue,select-tiles,canonicalize";

/// Plans `Y[m×n] = epilogue(X[m×k] · Wᵀ [+ b])` on `target` (e.g. `"sm_90a"`).
pub fn plan_layer(
    m: usize,
    n: usize,
    k: usize,
    dtype: DType,
    epilogue: EpilogueKind,
    target: &str,
) -> Result<LayerPlan, IrError> {
    let t = lookup_target(target)?;
    if m == 0 || n == 0 || k == 0 {
        return Err(IrError::Plan(format!(
            "plan_layer: dimensions must be >= 1, got M={m} N={n} K={k}"
        )));
    }
    let (m, n, k) = (m as u64, n as u64, k as u64);
    // M may be the runtime's bucket: the next power of two of an M <= MAX_DIM, so up to
    // MAX_DIM + 1. The tiles chosen for MAX_DIM serve it; a larger M is refused.
    let max_bucket = MAX_DIM + 1;
    if m > max_bucket {
        return Err(IrError::Plan(format!(
            "plan_layer: M = {m} exceeds the kernels' 32-bit limit of {MAX_DIM} (i32::MAX); split the batch"
        )));
    }
    let m = m.min(MAX_DIM);
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

    let mut cx = PassContext::new(Some(t));
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
    let int = |key: &str| {
        attrs
            .get(key)
            .and_then(Attr::as_int)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| IrError::Plan(format!("plan_layer: fused op lacks '{key}'")))
    };
    let name = attrs.get("epilogue").and_then(Attr::as_str).unwrap_or("");
    let fused_kind = EpilogueKind::from_name(name).map_err(|e| IrError::Plan(e.to_string()))?;
    if fused_kind != epilogue {
        return Err(IrError::Plan(format!(
            "plan_layer: fusion produced epilogue '{name}' instead of '{}'",
            spec.name
        )));
    }
    Ok(LayerPlan {
        family: attrs
            .get("family")
            .and_then(Attr::as_str)
            .unwrap_or("")
            .to_string(),
        epilogue,
        tile_m: int("tile_m")?,
        tile_n: int("tile_n")?,
        tile_k: int("tile_k")?,
        warps: int("warps")?,
        stages: int("stages")?,
        split_k: int("split_k")?,
        ir_text: print_module(&module),
    })
}
