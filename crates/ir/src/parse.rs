//! Text → `Module`. Hand-written recursive descent over a char cursor; the first
//! error stops parsing and carries line:col plus "expected X, found Y". Operand
//! types written in the text are checked against the values' known types here
//! (as MLIR does), so the verifier only sees well-typed references.

use std::collections::HashMap;

use crate::builder::FunctionBuilder;
use crate::cursor::Cursor;
use crate::error::{IrError, Loc};
use crate::function::{Function, Module, Value};
use crate::ops::Opcode;
use crate::parse_type::{parse_attrs, parse_type};
use crate::types::Type;

/// Parses IR text (one or more `func.func`). Comments (`//`) are ignored.
pub fn parse_module(src: &str) -> Result<Module, IrError> {
    let mut c = Cursor::new(src);
    let mut module = Module::default();
    while !c.at_end() {
        module.functions.push(parse_function(&mut c)?);
    }
    Ok(module)
}

/// [`parse_module`] for raw file bytes: input that is not UTF-8 is a parse error at the
/// line:col of the first invalid byte (never a panic, never a lossy reinterpretation).
pub fn parse_module_bytes(src: &[u8]) -> Result<Module, IrError> {
    match std::str::from_utf8(src) {
        Ok(text) => parse_module(text),
        Err(e) => {
            let (valid, bad) = src.split_at(e.valid_up_to());
            // The prefix is valid UTF-8 by construction.
            let prefix = std::str::from_utf8(valid).unwrap_or_default();
            let line_start = prefix.rfind('\n').map_or(0, |i| i + 1);
            let loc = Loc {
                line: u32::try_from(prefix.matches('\n').count() + 1).unwrap_or(u32::MAX),
                col: u32::try_from(prefix[line_start..].chars().count() + 1).unwrap_or(u32::MAX),
            };
            Err(IrError::Parse {
                loc,
                message: format!(
                    "input is not valid UTF-8 (byte 0x{:02x} at offset {})",
                    bad.first().copied().unwrap_or_default(),
                    valid.len()
                ),
            })
        }
    }
}

struct Scope {
    values: HashMap<String, (Value, Loc)>,
}

impl Scope {
    fn define(
        &mut self,
        c: &Cursor<'_>,
        name: String,
        value: Value,
        loc: Loc,
    ) -> Result<(), IrError> {
        if let Some((_, prev)) = self.values.get(&name) {
            return c.error(
                loc,
                format!("redefinition of SSA value '%{name}' (first defined at {prev})"),
            );
        }
        self.values.insert(name, (value, loc));
        Ok(())
    }
}

fn parse_function(c: &mut Cursor<'_>) -> Result<Function, IrError> {
    c.skip_trivia();
    let loc = c.loc();
    if !c.eat_str("func.func") {
        let found = c.found();
        return c.error(loc, format!("expected 'func.func', found {found}"));
    }
    let name = c.sigil_name('@', "a function name '@name'")?;
    let mut b = FunctionBuilder::new(&name);
    b.set_loc(Some(loc));
    let mut scope = Scope {
        values: HashMap::new(),
    };

    c.expect('(', "to open the parameter list")?;
    if !c.eat(')') {
        loop {
            c.skip_trivia();
            let ploc = c.loc();
            let pname = c.sigil_name('%', "a parameter '%name'")?;
            c.expect(':', "after a parameter name")?;
            let ty = parse_type(c)?;
            let v = b.param(&pname, ty);
            scope.define(c, pname, v, ploc)?;
            if c.eat(')') {
                break;
            }
            c.expect(',', "or ')' after a parameter")?;
        }
    }
    let mut results = Vec::new();
    if c.eat_str("->") {
        if c.eat('(') {
            if !c.eat(')') {
                loop {
                    results.push(parse_type(c)?);
                    if c.eat(')') {
                        break;
                    }
                    c.expect(',', "or ')' in the result type list")?;
                }
            }
        } else {
            results.push(parse_type(c)?);
        }
    }
    b.set_result_types(results);

    c.expect('{', "to open the function body")?;
    loop {
        if c.eat('}') {
            break;
        }
        if c.at_end() {
            let loc = c.loc();
            return c.error(
                loc,
                format!("expected '}}' to close function '@{name}', found end of input"),
            );
        }
        parse_op(c, &mut b, &mut scope)?;
    }
    Ok(b.finish())
}

