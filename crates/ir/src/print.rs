//! `Module` → canonical text. Parameters keep their names; op results are
//! numbered `%0, %1, ...` in program order (like MLIR), skipping numbers a
//! parameter already uses. Canonical text parses back to the same IR and prints
//! to the same text.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use crate::function::{Function, Module, Value};
use crate::ops::Opcode;

pub fn print_module(module: &Module) -> String {
    let mut out = String::new();
    for (i, f) in module.functions.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&print_function(f));
    }
    out
}

pub fn print_function(f: &Function) -> String {
    let names = value_names(f);
    let name = |v: &Value| names.get(v).cloned().unwrap_or_else(|| "%<invalid>".into());
    let mut out = String::new();
    let params: Vec<String> = f
        .params()
        .iter()
        .map(|p| format!("{}: {}", name(p), f.value_type(*p)))
        .collect();
    let _ = write!(out, "func.func @{}({})", f.name, params.join(", "));
    match f.result_types() {
        [] => {}
        [one] => {
            let _ = write!(out, " -> {one}");
        }
        many => {
            let tys: Vec<String> = many.iter().map(|t| t.to_string()).collect();
            let _ = write!(out, " -> ({})", tys.join(", "));
        }
    }
    out.push_str(" {\n");
    for &inst in f.insts() {
        let data = f.inst(inst);
        out.push_str("  ");
        if let Some(r) = data.result {
            let _ = write!(out, "{} = ", name(&r));
        }
        out.push_str(data.op.name());
        let operands: Vec<String> = data.operands.iter().map(name).collect();
        if !operands.is_empty() {
            let _ = write!(out, " {}", operands.join(", "));
        }
        if !data.attrs.is_empty() {
            let _ = write!(out, " {}", data.attrs);
        }
        let op_tys: Vec<String> = data
            .operands
            .iter()
            .map(|&v| f.value_type(v).to_string())
            .collect();
        if data.op == Opcode::Return {
            if !op_tys.is_empty() {
                let _ = write!(out, " : {}", op_tys.join(", "));
            }
        } else if let Some(r) = data.result {
            let rt = f.value_type(r).to_string();
            // Short form `: T` when every operand has the result's type.
            if op_tys.iter().all(|t| *t == rt) {
                let _ = write!(out, " : {rt}");
            } else {
                let _ = write!(out, " : ({}) -> {rt}", op_tys.join(", "));
            }
        }
        out.push('\n');
    }
    out.push_str("}\n");
    out
}

fn value_names(f: &Function) -> HashMap<Value, String> {
    let mut names = HashMap::new();
    let mut taken = HashSet::new();
    for (i, &p) in f.params().iter().enumerate() {
        let n = f.value(p).name.clone().unwrap_or_else(|| format!("arg{i}"));
        taken.insert(n.clone());
        names.insert(p, format!("%{n}"));
    }
    let mut next = 0usize;
    for &inst in f.insts() {
        if let Some(r) = f.inst(inst).result {
            while taken.contains(&next.to_string()) {
                next += 1;
            }
            names.insert(r, format!("%{next}"));
            next += 1;
        }
    }
    names
}
