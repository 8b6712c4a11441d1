//! `canonicalize`: operand order, identity folding, then dead-code elimination.
//!
//! Operand order: a commutative op with the broadcast vector first (`arith.addf %b, %0`)
//! gets its operands swapped to the canonical `arith.addf %0, %b` (exact: IEEE `+` and `*`
//! commute). fuse-epilogue accepts either order, so this is for readable, uniform output.
//!
//! Folds (each replaces the op's result by an existing value):
//! * `arith.mulf %x, splat(1.0)` and `arith.addf %x, splat(0.0)` (either operand
//!   order) → `%x`, when `%x` already has the result's type;
//! * `arith.relu (arith.relu %x)` → the inner relu (relu is idempotent).
//!
//! DCE removes every op whose result is unused. All ops are pure (no memory
//! effects in this IR), so an unused result means the op does nothing.

use super::PassContext;
use crate::error::IrError;
use crate::function::{Function, Inst, Module, Value};
use crate::ops::Opcode;
use crate::verify::{binary_form, BinaryForm};
use sparseflow_core::ElementwiseOp;

/// `relu(relu(x)) = relu(x)`: the one idempotent activation this pass folds.
const RELU: Opcode = Opcode::Unary(ElementwiseOp::Relu);

pub fn run(module: &mut Module, cx: &mut PassContext<'_>) -> Result<(), IrError> {
    for f in &mut module.functions {
        let swapped = order_operands(f);
        let folded = fold_identities(f);
        let removed = eliminate_dead_code(f);
        if cx.explain && (swapped + folded + removed) > 0 {
            cx.notes.push(format!(
                "canonicalize: @{}: swapped {swapped} commuted operand pair(s), folded {folded} identity op(s), removed {removed} dead op(s)",
                f.name
            ));
        }
    }
    Ok(())
}

/// Puts the broadcast vector of commuted binary ops second; returns how many were swapped.
pub fn order_operands(f: &mut Function) -> usize {
    let mut swapped = 0;
    for inst in f.insts().to_vec() {
        let data = f.inst(inst);
        let &[a, b] = data.operands.as_slice() else {
            continue;
        };
        if !data.op.is_binary_elementwise() {
            continue;
        }
        if binary_form(data.op, f.value_type(a), f.value_type(b)) == Some(BinaryForm::Commuted) {
            f.inst_mut(inst).operands.swap(0, 1);
            swapped += 1;
        }
    }
    swapped
}

/// Returns how many ops were folded away (their uses now point elsewhere).
pub fn fold_identities(f: &mut Function) -> usize {
    let mut folded = 0;
    for inst in f.insts().to_vec() {
        if let Some((from, to)) = identity_of(f, inst) {
            f.replace_all_uses(from, to);
            folded += 1;
        }
    }
    folded
}

/// `(result, replacement)` when `inst` computes one of its operands unchanged.
fn identity_of(f: &Function, inst: Inst) -> Option<(Value, Value)> {
    let data = f.inst(inst);
    let result = data.result?;
    match (data.op, data.operands.as_slice()) {
        (Opcode::MulF, &[a, b]) | (Opcode::AddF, &[a, b]) => {
            let neutral = if data.op == Opcode::MulF { 1.0 } else { 0.0 };
            let result_ty = f.value_type(result);
            [(a, b), (b, a)].into_iter().find_map(|(keep, other)| {
                (f.value_type(keep) == result_ty && splat_value(f, other) == Some(neutral))
                    .then_some((result, keep))
            })
        }
        (RELU, &[x]) => {
            let inner = f.def_inst(x)?;
            (f.inst(inner).op == RELU && f.insts().contains(&inner)).then_some((result, x))
        }
        _ => None,
    }
}

fn splat_value(f: &Function, v: Value) -> Option<f64> {
    let def = f.def_inst(v)?;
    let data = f.inst(def);
    (data.op == Opcode::Constant).then(|| data.attrs.get("value")?.as_float())?
}

/// Removes unused ops until none is left; returns how many were removed.
pub fn eliminate_dead_code(f: &mut Function) -> usize {
    let mut removed = 0;
    // Walking backwards removes a whole dead chain in one sweep; loop for safety.
    loop {
        let mut changed = false;
        for inst in f.insts().iter().rev().copied().collect::<Vec<_>>() {
            let Some(result) = f.inst(inst).result else {
                continue;
            };
            if f.uses(result).is_empty() {
                f.remove_inst(inst);
                removed += 1;
                changed = true;
            }
        }
        if !changed {
            return removed;
        }
    }
}
