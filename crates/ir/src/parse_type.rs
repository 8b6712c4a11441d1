//! Parsing of types (`tensor<?x4096xf16>`, `!sparseflow.sparse24<NxKxf16>`) and
//! attribute dictionaries (`{tile_m = 128, epilogue = "relu"}`).

use sparseflow_core::DType;

use crate::attrs::{Attr, Attrs};
use crate::cursor::Cursor;
use crate::error::IrError;
use crate::types::{Dim, Type, DTYPES};

pub(crate) fn parse_type(c: &mut Cursor<'_>) -> Result<Type, IrError> {
    c.skip_trivia();
    let loc = c.loc();
    if c.eat_str("tensor<") {
        let (shape, dtype) = parse_shape(c)?;
        return Ok(Type::Tensor { shape, dtype });
    }
    if c.eat_str("!sparseflow.sparse24<") {
        let shape_loc = c.loc();
        let (shape, dtype) = parse_shape(c)?;
        return match shape.as_slice() {
            [Dim::Static(n), Dim::Static(k)] => Ok(Type::Sparse24 {
                n: *n,
                k: *k,
                dtype,
            }),
            _ => c.error(
                shape_loc,
                "!sparseflow.sparse24 needs a static 2-D shape NxK (weights are known at compile time)",
            ),
        };
    }
    let found = c.found();
    c.error(
        loc,
        format!("expected a type (tensor<...> or !sparseflow.sparse24<...>), found {found}"),
    )
}

/// `?x4096xf16>`: dims separated by 'x', then the element type, then '>'.
/// No whitespace inside, like MLIR.
fn parse_shape(c: &mut Cursor<'_>) -> Result<(Vec<Dim>, DType), IrError> {
    let mut shape = Vec::new();
    loop {
        let loc = c.loc();
        match c.peek() {
            Some('?') => {
                c.bump();
                shape.push(Dim::Dynamic);
            }
            Some(ch) if ch.is_ascii_digit() => {
                shape.push(Dim::Static(c.unsigned("a dimension")?));
            }
            _ => {
                let Some(name) = c.word() else {
                    let found = c.found();
                    return c.error(
                        loc,
                        format!("expected a dimension or element type, found {found}"),
                    );
                };
                let Some(dtype) = DType::from_ir_name(&name) else {
                    let known = DTYPES.map(|d| d.ir_name()).join(", ");
                    return c.error(
                        loc,
                        format!("unknown element type '{name}'; expected one of {known}"),
                    );
                };
                if c.peek() != Some('>') {
                    let loc = c.loc();
                    let found = c.found();
                    return c.error(
                        loc,
                        format!("expected '>' to close the type, found {found}"),
                    );
                }
                c.bump();
                return Ok((shape, dtype));
            }
        }
        if c.peek() != Some('x') {
            let loc = c.loc();
            let found = c.found();
            return c.error(
                loc,
                format!("expected 'x' after a dimension, found {found}"),
            );
        }
        c.bump();
    }
}

pub(crate) fn parse_attrs(c: &mut Cursor<'_>) -> Result<Attrs, IrError> {
    let mut attrs = Attrs::new();
    c.expect('{', "to open attributes")?;
    if c.eat('}') {
        return Ok(attrs);
    }
    loop {
        c.skip_trivia();
        let loc = c.loc();
        let Some(key) = c.word() else {
            let found = c.found();
            return c.error(loc, format!("expected an attribute name, found {found}"));
        };
        if attrs.contains(&key) {
            return c.error(loc, format!("duplicate attribute '{key}'"));
        }
        c.expect('=', &format!("after attribute name '{key}'"))?;
        let value = parse_attr_value(c)?;
        attrs.set(&key, value);
        if c.eat('}') {
            return Ok(attrs);
        }
        c.expect(',', "or '}' after an attribute")?;
    }
}

fn parse_attr_value(c: &mut Cursor<'_>) -> Result<Attr, IrError> {
    c.skip_trivia();
    let loc = c.loc();
    match c.peek() {
        Some('"') => parse_string(c).map(Attr::Str),
        Some(ch) if ch == '-' || ch.is_ascii_digit() => parse_number(c),
        _ => match c.word().as_deref() {
            Some("true") => Ok(Attr::Bool(true)),
            Some("false") => Ok(Attr::Bool(false)),
            _ => c.error(
                loc,
                "expected an attribute value (integer, float, \"string\", true or false)",
            ),
        },
    }
}

fn parse_string(c: &mut Cursor<'_>) -> Result<String, IrError> {
    let loc = c.loc();
    c.bump();
    let mut s = String::new();
    loop {
        match c.bump() {
            None | Some('\n') => return c.error(loc, "unterminated string"),
            Some('"') => return Ok(s),
            Some('\\') => {
                let esc_loc = c.loc();
                match c.bump() {
                    Some('"') => s.push('"'),
                    Some('\\') => s.push('\\'),
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    _ => {
                        return c.error(esc_loc, "unknown escape in string (use \\\" \\\\ \\n \\t)")
                    }
                }
            }
            Some(ch) => s.push(ch),
        }
    }
}

fn parse_number(c: &mut Cursor<'_>) -> Result<Attr, IrError> {
    let loc = c.loc();
    let mut text = String::new();
    let mut is_float = false;
    if c.peek() == Some('-') {
        text.push('-');
        c.bump();
    }
    while let Some(ch) = c.peek() {
        let sign_after_exp =
            matches!(ch, '+' | '-') && matches!(text.chars().last(), Some('e' | 'E'));
        if ch.is_ascii_digit() || sign_after_exp {
            text.push(ch);
        } else if matches!(ch, '.' | 'e' | 'E') {
            is_float = true;
            text.push(ch);
        } else {
            break;
        }
        c.bump();
    }
    if is_float {
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Attr::Float(v)),
            Ok(_) => c.error(loc, format!("float literal '{text}' is out of range")),
            Err(_) => c.error(loc, format!("malformed float literal '{text}'")),
        }
    } else {
        match text.parse::<i64>() {
            Ok(v) => Ok(Attr::Int(v)),
            Err(_) => c.error(loc, format!("malformed or out-of-range integer '{text}'")),
        }
    }
}
