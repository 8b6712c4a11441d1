//! `canonicalize`: identity folding and dead-code elimination.

mod common;

use common::*;
use sparseflow_ir::{parse_module, print_module, PassContext, PassManager};

fn canon(text: &str) -> String {
    let mut m = parse_module(text).unwrap_or_else(|e| panic!("{e}"));
    let mut cx = PassContext::new(None);
    PassManager::parse_pipeline("canonicalize")
        .unwrap()
        .run(&mut m, &mut cx)
        .unwrap();
    print_module(&m)
}

#[test]
fn folds_multiply_by_one_and_add_zero() {
    let body = format!(
        "{G}  %1 = arith.constant {{value = 1.0}} : tensor<32xf16>\n  %2 = arith.mulf %0, %1 : ({T}, tensor<32xf16>) -> {T}\n  %3 = arith.constant {{value = 0.0}} : {T}\n  %4 = arith.addf %3, %2 : {T}\n  return %4 : {T}\n"
    );
    let out = canon(&small(&body));
    assert!(!out.contains("arith."), "{out}");
    assert!(out.contains("return %0 :"), "{out}");
}

#[test]
fn keeps_non_identities() {
    let body = format!(
        "{G}  %1 = arith.constant {{value = 2.0}} : tensor<32xf16>\n  %2 = arith.mulf %0, %1 : ({T}, tensor<32xf16>) -> {T}\n  return %2 : {T}\n"
    );
    let out = canon(&small(&body));
    assert!(out.contains("arith.mulf"), "{out}");
}

#[test]
fn relu_of_relu_folds() {
    let body =
        format!("{G}  %1 = arith.relu %0 : {T}\n  %2 = arith.relu %1 : {T}\n  return %2 : {T}\n");
    let out = canon(&small(&body));
    assert_eq!(out.matches("arith.relu").count(), 1, "{out}");
}

#[test]
fn removes_dead_chains() {
    let body =
        format!("{G}  %1 = arith.silu %0 : {T}\n  %2 = arith.gelu %1 : {T}\n  return %r : {T}\n");
    let out = canon(&small(&body));
    assert_eq!(out.lines().count(), 3, "{out}");
}