fn parse_op(c: &mut Cursor<'_>, b: &mut FunctionBuilder, scope: &mut Scope) -> Result<(), IrError> {
    c.skip_trivia();
    let start = c.loc();
    let mut result_name = None;
    if c.peek() == Some('%') {
        let name = c.sigil_name('%', "a result name")?;
        c.expect('=', &format!("after result '%{name}'"))?;
        result_name = Some((name, start));
    }
    c.skip_trivia();
    let op_loc = c.loc();
    let Some(op_name) = c.word() else {
        let found = c.found();
        return c.error(op_loc, format!("expected an op name, found {found}"));
    };
    let Some(op) = Opcode::from_name(&op_name) else {
        return c.error(
            op_loc,
            format!(
                "unknown op '{op_name}'; known ops: {}",
                Opcode::known_names()
            ),
        );
    };
    match (&result_name, op.has_result()) {
        (None, true) => {
            return c.error(
                op_loc,
                format!("'{op_name}' produces a result; write '%name = {op_name} ...'"),
            )
        }
        (Some(_), false) => return c.error(start, format!("'{op_name}' has no result to name")),
        _ => {}
    }

    // Operands: `%a, %b` (possibly none).
    let mut operands: Vec<(Value, Loc, String)> = Vec::new();
    c.skip_trivia();
    if c.peek() == Some('%') {
        loop {
            c.skip_trivia();
            let loc = c.loc();
            let name = c.sigil_name('%', "an operand '%name'")?;
            let Some(&(v, _)) = scope.values.get(&name) else {
                return c.error(loc, format!("use of undefined value '%{name}'"));
            };
            operands.push((v, loc, name));
            if !c.eat(',') {
                break;
            }
        }
    }

    let attrs = {
        c.skip_trivia();
        if c.peek() == Some('{') {
            parse_attrs(c)?
        } else {
            Default::default()
        }
    };

    let result_ty = if op == Opcode::Return {
        if !operands.is_empty() {
            c.expect(':', "after operands")?;
            let mut tys = Vec::new();
            for (i, _) in operands.iter().enumerate() {
                if i > 0 {
                    c.expect(',', "between return types")?;
                }
                tys.push(parse_type(c)?);
            }
            check_operand_types(c, b.function(), &operands, &tys)?;
        }
        None
    } else {
        c.expect(':', "after operands")?;
        let (operand_tys, result) = parse_signature(c, operands.len())?;
        check_operand_types(c, b.function(), &operands, &operand_tys)?;
        Some(result)
    };

    let values = operands.into_iter().map(|(v, _, _)| v).collect();
    let inst = b.append(op, values, result_ty, attrs, Some(op_loc));
    if let Some((name, loc)) = result_name {
        if let Some(v) = b.function().inst(inst).result {
            scope.define(c, name, v, loc)?;
        }
    }
    Ok(())
}

/// `: (T1, T2) -> R` or the short form `: T` (every operand and the result are T).
fn parse_signature(c: &mut Cursor<'_>, n_operands: usize) -> Result<(Vec<Type>, Type), IrError> {
    c.skip_trivia();
    if c.peek() == Some('(') {
        c.bump();
        let mut tys = Vec::new();
        if !c.eat(')') {
            loop {
                tys.push(parse_type(c)?);
                if c.eat(')') {
                    break;
                }
                c.expect(',', "or ')' in operand types")?;
            }
        }
        c.skip_trivia();
        let loc = c.loc();
        if !c.eat_str("->") {
            let found = c.found();
            return c.error(
                loc,
                format!("expected '->' after operand types, found {found}"),
            );
        }
        let result = parse_type(c)?;
        Ok((tys, result))
    } else {
        let ty = parse_type(c)?;
        Ok((vec![ty.clone(); n_operands], ty))
    }
}

fn check_operand_types(
    c: &Cursor<'_>,
    func: &Function,
    operands: &[(Value, Loc, String)],
    written: &[Type],
) -> Result<(), IrError> {
    if operands.len() != written.len() {
        let loc = operands.first().map(|o| o.1).unwrap_or(c.loc());
        return c.error(
            loc,
            format!(
                "{} operands but {} operand types",
                operands.len(),
                written.len()
            ),
        );
    }
    for ((v, loc, name), ty) in operands.iter().zip(written) {
        let actual = func.value_type(*v);
        if actual != ty {
            return c.error(
                *loc,
                format!("'%{name}' has type {actual} but the op's signature says {ty}"),
            );
        }
    }
    Ok(())
}
