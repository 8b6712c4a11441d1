//! Functions and modules. Values and instructions are small copyable indices into
//! arenas owned by the `Function` (Cranelift style), so passes rewrite by editing
//! indices instead of juggling `Rc<RefCell<…>>` graphs. Removing an op only drops
//! it from the layout; its arena slot stays (indices never dangle).

use crate::attrs::Attrs;
use crate::error::Loc;
use crate::ops::Opcode;
use crate::types::Type;

/// An SSA value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value(pub(crate) u32);

/// An instruction (op).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Inst(pub(crate) u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueDef {
    Param(usize),
    Result(Inst),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValueData {
    pub ty: Type,
    pub def: ValueDef,
    /// Parameters keep their source names (`%x`); op results are numbered by the printer.
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InstData {
    pub op: Opcode,
    pub operands: Vec<Value>,
    pub result: Option<Value>,
    pub attrs: Attrs,
    pub loc: Option<Loc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    pub name: String,
    pub loc: Option<Loc>,
    pub(crate) params: Vec<Value>,
    pub(crate) result_types: Vec<Type>,
    pub(crate) values: Vec<ValueData>,
    pub(crate) insts: Vec<InstData>,
    /// Program order of the live instructions.
    pub(crate) layout: Vec<Inst>,
}

impl Function {
    pub(crate) fn empty(name: &str) -> Self {
        Function {
            name: name.to_string(),
            loc: None,
            params: Vec::new(),
            result_types: Vec::new(),
            values: Vec::new(),
            insts: Vec::new(),
            layout: Vec::new(),
        }
    }

    pub fn params(&self) -> &[Value] {
        &self.params
    }

    pub fn result_types(&self) -> &[Type] {
        &self.result_types
    }

    /// Live instructions in program order.
    pub fn insts(&self) -> &[Inst] {
        &self.layout
    }

    pub fn inst(&self, inst: Inst) -> &InstData {
        &self.insts[inst.0 as usize]
    }

    pub fn inst_mut(&mut self, inst: Inst) -> &mut InstData {
        &mut self.insts[inst.0 as usize]
    }

    pub fn value(&self, value: Value) -> &ValueData {
        &self.values[value.0 as usize]
    }

    pub fn value_type(&self, value: Value) -> &Type {
        &self.value(value).ty
    }

    pub(crate) fn new_value(&mut self, ty: Type, def: ValueDef, name: Option<String>) -> Value {
        self.values.push(ValueData { ty, def, name });
        Value(self.values.len() as u32 - 1)
    }

    /// Creates an op in the arena (not yet placed in the layout) with a result of `ty`.
    pub(crate) fn create_inst(
        &mut self,
        op: Opcode,
        operands: Vec<Value>,
        result_ty: Option<Type>,
        attrs: Attrs,
        loc: Option<Loc>,
    ) -> Inst {
        let inst = Inst(self.insts.len() as u32);
        let result = result_ty.map(|ty| self.new_value(ty, ValueDef::Result(inst), None));
        self.insts.push(InstData {
            op,
            operands,
            result,
            attrs,
            loc,
        });
        inst
    }

    /// Places `new` in the layout right before `before`; appends if `before` is not live.
    pub fn insert_before(&mut self, new: Inst, before: Inst) {
        match self.layout.iter().position(|&i| i == before) {
            Some(pos) => self.layout.insert(pos, new),
            None => self.layout.push(new),
        }
    }

    /// Drops an op from the program (its arena slot stays valid).
    pub fn remove_inst(&mut self, inst: Inst) {
        self.layout.retain(|&i| i != inst);
    }

    /// Rewrites every use of `from` (in live ops) into `to`.
    pub fn replace_all_uses(&mut self, from: Value, to: Value) {
        for &inst in &self.layout {
            for operand in &mut self.insts[inst.0 as usize].operands {
                if *operand == from {
                    *operand = to;
                }
            }
        }
    }

    /// Live ops that use `value`, one entry per use (an op using it twice counts twice).
    pub fn uses(&self, value: Value) -> Vec<Inst> {
        let mut uses = Vec::new();
        for &inst in &self.layout {
            for &operand in &self.inst(inst).operands {
                if operand == value {
                    uses.push(inst);
                }
            }
        }
        uses
    }

    /// The live op defining `value`, `None` for parameters.
    pub fn def_inst(&self, value: Value) -> Option<Inst> {
        match self.value(value).def {
            ValueDef::Result(inst) => Some(inst),
            ValueDef::Param(_) => None,
        }
    }

    /// Live ops with this opcode, in program order.
    pub fn insts_with(&self, op: Opcode) -> Vec<Inst> {
        self.layout
            .iter()
            .copied()
            .filter(|&i| self.inst(i).op == op)
            .collect()
    }
}

/// A translation unit: one or more functions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Module {
    pub functions: Vec<Function>,
}
