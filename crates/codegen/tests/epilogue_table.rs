//! The epilogue table's CUDA side, checked without NVRTC: every device function an
//! `EpilogueSpec::cuda_expr` calls is defined in `kernels/epilogue.cuh`, and every activation
//! has an entry whose expression calls one. (`compile_all.rs` then compiles every epilogue.)

use sparseflow_codegen::EPILOGUE_CUH;
use sparseflow_core::{ElementwiseOp, EPILOGUES};

/// The `sf_*` identifiers called in a CUDA expression.
fn called(expr: &str) -> Vec<&str> {
    expr.match_indices("sf_")
        .map(|(start, _)| {
            let len = expr[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(expr.len() - start);
            &expr[start..start + len]
        })
        .collect()
}

fn defined(function: &str) -> bool {
    EPILOGUE_CUH
        .lines()
        .any(|l| l.starts_with("__device__") && l.contains(&format!(" {function}(")))
}

#[test]
fn every_called_device_function_is_defined() {
    for spec in EPILOGUES {
        for f in called(spec.cuda_expr) {
            assert!(
                defined(f),
                "epilogue {}: `{}` calls {f}, which kernels/epilogue.cuh does not define",
                spec.name,
                spec.cuda_expr
            );
        }
    }
}

#[test]
fn every_activation_has_a_device_function() {
    for op in ElementwiseOp::activations() {
        let name = op.activation_name().unwrap();
        let spec = EPILOGUES
            .iter()
            .find(|s| s.activation_ops() == [op])
            .unwrap_or_else(|| panic!("activation {name} has no epilogue of its own"));
        assert_eq!(
            called(spec.cuda_expr),
            [format!("sf_{name}")],
            "epilogue {} should call sf_{name}",
            spec.name
        );
    }
    assert!(!defined("sf_no_such_function"));
}
