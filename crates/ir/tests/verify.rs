//! The verifier reports every problem with op and location; parse errors have line:col.

mod common;

use common::*;
use sparseflow_ir::{parse_module, target, verify_module, IrError, VerifyOptions};

fn parse_err(text: &str) -> String {
    match parse_module(text) {
        Err(e @ IrError::Parse { .. }) => e.to_string(),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

fn verify_errs(text: &str, target_name: Option<&str>) -> Vec<String> {
    let m = parse_module(text).unwrap_or_else(|e| panic!("{e}"));
    let opts = VerifyOptions {
        target: target_name.map(|t| target(t).unwrap()),
        families: Some(FAMILIES),
        ..VerifyOptions::default()
    };
    match verify_module(&m, &opts) {
        Err(e) => e.diagnostics().iter().map(|d| d.to_string()).collect(),
        Ok(()) => vec![],
    }
}

#[test]
fn parse_errors_say_where_what_and_found() {
    let text = small(&format!("{G}  %1 = arith.relu %0 {T}\n  return %1 : {T}\n"));
    assert_eq!(
        parse_err(&text),
        format!("3:22: expected ':' after operands, found 'tensor'")
    );
    assert!(parse_err("func.func @f() {\n  %0 = arith.frobnicate\n}")
        .starts_with("2:8: unknown op 'arith.frobnicate'"));
    assert!(parse_err("func.func @f(%a: tensor<4xi8>) {\n}").contains("unknown element type 'i8'"));
    assert!(
        parse_err("func.func @f(%a: tensor<4xf16>) {\n  return %b : tensor<4xf16>\n}")
            .starts_with("2:10: use of undefined value '%b'")
    );
    assert!(
        parse_err("func.func @f(%a: tensor<4xf16>, %a: tensor<4xf16>) {")
            .contains("redefinition of SSA value '%a'")
    );
    assert!(
        parse_err("func.func @f(%a: tensor<4xf16>) {\n  return %a : tensor<8xf16>\n}")
            .contains("has type tensor<4xf16> but the op's signature says tensor<8xf16>")
    );
    assert!(
        parse_err("func.func @f(%a: tensor<99999999999999999999xf16>) {").contains("too large")
    );
    assert!(parse_err("func.func @f(").contains("end of input"));
}

#[test]
fn gemm_shape_errors_are_all_reported() {
    let text = "func.func @bad(%x: tensor<8x66xf16>, %w: !sparseflow.sparse24<32x66xbf16>) -> tensor<8x16xf16> {\n  %0 = sparseflow.sparse_gemm %x, %w : (tensor<8x66xf16>, !sparseflow.sparse24<32x66xbf16>) -> tensor<8x16xf16>\n  return %0 : tensor<8x16xf16>\n}\n";
    let errs = verify_errs(text, None);
    assert!(
        errs.iter()
            .any(|e| e.starts_with("2:8: 'sparseflow.sparse_gemm' op X is f16 but W is bf16")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("K (66) must be a multiple of 4")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("result must be tensor<8x32xf16>")),
        "{errs:?}"
    );
    assert!(errs.len() >= 3);
}

#[test]
fn k_mismatch_bias_and_epilogue_errors() {
    let t = "func.func @f(%x: tensor<8x64xf16>, %w: !sparseflow.sparse24<32x128xf16>, %b: tensor<16xf16>) -> tensor<8x32xf16> {\n  %0 = sparseflow.fused_sparse_gemm %x, %w, %b {epilogue = \"bias_swish\"} : (tensor<8x64xf16>, !sparseflow.sparse24<32x128xf16>, tensor<16xf16>) -> tensor<8x32xf16>\n  return %0 : tensor<8x32xf16>\n}\n";
    let errs = verify_errs(t, None);
    assert!(
        errs.iter()
            .any(|e| e.contains("X's K (64) does not match W's K (128)")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("unknown epilogue 'bias_swish'; known: none, relu")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("bias must be tensor<32xf16>")),
        "{errs:?}"
    );
    let no_bias = t.replace("bias_swish", "relu");
    assert!(verify_errs(&no_bias, None)
        .iter()
        .any(|e| e.contains("epilogue 'relu' takes no bias operand")));
}

#[test]
fn tile_attributes_are_checked_against_space_and_target() {
    let fused = |attrs: &str| {
        small(&format!(
            "  %0 = sparseflow.fused_sparse_gemm %x, %w {{epilogue = \"none\"{attrs}}} : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>) -> {T}\n  return %0 : {T}\n"
        ))
    };
    let ok = ", family = \"tiled\", tile_m = 128, tile_n = 128, tile_k = 64, warps = 8, stages = 4, split_k = 1";
    assert!(verify_errs(&fused(ok), Some("sm_90a")).is_empty());
    // 4 stages of 128x128x64 need 100 KiB: fine on H100, too much on sm_86.
    let errs = verify_errs(&fused(ok), Some("sm_86"));
    assert!(
        errs.iter()
            .any(|e| e.contains("shared memory per block, sm_86 allows")),
        "{errs:?}"
    );
    let errs = verify_errs(&fused(&ok.replace("tile_n = 128", "tile_n = 96")), None);
    assert!(
        errs.iter()
            .any(|e| e.contains("tile_n = 96 is not supported by family 'tiled'")),
        "{errs:?}"
    );
    let errs = verify_errs(&fused(", tile_m = 128"), None);
    assert!(
        errs.iter()
            .any(|e| e.contains("all-or-nothing; missing family")),
        "{errs:?}"
    );
    let errs = verify_errs(&fused(&ok.replace("\"tiled\"", "\"sm70\"")), None);
    assert!(
        errs.iter().any(|e| e.contains("family = one of tiled")),
        "{errs:?}"
    );
    // Without the registry the IR checks the tile attributes' form only.
    let m = parse_module(&fused(&ok.replace("\"tiled\"", "\"sm70\""))).unwrap();
    verify_module(&m, &VerifyOptions::default()).unwrap();
}

#[test]
fn elementwise_and_return_errors() {
    let text = small(&format!(
        "{G}  %1 = arith.addf %0, %x : ({T}, tensor<?x64xf16>) -> {T}\n  %2 = arith.relu %1 : tensor<?x64xf16>\n  return %0 : {T}\n"
    ));
    // %2's operand type mismatches at parse time already.
    assert!(parse_module(&text).is_err());
    let text = small(&format!(
        "{G}  %1 = arith.addf %0, %x : ({T}, tensor<?x64xf16>) -> {T}\n  return %1 : {T}\n"
    ));
    let errs = verify_errs(&text, None);
    assert!(
        errs.iter()
            .any(|e| e.starts_with("3:8: 'arith.addf' op right operand must be")),
        "{errs:?}"
    );
    let text =
        "func.func @f(%a: tensor<4xf16>) -> tensor<8xf16> {\n  return %a : tensor<4xf16>\n}\n";
    assert!(verify_errs(text, None)
        .iter()
        .any(|e| e.contains("do not match the function's result types")));
    let text = "func.func @f(%a: tensor<4xf16>) {\n  %0 = arith.relu %a : tensor<4xf16>\n}\n";
    assert!(verify_errs(text, None)
        .iter()
        .any(|e| e.contains("must end with 'return'")));
    let text = "func.func @f() {\n  return\n}\nfunc.func @f() {\n  return\n}\n";
    assert!(verify_errs(text, None)
        .iter()
        .any(|e| e.contains("redefinition of function @f")));
}

#[test]
fn unknown_target_lists_known_ones() {
    let err = target("sm_75").unwrap_err().to_string();
    assert_eq!(
        err,
        "unknown target 'sm_75'; known targets: sm_80, sm_86, sm_89, sm_90a, h200"
    );
}
