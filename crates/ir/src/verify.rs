//! The verifier: a separate pass over the IR that collects *every* problem (not
//! just the first), each naming the op and its location. Passes are verified
//! after each run, so it must never panic on malformed arenas either: all
//! lookups here are checked.

use std::collections::HashSet;

use crate::error::{Diagnostic, IrError};
use crate::function::{Function, Inst, Module, Value, ValueDef};
use crate::ops::Opcode;
use crate::types::Type;
use crate::verify_ctx::Ctx;
use crate::verify_gemm::verify_gemm;

pub use crate::kernel_config::TILE_ATTRS;
pub use crate::verify_ctx::VerifyOptions;

pub fn verify_module(module: &Module, opts: &VerifyOptions<'_>) -> Result<(), IrError> {
    let mut diags = Vec::new();
    let mut names = HashSet::new();
    for f in &module.functions {
        if !names.insert(f.name.as_str()) {
            diags.push(func_diag(
                f,
                format!("redefinition of function @{}", f.name),
            ));
        }
        verify_function(f, opts, &mut diags);
    }
    if diags.is_empty() {
        Ok(())
    } else {
        Err(IrError::Verify(diags))
    }
}

fn func_diag(f: &Function, message: String) -> Diagnostic {
    Diagnostic {
        loc: f.loc,
        op: "func.func".into(),
        message,
    }
}

fn verify_function(f: &Function, opts: &VerifyOptions<'_>, diags: &mut Vec<Diagnostic>) {
    // Values visible so far: parameters, then results of earlier ops.
    let mut defined: HashSet<Value> = f.params.iter().copied().collect();
    let mut seen: HashSet<Inst> = HashSet::new();
    let n = f.layout.len();
    for (pos, &inst) in f.layout.iter().enumerate() {
        let Some(data) = f.insts.get(inst.0 as usize) else {
            diags.push(func_diag(
                f,
                format!("@{}: layout names a missing op", f.name),
            ));
            continue;
        };
        let mut cx = Ctx {
            func: f,
            inst: data,
            diags,
        };
        if !seen.insert(inst) {
            cx.err("appears twice in the function body");
        }
        for (i, &v) in data.operands.iter().enumerate() {
            if !defined.contains(&v) {
                cx.err(format!(
                    "operand #{i} is used before it is defined (or its definition was removed)"
                ));
            }
        }
        if data.op.has_result() != data.result.is_some() {
            cx.err("result count does not match the op");
        }
        if data.op == Opcode::Return {
            if pos + 1 != n {
                cx.err("must be the last op of the function");
            }
            verify_return(&mut cx, f);
        } else {
            verify_op(&mut cx, opts);
        }
        if let Some(r) = data.result {
            let ok =
                matches!(f.values.get(r.0 as usize), Some(d) if d.def == ValueDef::Result(inst));
            if !ok || !defined.insert(r) {
                cx.err("result is defined twice or not owned by this op");
            }
        }
    }
    let has_return = f
        .layout
        .last()
        .and_then(|&i| f.insts.get(i.0 as usize))
        .map(|d| d.op)
        == Some(Opcode::Return);
    if !has_return {
        diags.push(func_diag(
            f,
            format!("@{}: body must end with 'return'", f.name),
        ));
    }
}

fn verify_return(cx: &mut Ctx<'_, '_>, f: &Function) {
    let got: Vec<Option<&Type>> = (0..cx.inst.operands.len())
        .map(|i| cx.operand_ty(i))
        .collect();
    if got.len() != f.result_types.len()
        || got.iter().zip(&f.result_types).any(|(g, e)| *g != Some(e))
    {
        let want: Vec<String> = f.result_types.iter().map(|t| t.to_string()).collect();
        cx.err(format!(
            "returns values whose types do not match the function's result types ({})",
            want.join(", ")
        ));
    }
}

/// How the operands of a binary elementwise op fit together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinaryForm {
    /// `op %t, %t` or `op %t, %vector`: the result has the left operand's type.
    Canonical,
    /// `op %vector, %t` of a commutative op: the result has the right operand's type;
    /// canonicalize swaps the operands into the canonical form.
    Commuted,
}

impl BinaryForm {
    pub(crate) fn result_type<'t>(self, lhs: &'t Type, rhs: &'t Type) -> &'t Type {
        match self {
            BinaryForm::Canonical => lhs,
            BinaryForm::Commuted => rhs,
        }
    }
}

/// `None` when the operand types do not fit: a binary op takes two tensors of one type,
/// or a tensor and a row vector (`tensor<N x dt>` for a `tensor<... x N x dt>`) broadcast
/// over its rows, the vector second, or first when the op is commutative.
pub(crate) fn binary_form(op: Opcode, lhs: &Type, rhs: &Type) -> Option<BinaryForm> {
    let dense = |t: &Type| matches!(t, Type::Tensor { .. });
    if !dense(lhs) || !dense(rhs) {
        return None;
    }
    if rhs == lhs || lhs.row_vector().as_ref() == Some(rhs) {
        Some(BinaryForm::Canonical)
    } else if op.is_commutative() && rhs.row_vector().as_ref() == Some(lhs) {
        Some(BinaryForm::Commuted)
    } else {
        None
    }
}

fn verify_op(cx: &mut Ctx<'_, '_>, opts: &VerifyOptions<'_>) {
    let op = cx.inst.op;
    let n_ops = cx.inst.operands.len();
    match op {
        Opcode::SparseGemm | Opcode::FusedSparseGemm => verify_gemm(cx, opts),
        _ if op.is_unary_elementwise() => {
            if n_ops != 1 {
                return cx.err(format!("expects 1 operand, got {n_ops}"));
            }
            let (x, r) = (cx.operand_ty(0).cloned(), cx.result_ty().cloned());
            if !matches!(x, Some(Type::Tensor { .. })) {
                cx.err("operand must be a dense tensor");
            } else if x != r {
                cx.err("result type must equal the operand type");
            }
        }
        _ if op.is_binary_elementwise() => {
            if n_ops != 2 {
                return cx.err(format!("expects 2 operands, got {n_ops}"));
            }
            let (Some(lhs @ Type::Tensor { .. }), Some(rhs @ Type::Tensor { .. })) =
                (cx.operand_ty(0).cloned(), cx.operand_ty(1).cloned())
            else {
                return cx.err("operands must be dense tensors");
            };
            let Some(form) = binary_form(op, &lhs, &rhs) else {
                // Name the mismatch against the tensor the other operand would broadcast over.
                let rank = |t: &Type| t.shape().map_or(0, <[_]>::len);
                let (side, full, other) = if op.is_commutative() && rank(&rhs) > rank(&lhs) {
                    ("left", &rhs, &lhs)
                } else {
                    ("right", &lhs, &rhs)
                };
                let vector = full.row_vector().unwrap_or_else(|| full.clone());
                return cx.err(format!(
                    "{side} operand must be {full} or a vector {vector} broadcast over rows, got {other}"
                ));
            };
            let want = form.result_type(&lhs, &rhs);
            if cx.result_ty() != Some(want) {
                cx.err(format!("result type must be {want}"));
            }
        }
        Opcode::Constant => {
            if n_ops != 0 {
                cx.err("takes no operands");
            }
            if cx
                .inst
                .attrs
                .get("value")
                .and_then(|a| a.as_float())
                .is_none()
            {
                cx.err("needs a numeric 'value' attribute (the splat value)");
            }
            if !matches!(cx.result_ty(), Some(Type::Tensor { .. })) {
                cx.err("result must be a dense tensor");
            }
        }
        _ => cx.err("unexpected op here"),
    }
}
