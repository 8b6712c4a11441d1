//! `plan_layer`, the runtime's entry: builds, fuses, tiles, verifies.

use std::time::Instant;

use sparseflow_core::{DType, EpilogueKind, EPILOGUES};
use sparseflow_ir::{m_bucket, parse_module, plan_layer, print_module, TARGETS};

#[test]
fn plans_every_epilogue_on_every_target() {
    for t in TARGETS {
        for spec in EPILOGUES {
            for m in [1, 16, 512] {
                let p = plan_layer(m, 4096, 4096, DType::BF16, spec.kind, t.name).unwrap();
                assert_eq!(p.epilogue, spec.kind);
                assert_eq!(p.family, if m <= 16 { "decode" } else { "sm80" });
                assert!(
                    p.ir_text.contains(&format!("epilogue = \"{}\"", spec.name)),
                    "{}",
                    p.ir_text
                );
                // The plan's IR is itself valid, canonical text.
                assert_eq!(print_module(&parse_module(&p.ir_text).unwrap()), p.ir_text);
            }
        }
    }
}

#[test]
fn plan_errors_are_values() {
    let e = plan_layer(1, 4096, 4096, DType::F16, EpilogueKind::None, "sm_70").unwrap_err();
    assert!(e.to_string().contains("known targets: sm_80"), "{e}");
    assert!(plan_layer(0, 4096, 4096, DType::F16, EpilogueKind::None, "sm_80").is_err());
    let e = plan_layer(8, 64, 66, DType::F16, EpilogueKind::Relu, "sm_80").unwrap_err();
    assert!(e.to_string().contains("multiple of 4"), "{e}");
}

/// The runtime refuses N, K or M beyond i32::MAX; so does planning, naming value and limit.
/// M may be the runtime's bucket of an M <= i32::MAX (the next power of two, 2^31).
#[test]
fn plan_refuses_dims_beyond_32_bits() {
    let big = 1usize << 31;
    for (m, n, k, what) in [(1, big, 4096, "N"), (1, 4096, big + 4, "K")] {
        let e = plan_layer(m, n, k, DType::F16, EpilogueKind::None, "sm_90a").unwrap_err();
        assert!(
            e.to_string().contains(&format!(
                "{what} = {} exceeds the kernels' 32-bit limit of 2147483647",
                n.max(k)
            )),
            "{e}"
        );
    }
    let e = plan_layer(
        big + 1,
        4096,
        4096,
        DType::F16,
        EpilogueKind::None,
        "sm_90a",
    )
    .unwrap_err();
    assert!(e.to_string().contains("M = 2147483649 exceeds"), "{e}");
    let at_max = plan_layer(
        big - 1,
        4096,
        4096,
        DType::F16,
        EpilogueKind::None,
        "sm_90a",
    )
    .unwrap();
    let bucket = plan_layer(big, 4096, 4096, DType::F16, EpilogueKind::None, "sm_90a").unwrap();
    assert_eq!(at_max, bucket);
}

#[test]
fn plan_is_cheap() {
    let start = Instant::now();
    for i in 0..200 {
        plan_layer(
            1 + i % 64,
            14336,
            4096,
            DType::F16,
            EpilogueKind::BiasSilu,
            "sm_90a",
        )
        .unwrap();
    }
    // Generous even for unoptimised debug builds on a loaded machine.
    assert!(start.elapsed().as_secs_f64() < 5.0, "{:?}", start.elapsed());
}

#[test]
fn m_buckets() {
    assert_eq!(m_bucket(0), 1);
    assert_eq!(m_bucket(7), 7);
    assert_eq!(m_bucket(17), 32);
    assert_eq!(m_bucket(4096), 4096);
}
