//! The op set, defined in one place: name ↔ opcode, and how elementwise ops map
//! onto core's `ElementwiseOp` (the vocabulary the epilogue table is written in).

use sparseflow_core::ElementwiseOp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// `Y = X · Wᵀ`, X dense `[M, K]`, W `sparse24<N x K>`.
    SparseGemm,
    /// `Y = epilogue(X · Wᵀ [+ b])`, the op the code generator lowers.
    FusedSparseGemm,
    AddF,
    MulF,
    Relu,
    Silu,
    Gelu,
    GeluTanh,
    /// Splat constant `{value = 1.0}`; exists so canonicalize can fold `x * 1`, `x + 0`.
    Constant,
    Return,
}

impl Opcode {
    pub const ALL: [Opcode; 10] = [
        Opcode::SparseGemm,
        Opcode::FusedSparseGemm,
        Opcode::AddF,
        Opcode::MulF,
        Opcode::Relu,
        Opcode::Silu,
        Opcode::Gelu,
        Opcode::GeluTanh,
        Opcode::Constant,
        Opcode::Return,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Opcode::SparseGemm => "sparseflow.sparse_gemm",
            Opcode::FusedSparseGemm => "sparseflow.fused_sparse_gemm",
            Opcode::AddF => "arith.addf",
            Opcode::MulF => "arith.mulf",
            Opcode::Relu => "arith.relu",
            Opcode::Silu => "arith.silu",
            Opcode::Gelu => "arith.gelu",
            Opcode::GeluTanh => "arith.gelu_tanh",
            Opcode::Constant => "arith.constant",
            Opcode::Return => "return",
        }
    }

    pub fn from_name(name: &str) -> Option<Opcode> {
        Opcode::ALL.into_iter().find(|op| op.name() == name)
    }

    /// Comma-separated list of op names, for "unknown op" errors.
    pub fn known_names() -> String {
        Opcode::ALL.map(Opcode::name).join(", ")
    }

    pub fn is_unary_elementwise(self) -> bool {
        matches!(
            self,
            Opcode::Relu | Opcode::Silu | Opcode::Gelu | Opcode::GeluTanh
        )
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
        ElementwiseOp::from_ir_name(self.name())
    }

    pub fn from_elementwise(op: ElementwiseOp) -> Option<Opcode> {
        Opcode::from_name(op.ir_name())
    }
}
