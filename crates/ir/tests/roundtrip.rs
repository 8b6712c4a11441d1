//! Parser ⇄ printer: canonical text prints back byte-identical, and
//! parse(print(ir)) is the same IR.

mod common;

use common::*;
use sparseflow_ir::{
    parse_module, parse_module_bytes, print_module, verify_module, IrError, Loc, VerifyOptions,
};

fn roundtrip(text: &str) {
    let m = parse_module(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    verify_module(&m, &VerifyOptions::default()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let printed = print_module(&m);
    assert_eq!(printed, text);
    let again = parse_module(&printed).expect("reparse");
    assert_eq!(print_module(&again), printed);
    assert_eq!(again, m, "parse(print(ir)) must equal ir");
}

#[test]
fn mlp_up_example_round_trips() {
    roundtrip(MLP_UP);
    roundtrip(DECODE);
}

#[test]
fn attributes_of_every_kind_round_trip() {
    let text = small(&format!(
        "{G}  %1 = sparseflow.fused_sparse_gemm %x, %w {{epilogue = \"none\", note = \"a \\\"q\\\" \\\\ b\", exact = true, off = false, eps = 1e-5, scale = 0.5, big = 1e20, neg = -3}} : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>) -> {T}\n  return %1 : {T}\n"
    ));
    roundtrip(&text);
}

#[test]
fn multiple_functions_and_results_round_trip() {
    let text = format!(
        "{}\n{}\nfunc.func @two(%a: tensor<8xf32>) -> (tensor<8xf32>, tensor<8xf32>) {{\n  %0 = arith.relu %a : tensor<8xf32>\n  return %0, %a : tensor<8xf32>, tensor<8xf32>\n}}\n\nfunc.func @nothing() {{\n  return\n}}\n",
        MLP_UP, DECODE
    );
    roundtrip(&text);
}

#[test]
fn constants_and_mulf_round_trip() {
    let text = small(&format!(
        "{G}  %1 = arith.constant {{value = 1.0}} : tensor<32xf16>\n  %2 = arith.mulf %0, %1 : ({T}, tensor<32xf16>) -> {T}\n  return %2 : {T}\n"
    ));
    roundtrip(&text);
}

#[test]
fn comments_and_free_layout_normalise() {
    let text = "// leading comment\nfunc.func @f(%a: tensor<4xf16>) -> tensor<4xf16> { // trailing\n  %r =   arith.relu %a: tensor<4xf16> // named result\n\n  return %r : tensor<4xf16>\n}\n";
    let m = parse_module(text).unwrap();
    let printed = print_module(&m);
    assert_eq!(
        printed,
        "func.func @f(%a: tensor<4xf16>) -> tensor<4xf16> {\n  %0 = arith.relu %a : tensor<4xf16>\n  return %0 : tensor<4xf16>\n}\n"
    );
}

#[test]
fn numeric_parameter_names_do_not_collide_with_results() {
    let text = "func.func @f(%0: tensor<4xf16>) -> tensor<4xf16> {\n  %1 = arith.relu %0 : tensor<4xf16>\n  return %1 : tensor<4xf16>\n}\n";
    roundtrip(text);
}

/// Bytes that are not UTF-8 are a parse error at the first bad byte, not a panic or a lossy
/// reading (`sparseflow opt` reads files as bytes).
#[test]
fn non_utf8_input_is_a_located_parse_error() {
    let mut bytes = MLP_UP.as_bytes().to_vec();
    assert!(parse_module_bytes(&bytes).is_ok());
    let second_line = MLP_UP.find('\n').unwrap() + 1;
    bytes.splice(second_line + 2..second_line + 2, [0xc3]);
    let Err(IrError::Parse { loc, message }) = parse_module_bytes(&bytes) else {
        panic!("expected a parse error");
    };
    assert_eq!(loc, Loc { line: 2, col: 3 });
    assert!(message.contains("not valid UTF-8 (byte 0xc3"), "{message}");
}
