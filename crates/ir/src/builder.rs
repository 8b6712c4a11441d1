//! The one way to make ops. The runtime uses it to build the IR of a layer, the
//! parser uses it for text, passes use it for rewrites; result types are inferred
//! here so every producer agrees on them.

use sparseflow_core::ElementwiseOp;

use crate::attrs::{Attr, Attrs};
use crate::error::{IrError, Loc};
use crate::function::{Function, Inst, Value, ValueDef};
use crate::ops::Opcode;
use crate::types::{Dim, Type};
use crate::verify::binary_form;

pub struct FunctionBuilder {
    func: Function,
}

impl FunctionBuilder {
    pub fn new(name: &str) -> Self {
        FunctionBuilder {
            func: Function::empty(name),
        }
    }

    pub(crate) fn set_loc(&mut self, loc: Option<Loc>) {
        self.func.loc = loc;
    }

    pub fn function(&self) -> &Function {
        &self.func
    }

    pub fn param(&mut self, name: &str, ty: Type) -> Value {
        let index = self.func.params.len();
        let v = self
            .func
            .new_value(ty, ValueDef::Param(index), Some(name.to_string()));
        self.func.params.push(v);
        v
    }

    pub fn set_result_types(&mut self, types: Vec<Type>) {
        self.func.result_types = types;
    }

    /// Appends an op with an explicit result type (the parser's entry point).
    pub fn append(
        &mut self,
        op: Opcode,
        operands: Vec<Value>,
        result_ty: Option<Type>,
        attrs: Attrs,
        loc: Option<Loc>,
    ) -> Inst {
        let inst = self.func.create_inst(op, operands, result_ty, attrs, loc);
        self.func.layout.push(inst);
        inst
    }

    fn append_value(&mut self, op: Opcode, operands: Vec<Value>, ty: Type, attrs: Attrs) -> Value {
        let inst = self.append(op, operands, Some(ty), attrs, None);
        // Every op made by `append_value` has a result by construction.
        self.func.inst(inst).result.unwrap_or(Value(0))
    }

    pub fn sparse_gemm(&mut self, x: Value, w: Value) -> Result<Value, IrError> {
        let ty = gemm_result_type(&self.func, x, w)?;
        Ok(self.append_value(Opcode::SparseGemm, vec![x, w], ty, Attrs::new()))
    }

    pub fn fused_sparse_gemm(
        &mut self,
        x: Value,
        w: Value,
        bias: Option<Value>,
        epilogue: &str,
    ) -> Result<Value, IrError> {
        let ty = gemm_result_type(&self.func, x, w)?;
        let mut operands = vec![x, w];
        operands.extend(bias);
        let mut attrs = Attrs::new();
        attrs.set("epilogue", Attr::Str(epilogue.to_string()));
        Ok(self.append_value(Opcode::FusedSparseGemm, operands, ty, attrs))
    }

    /// Unary elementwise op (`arith.relu`, ...); the result has the operand's type.
    pub fn unary(&mut self, op: Opcode, x: Value) -> Result<Value, IrError> {
        if !op.is_unary_elementwise() {
            return Err(IrError::Build(format!("{} is not unary", op.name())));
        }
        let ty = self.func.value_type(x).clone();
        Ok(self.append_value(op, vec![x], ty, Attrs::new()))
    }

    /// `arith.addf` / `arith.mulf`; the result has the tensor operand's type (the other
    /// one may be a vector broadcast over the rows: second, or first for these commutative ops).
    pub fn binary(&mut self, op: Opcode, lhs: Value, rhs: Value) -> Result<Value, IrError> {
        if !op.is_binary_elementwise() {
            return Err(IrError::Build(format!("{} is not binary", op.name())));
        }
        let (l, r) = (self.func.value_type(lhs), self.func.value_type(rhs));
        let ty = match binary_form(op, l, r) {
            Some(form) => form.result_type(l, r).clone(),
            // The verifier reports the mismatch with the op's location.
            None => l.clone(),
        };
        Ok(self.append_value(op, vec![lhs, rhs], ty, Attrs::new()))
    }

    /// One step of an epilogue's op sequence; `AddBias` needs the bias vector.
    pub fn elementwise(
        &mut self,
        op: ElementwiseOp,
        x: Value,
        bias: Option<Value>,
    ) -> Result<Value, IrError> {
        let opcode = Opcode::from_elementwise(op).ok_or_else(|| {
            IrError::Build(format!("no IR op for elementwise op '{}'", op.ir_name()))
        })?;
        if opcode.is_binary_elementwise() {
            let b = bias.ok_or_else(|| {
                IrError::Build(format!("'{}' needs a bias operand", opcode.name()))
            })?;
            self.binary(opcode, x, b)
        } else {
            self.unary(opcode, x)
        }
    }

    /// Splat constant of `ty` with every element `value`.
    pub fn constant(&mut self, value: f64, ty: Type) -> Value {
        let mut attrs = Attrs::new();
        attrs.set("value", Attr::Float(value));
        self.append_value(Opcode::Constant, vec![], ty, attrs)
    }

    /// Ends the function with `return values`; its result types are the values' types.
    pub fn ret(mut self, values: &[Value]) -> Function {
        self.func.result_types = values
            .iter()
            .map(|&v| self.func.value_type(v).clone())
            .collect();
        self.append(Opcode::Return, values.to_vec(), None, Attrs::new(), None);
        self.func
    }

    /// Finishes without adding anything (the parser appends `return` itself).
    pub fn finish(self) -> Function {
        self.func
    }
}

/// `X[.., K] · W[N, K]ᵀ → Y[.., N]` in X's dtype.
pub(crate) fn gemm_result_type(func: &Function, x: Value, w: Value) -> Result<Type, IrError> {
    let (Type::Tensor { shape, dtype }, Type::Sparse24 { n, .. }) =
        (func.value_type(x), func.value_type(w))
    else {
        return Err(IrError::Build(
            "sparse_gemm takes a dense tensor X and a !sparseflow.sparse24 weight W".into(),
        ));
    };
    let mut out = shape.clone();
    match out.last_mut() {
        Some(last) => *last = Dim::Static(*n),
        None => return Err(IrError::Build("sparse_gemm needs X of rank >= 1".into())),
    }
    Ok(Type::Tensor {
        shape: out,
        dtype: *dtype,
    })
}

impl Function {
    /// Creates an op outside the layout, for passes that place it themselves
    /// with `insert_before`. Result type must be given (passes know it).
    pub fn build_detached(
        &mut self,
        op: Opcode,
        operands: Vec<Value>,
        result_ty: Option<Type>,
        attrs: Attrs,
        loc: Option<Loc>,
    ) -> Inst {
        self.create_inst(op, operands, result_ty, attrs, loc)
    }
}
