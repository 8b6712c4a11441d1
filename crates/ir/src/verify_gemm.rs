//! Verifier rules of `sparse_gemm` / `fused_sparse_gemm`: shapes and dtypes per the
//! GEMM convention of docs/FORMAT.md, epilogue names from the table, and tile attributes
//! legal for the kernel space and the target.

use crate::attrs::Attr;
use crate::family::{check, find, names};
use crate::kernel_config::{GemmShape, KernelConfig, TILE_ATTRS};
use crate::ops::Opcode;
use crate::types::{check_dim, Dim, Type};
use crate::verify_ctx::{Ctx, VerifyOptions};

pub(crate) fn verify_gemm(cx: &mut Ctx<'_, '_>, opts: &VerifyOptions<'_>) {
    let fused = cx.inst.op == Opcode::FusedSparseGemm;
    let n_ops = cx.inst.operands.len();
    if n_ops != 2 && !(fused && n_ops == 3) {
        let want = if fused {
            "2 or 3 operands (X, W[, bias])"
        } else {
            "2 operands (X, W)"
        };
        return cx.err(format!("expects {want}, got {n_ops}"));
    }
    let (
        Some(Type::Tensor {
            shape: xs,
            dtype: xd,
        }),
        Some(&Type::Sparse24 { n, k, dtype: wd }),
    ) = (
        cx.operand_ty(0).cloned(),
        cx.operand_ty(1).cloned().as_ref(),
    )
    else {
        return cx.err("expects X: tensor<MxKxdt> and W: !sparseflow.sparse24<NxKxdt>");
    };
    let [m, xk] = xs[..] else {
        return cx.err(format!("X must be 2-D [M, K], got rank {}", xs.len()));
    };
    if xd != wd {
        cx.err(format!(
            "X is {xd} but W is {wd}; both must have the same dtype"
        ));
    }
    if n == 0 || k == 0 || m == Dim::Static(0) {
        cx.err("dimensions must be at least 1");
    }
    for (name, value) in [("M", m.as_static()), ("N", Some(n)), ("K", Some(k))] {
        if let Some(Err(why)) = value.map(|v| check_dim(name, v)) {
            cx.err(why);
        }
    }
    if xk != Dim::Static(k) {
        cx.err(format!("X's K ({xk}) does not match W's K ({k})"));
    }
    if k % 4 != 0 {
        cx.err(format!(
            "K ({k}) must be a multiple of 4 (2:4 groups run along K)"
        ));
    }
    let want = Type::Tensor {
        shape: vec![m, Dim::Static(n)],
        dtype: xd,
    };
    if cx.result_ty() != Some(&want) {
        let got = cx
            .result_ty()
            .map(|t| t.to_string())
            .unwrap_or_else(|| "nothing".into());
        cx.err(format!("result must be {want}, got {got}"));
    }
    if !fused {
        // Tiles are chosen for the fused op the code generator lowers; on a bare
        // GEMM they would be carried into fusion unchecked.
        let tiles: Vec<&str> = TILE_ATTRS
            .iter()
            .copied()
            .filter(|a| cx.inst.attrs.contains(a))
            .collect();
        if !tiles.is_empty() {
            cx.err(format!(
                "tile attributes ({}) belong on sparseflow.fused_sparse_gemm; run fuse-epilogue first",
                tiles.join(", ")
            ));
        }
        return;
    }
    let Some(name) = cx
        .inst
        .attrs
        .get("epilogue")
        .and_then(|a| a.as_str())
        .map(str::to_string)
    else {
        return cx.err("needs a string attribute 'epilogue'");
    };
    match opts.epilogues.iter().find(|e| e.name == name) {
        None => {
            let known: Vec<&str> = opts.epilogues.iter().map(|e| e.name).collect();
            cx.err(format!(
                "unknown epilogue '{name}'; known: {}",
                known.join(", ")
            ));
        }
        Some(spec) if spec.uses_bias != (n_ops == 3) => {
            let why = if spec.uses_bias {
                "needs a bias operand"
            } else {
                "takes no bias operand"
            };
            cx.err(format!("epilogue '{name}' {why}"));
        }
        Some(_) => {}
    }
    if n_ops == 3 {
        let bias = Type::Tensor {
            shape: vec![Dim::Static(n)],
            dtype: xd,
        };
        if cx.operand_ty(2) != Some(&bias) {
            cx.err(format!("bias must be {bias}"));
        }
    }
    verify_tiles(
        cx,
        GemmShape {
            m: m.as_static(),
            n,
            k,
            dtype: xd,
        },
        opts,
    );
}

fn verify_tiles(cx: &mut Ctx<'_, '_>, shape: GemmShape, opts: &VerifyOptions<'_>) {
    let attrs = &cx.inst.attrs;
    let present: Vec<&str> = TILE_ATTRS
        .iter()
        .copied()
        .filter(|a| attrs.contains(a))
        .collect();
    if present.is_empty() {
        return;
    }
    if present.len() != TILE_ATTRS.len() {
        let missing: Vec<&str> = TILE_ATTRS
            .iter()
            .copied()
            .filter(|a| !attrs.contains(a))
            .collect();
        return cx.err(format!(
            "tile attributes are all-or-nothing; missing {}",
            missing.join(", ")
        ));
    }
    let form_ok = attrs.get("family").and_then(Attr::as_str).is_some()
        && TILE_ATTRS[1..].iter().all(|key| {
            attrs
                .get(key)
                .and_then(Attr::as_int)
                .is_some_and(|v| u32::try_from(v).is_ok())
        });
    let families = opts.families.unwrap_or(&[]);
    let known = match opts.families {
        Some(f) => format!("one of {}", names(f)),
        None => "a string".into(),
    };
    let cfg = match opts.families {
        // Without the registry only the form can be checked.
        None if form_ok => return,
        _ if !form_ok => Err(String::new()),
        _ => KernelConfig::read_attrs(attrs, |name| find(families, name).map(|f| f.name())),
    };
    let Ok(cfg) = cfg else {
        return cx.err(format!(
            "tile attributes need family = {known} and non-negative integer tile_m/tile_n/tile_k/warps/stages/split_k"
        ));
    };
    if let Err(why) = check(families, &cfg, &shape, opts.target) {
        cx.err(format!("illegal tile configuration: {why}"));
    }
}
