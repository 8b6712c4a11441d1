//! Planning a layer call (`Registry::plan` → `plan_layer` over the registered families): builds,
//! fuses, tiles, verifies, at the M bucket.

use std::time::Instant;

use sparseflow_codegen::{PlannedKernel, Registry};
use sparseflow_core::{DType, EpilogueKind, EPILOGUES};
use sparseflow_ir::select::m_bucket;
use sparseflow_ir::{parse_module, print_module, target, IrError, LayerProblem, TARGETS};

fn plan(
    m: u64,
    n: u64,
    k: u64,
    dtype: DType,
    epilogue: EpilogueKind,
    target_name: &str,
) -> Result<PlannedKernel, IrError> {
    let t = target(target_name)?;
    Registry::builtin().plan(
        &LayerProblem {
            m,
            n,
            k,
            dtype,
            epilogue,
        },
        t,
    )
}

#[test]
fn plans_every_epilogue_on_every_target() {
    for t in TARGETS {
        for spec in EPILOGUES {
            for m in [1, 16, 512] {
                let p = plan(m, 4096, 4096, DType::BF16, spec.kind, &t.name).unwrap();
                assert_eq!(p.plan.epilogue, spec.kind);
                assert_eq!(p.spec.config, p.plan.config);
                assert_eq!(p.spec.target, t.arch);
                // Past 16 tokens: a wgmma.sp registration where the target has it (sm_90a; the
                // H200's tuning table picks among the sm90 registrations), else sm80.
                let family = p.plan.config.family;
                if m <= 16 {
                    assert_eq!(family, "decode");
                } else if t.arch == "sm_90a" {
                    assert!(family.starts_with("sm90"), "{family}");
                } else {
                    assert_eq!(family, "sm80");
                }
                let ir = &p.plan.ir_text;
                assert!(
                    ir.contains(&format!("epilogue = \"{}\"", spec.name)),
                    "{ir}"
                );
                // The plan's IR is itself valid, canonical text.
                assert_eq!(print_module(&parse_module(ir).unwrap()), *ir);
            }
        }
    }
}

#[test]
fn plan_errors_are_values() {
    let e = target("sm_70").unwrap_err();
    assert!(e.to_string().contains("known targets: sm_80"), "{e}");
    assert!(plan(0, 4096, 4096, DType::F16, EpilogueKind::None, "sm_80").is_err());
    let e = plan(8, 64, 66, DType::F16, EpilogueKind::Relu, "sm_80").unwrap_err();
    assert!(e.to_string().contains("multiple of 4"), "{e}");
}

/// The runtime refuses N, K or M beyond i32::MAX; so does planning, naming value and limit.
/// The bucket of an M <= i32::MAX may be 2^31: it is planned like i32::MAX.
#[test]
fn plan_refuses_dims_beyond_32_bits() {
    let big = 1u64 << 31;
    for (m, n, k, what) in [(1, big, 4096, "N"), (1, 4096, big + 4, "K")] {
        let e = plan(m, n, k, DType::F16, EpilogueKind::None, "sm_90a").unwrap_err();
        assert!(
            e.to_string().contains(&format!(
                "{what} = {} exceeds the kernels' 32-bit limit of 2147483647",
                n.max(k)
            )),
            "{e}"
        );
    }
    let e = plan(big, 4096, 4096, DType::F16, EpilogueKind::None, "sm_90a").unwrap_err();
    assert!(e.to_string().contains("m = 2147483648 exceeds"), "{e}");
    let at_max = plan(
        big - 1,
        4096,
        4096,
        DType::F16,
        EpilogueKind::None,
        "sm_90a",
    )
    .unwrap();
    assert_eq!(at_max.plan.bucket_m, big);
}

#[test]
fn plan_is_cheap() {
    let start = Instant::now();
    for i in 0..200 {
        plan(
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

/// One bucketing rule: the plan of M is the plan of its bucket, so `sparseflow compile --m 3`
/// prepares exactly the kernel a 3-token call runs.
#[test]
fn m_is_planned_at_its_bucket() {
    assert!(m_bucket(0).is_err());
    assert_eq!(
        [1, 2, 3, 7, 16, 17, 1000].map(|m| m_bucket(m).unwrap()),
        [1, 2, 4, 8, 16, 32, 1024]
    );
    for (m, bucket) in [(3, 4), (33, 64), (300, 512)] {
        let a = plan(m, 4096, 4096, DType::F16, EpilogueKind::None, "sm_90a").unwrap();
        let b = plan(bucket, 4096, 4096, DType::F16, EpilogueKind::None, "sm_90a").unwrap();
        assert_eq!(a, b, "M = {m}");
        assert_eq!(a.plan.bucket_m, bucket);
    }
}
