//! `fuse-epilogue`: longest table match, single-use rule, table-driven extension.

mod common;

use common::*;
use sparseflow_core::{ElementwiseOp, EpilogueKind, EpilogueSpec, EPILOGUES};
use sparseflow_ir::passes::fuse_epilogue::fuse_function;
use sparseflow_ir::{
    parse_module, print_module, verify_module, PassContext, PassManager, VerifyOptions,
};

fn run(text: &str, pipeline: &str) -> String {
    let mut m = parse_module(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut cx = PassContext::new(sparseflow_ir::target("sm_90a").ok());
    PassManager::parse_pipeline(pipeline)
        .unwrap()
        .run(&mut m, &mut cx)
        .unwrap();
    print_module(&m)
}

fn fused_line(out: &str) -> &str {
    out.lines()
        .find(|l| l.contains("fused_sparse_gemm"))
        .expect("a fused op")
}

#[test]
fn bias_silu_beats_bias_alone() {
    let out = run(MLP_UP, "fuse-epilogue");
    assert!(
        fused_line(&out).contains("%x, %w, %b {epilogue = \"bias_silu\"}"),
        "{out}"
    );
    assert!(!out.contains("arith."), "{out}");
}

#[test]
fn every_table_entry_is_matched_from_its_op_sequence() {
    for spec in EPILOGUES {
        let mut body = G.to_string();
        let mut last = 0;
        for op in spec.ops {
            let line = match op {
                ElementwiseOp::AddBias => format!(
                    "  %{} = arith.addf %{last}, %b : ({T}, tensor<32xf16>) -> {T}\n",
                    last + 1
                ),
                other => format!("  %{} = {} %{last} : {T}\n", last + 1, other.ir_name()),
            };
            body.push_str(&line);
            last += 1;
        }
        body.push_str(&format!("  return %{last} : {T}\n"));
        let out = run(&small(&body), "fuse-epilogue");
        assert!(
            fused_line(&out).contains(&format!("{{epilogue = \"{}\"}}", spec.name)),
            "{}: {out}",
            spec.name
        );
        assert_eq!(
            out.lines().count(),
            4,
            "{}: only the fused op and return remain:\n{out}",
            spec.name
        );
    }
}

#[test]
fn never_fuses_through_a_value_with_another_use() {
    // %1 (gemm + bias) is also returned-into %3, so relu must stay separate.
    let body = format!(
        "{G}  %1 = arith.addf %0, %b : ({T}, tensor<32xf16>) -> {T}\n  %2 = arith.relu %1 : {T}\n  %3 = arith.addf %1, %2 : {T}\n  return %3 : {T}\n"
    );
    let out = run(&small(&body), "fuse-epilogue");
    assert!(fused_line(&out).contains("epilogue = \"bias\""), "{out}");
    assert!(out.contains("arith.relu"), "{out}");
    // The gemm result itself has two uses: nothing may be folded into it.
    let body = format!(
        "{G}  %1 = arith.relu %0 : {T}\n  %2 = arith.addf %0, %1 : {T}\n  return %2 : {T}\n"
    );
    let out = run(&small(&body), "fuse-epilogue");
    assert!(fused_line(&out).contains("epilogue = \"none\""), "{out}");
    assert!(out.contains("arith.relu"), "{out}");
}

#[test]
fn residual_add_is_not_a_bias() {
    let body = format!("{G}  %1 = arith.addf %0, %r : {T}\n  return %1 : {T}\n");
    let out = run(&small(&body), "fuse-epilogue");
    assert!(fused_line(&out).contains("epilogue = \"none\""), "{out}");
    assert!(out.contains("arith.addf %0, %r"), "{out}");
}

#[test]
fn already_fused_op_is_extended() {
    let body = format!(
        "  %0 = sparseflow.fused_sparse_gemm %x, %w, %b {{epilogue = \"bias\"}} : (tensor<?x64xf16>, !sparseflow.sparse24<32x64xf16>, tensor<32xf16>) -> {T}\n  %1 = arith.gelu %0 : {T}\n  return %1 : {T}\n"
    );
    let out = run(&small(&body), "fuse-epilogue");
    assert!(
        fused_line(&out).contains("epilogue = \"bias_gelu\""),
        "{out}"
    );
    assert!(!out.contains("arith.gelu"), "{out}");
}

/// An entry appended to the table is matched with no change to the pass.
#[test]
fn extended_table_entry_is_matched_without_changing_the_pass() {
    let mut table: Vec<EpilogueSpec> = EPILOGUES.to_vec();
    table.push(EpilogueSpec {
        kind: EpilogueKind::Silu,
        name: "bias_silu_relu_test",
        abi_value: 1000,
        uses_bias: true,
        cuda_expr: "sf_relu(sf_silu(acc + bias))",
        cpu: |a, b| (a + b).max(0.0),
        ops: &[
            ElementwiseOp::AddBias,
            ElementwiseOp::Silu,
            ElementwiseOp::Relu,
        ],
    });
    let body = format!(
        "{G}  %1 = arith.addf %0, %b : ({T}, tensor<32xf16>) -> {T}\n  %2 = arith.silu %1 : {T}\n  %3 = arith.relu %2 : {T}\n  return %3 : {T}\n"
    );
    let text = small(&body);

    let mut m = parse_module(&text).unwrap();
    fuse_function(&mut m.functions[0], EPILOGUES);
    let out = print_module(&m);
    assert!(
        fused_line(&out).contains("\"bias_silu\""),
        "standard table: {out}"
    );
    assert!(out.contains("arith.relu"));

    let mut m = parse_module(&text).unwrap();
    fuse_function(&mut m.functions[0], &table);
    let out = print_module(&m);
    assert!(
        fused_line(&out).contains("\"bias_silu_relu_test\""),
        "extended table: {out}"
    );
    assert!(!out.contains("arith."), "{out}");
    let opts = VerifyOptions {
        epilogues: &table,
        ..VerifyOptions::default()
    };
    verify_module(&m, &opts).unwrap();
}

#[test]
fn fusion_is_idempotent_and_leaves_unmatched_ops() {
    let once = run(MLP_UP, "fuse-epilogue");
    let twice = run(&once, "fuse-epilogue");
    assert_eq!(once, twice);
    let body = format!("{G}  %1 = arith.mulf %0, %r : {T}\n  return %1 : {T}\n");
    let out = run(&small(&body), "fuse-epilogue");
    assert!(out.contains("arith.mulf"), "{out}");
}
