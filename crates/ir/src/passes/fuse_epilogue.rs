//! `fuse-epilogue`: `sparse_gemm` followed by a single-use elementwise chain →
//! one `fused_sparse_gemm {epilogue = "..."}`.
//!
//! Table-driven: the pass knows nothing about particular epilogues. It collects
//! the chain after each GEMM as `ElementwiseOp`s and picks the table entry whose
//! `ops` is the longest prefix of that chain (bias+silu beats bias). A new table
//! entry is matched with no change here. A bare GEMM matches the entry with
//! empty `ops` (`none`), so every GEMM leaves this pass in the fused form the
//! code generator lowers. An already-fused op is extended when the table has an
//! entry continuing its sequence (`relu` + `arith.silu` only if such an entry exists).
//!
//! Safety rule: a value with more than one use ends the chain; fusing through it
//! would delete a value someone else reads.

use sparseflow_core::{ElementwiseOp, EpilogueSpec};

use super::PassContext;
use crate::attrs::{Attr, Attrs};
use crate::error::IrError;
use crate::function::{Function, Inst, Module, Value};
use crate::ops::Opcode;
use crate::types::{Dim, Type};

pub fn run(module: &mut Module, cx: &mut PassContext<'_>) -> Result<(), IrError> {
    for f in &mut module.functions {
        let notes = fuse_function(f, cx.epilogues);
        if cx.explain {
            cx.notes.extend(notes);
        }
    }
    Ok(())
}

struct Step {
    op: ElementwiseOp,
    inst: Inst,
    bias: Option<Value>,
}

/// Fuses every GEMM of `f` against `table`; returns one note per rewrite.
pub fn fuse_function(f: &mut Function, table: &[EpilogueSpec]) -> Vec<String> {
    let mut notes = Vec::new();
    let roots: Vec<Inst> = f
        .insts()
        .iter()
        .copied()
        .filter(|&i| matches!(f.inst(i).op, Opcode::SparseGemm | Opcode::FusedSparseGemm))
        .collect();
    for root in roots {
        if let Some(note) = fuse_root(f, root, table) {
            notes.push(format!("fuse-epilogue: @{}: {note}", f.name));
        }
    }
    notes
}

fn fuse_root(f: &mut Function, root: Inst, table: &[EpilogueSpec]) -> Option<String> {
    let data = f.inst(root).clone();
    let root_value = data.result?;
    let (base_ops, base_bias): (&[ElementwiseOp], Option<Value>) = match data.op {
        Opcode::SparseGemm => (&[], None),
        _ => {
            let name = data.attrs.get("epilogue")?.as_str()?;
            (
                table.iter().find(|e| e.name == name)?.ops,
                data.operands.get(2).copied(),
            )
        }
    };
    let steps = collect_chain(f, root_value);

    // Longest entry = base sequence + a prefix of the chain; first in table on ties.
    let mut best: Option<(&EpilogueSpec, usize, Option<Value>)> = None;
    for spec in table {
        let Some(tail) = spec.ops.strip_prefix(base_ops) else {
            continue;
        };
        if tail.len() > steps.len() || (data.op == Opcode::FusedSparseGemm && tail.is_empty()) {
            continue;
        }
        if tail.iter().zip(&steps).any(|(op, s)| *op != s.op) {
            continue;
        }
        let biases: Vec<Value> = base_bias
            .into_iter()
            .chain(steps[..tail.len()].iter().filter_map(|s| s.bias))
            .collect();
        // The fused op has one bias slot; the entry must agree on whether it is used.
        if biases.len() > 1 || spec.uses_bias != (biases.len() == 1) {
            continue;
        }
        let longer = match best {
            None => true,
            Some((b, _, _)) => spec.ops.len() > b.ops.len(),
        };
        if longer {
            best = Some((spec, tail.len(), biases.first().copied()));
        }
    }
    let (spec, taken, bias) = best?;

    let mut attrs = Attrs::new();
    attrs.set("epilogue", Attr::Str(spec.name.to_string()));
    for (k, v) in data.attrs.iter() {
        if k != "epilogue" {
            attrs.set(k, v.clone());
        }
    }
    let mut operands = data.operands.get(..2)?.to_vec();
    operands.extend(bias);
    let ty = f.value_type(root_value).clone();
    let fused = f.build_detached(Opcode::FusedSparseGemm, operands, Some(ty), attrs, data.loc);
    // Place it where the chain ended so a bias defined mid-chain still dominates it.
    let anchor = steps[..taken].last().map_or(root, |s| s.inst);
    let last_value = f.inst(anchor).result?;
    f.insert_before(fused, anchor);
    let new_value = f.inst(fused).result?;
    f.replace_all_uses(last_value, new_value);
    f.remove_inst(root);
    for s in &steps[..taken] {
        f.remove_inst(s.inst);
    }
    let loc = data.loc.map(|l| format!(" at {l}")).unwrap_or_default();
    Some(format!(
        "{}{loc} + {taken} elementwise op(s) -> epilogue '{}'",
        data.op.name(),
        spec.name
    ))
}

/// The single-use elementwise chain hanging off `start`, in order.
fn collect_chain(f: &Function, start: Value) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut cur = start;
    loop {
        let uses = f.uses(cur);
        let [user] = uses[..] else { break };
        let data = f.inst(user);
        let Some(result) = data.result else { break };
        let step = match data.op {
            op if op.is_unary_elementwise() => op.elementwise().map(|e| Step {
                op: e,
                inst: user,
                bias: None,
            }),
            Opcode::AddF => {
                let other = match data.operands[..] {
                    [a, b] if a == cur && b != cur => Some(b),
                    [a, b] if b == cur && a != cur => Some(a),
                    _ => None,
                };
                other.filter(|&b| is_bias_for(f, b, cur)).map(|b| Step {
                    op: ElementwiseOp::AddBias,
                    inst: user,
                    bias: Some(b),
                })
            }
            _ => None,
        };
        let Some(step) = step else { break };
        if f.value_type(result) != f.value_type(cur) {
            break;
        }
        steps.push(step);
        cur = result;
    }
    steps
}

/// A bias is a 1-D `tensor<N x dt>` matching the accumulator's last dim and dtype.
fn is_bias_for(f: &Function, bias: Value, acc: Value) -> bool {
    let Type::Tensor { shape, dtype } = f.value_type(acc) else {
        return false;
    };
    let Some(&n @ Dim::Static(_)) = shape.last() else {
        return false;
    };
    *f.value_type(bias)
        == Type::Tensor {
            shape: vec![n],
            dtype: *dtype,
        }
}
