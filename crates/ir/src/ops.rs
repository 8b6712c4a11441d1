//! The op set, defined in one place: name ↔ opcode, and how elementwise ops map
//! onto core's `ElementwiseOp` (the vocabulary the epilogue table is written in).
//!
//! The unary elementwise ops are not listed here: every activation of core's
//! `ElementwiseOp` is the IR op `Opcode::Unary(op)` named `op.ir_name()`, so a new activation
//! in the epilogue table is parsed, verified, printed and fused with no change to this crate.

use sparseflow_core::ElementwiseOp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// `Y = X · Wᵀ`, X dense `[M, K]`, W `sparse24<N x K>`.
    SparseGemm,
    /// `Y = epilogue(X · Wᵀ [+ b])`, the op the code generator lowers.
    FusedSparseGemm,
    AddF,
    MulF,
    /// A unary activation of the epilogue table (`arith.relu`, `arith.relu2`, ...); never
    /// `ElementwiseOp::AddBias`, which is the binary `AddF` with a bias vector.
    Unary(ElementwiseOp),
    /// Splat constant `{value = 1.0}`; exists so canonicalize can fold `x * 1`, `x + 0`.
    Constant,
    Return,
}

impl Opcode {
    /// The ops that are not activations, in the order `known_names` lists them.
    const FIXED: [Opcode; 6] = [
        Opcode::SparseGemm,
        Opcode::FusedSparseGemm,
        Opcode::AddF,
        Opcode::MulF,
        Opcode::Constant,
        Opcode::Return,
    ];

    /// Every op: the fixed ones, then one `Unary` per activation of core's table.
    pub fn all() -> impl Iterator<Item = Opcode> {
        Opcode::FIXED
            .into_iter()
            .chain(ElementwiseOp::activations().map(Opcode::Unary))
    }

    pub fn name(self) -> &'static str {
        match self {
            Opcode::SparseGemm => "sparseflow.sparse_gemm",
            Opcode::FusedSparseGemm => "sparseflow.fused_sparse_gemm",
            Opcode::AddF => "arith.addf",
            Opcode::MulF => "arith.mulf",
            Opcode::Unary(op) => op.ir_name(),
            Opcode::Constant => "arith.constant",
            Opcode::Return => "return",
        }
    }

    pub fn from_name(name: &str) -> Option<Opcode> {
        Opcode::all().find(|op| op.name() == name)
    }

    /// Comma-separated list of op names, for "unknown op" errors.
    pub fn known_names() -> String {
        Opcode::all()
            .map(Opcode::name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn is_unary_elementwise(self) -> bool {
        matches!(self, Opcode::Unary(_))
    }

    pub fn is_binary_elementwise(self) -> bool {
        matches!(self, Opcode::AddF | Opcode::MulF)
    }

    /// `op(a, b) == op(b, a)` exactly (IEEE addition and multiplication are), so
    /// canonicalize may swap the operands.
    pub fn is_commutative(self) -> bool {
        matches!(self, Opcode::AddF | Opcode::MulF)
    }

    pub fn has_result(self) -> bool {
        self != Opcode::Return
    }

    /// The epilogue-table vocabulary for this op. `arith.addf` maps to `AddBias`
    /// only when its second operand is a bias vector; the fusion pass checks that.
    pub fn elementwise(self) -> Option<ElementwiseOp> {
        match self {
            Opcode::Unary(op) => Some(op),
            Opcode::AddF => Some(ElementwiseOp::AddBias),
            _ => None,
        }
    }

    pub fn from_elementwise(op: ElementwiseOp) -> Option<Opcode> {
        match op {
            ElementwiseOp::AddBias => Some(Opcode::AddF),
            act => Some(Opcode::Unary(act)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_every_activation_is_an_op() {
        for op in Opcode::all() {
            assert_eq!(Opcode::from_name(op.name()), Some(op), "{}", op.name());
        }
        for e in ElementwiseOp::ALL {
            let op = Opcode::from_elementwise(e).unwrap();
            assert_eq!(op.elementwise(), Some(e));
            assert_eq!(op.name(), e.ir_name());
        }
        assert!(Opcode::from_name("arith.relu2").is_some_and(Opcode::is_unary_elementwise));
        assert!(Opcode::known_names().contains("arith.gelu_tanh"));
    }
}
