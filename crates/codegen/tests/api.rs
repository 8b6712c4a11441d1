//! Launch geometry, validation and naming (no NVRTC needed).

use sparseflow_codegen::{generate, parse_target, KernelSpec, Registry, WORKSPACE_EMPTY};
use sparseflow_core::{DType, EpilogueKind};
use sparseflow_ir::{target, KernelConfig};

fn spec(family: &'static str) -> KernelSpec {
    match family {
        "sm80" => KernelSpec {
            config: KernelConfig {
                family,
                tile_m: 64,
                tile_n: 128,
                tile_k: 64,
                warps: 4,
                stages: 3,
                split_k: 1,
            },
            dtype: DType::F16,
            epilogue: EpilogueKind::BiasSilu,
            target: "sm_90a".into(),
        },
        _ => KernelSpec {
            config: KernelConfig {
                family,
                tile_m: 16,
                tile_n: 64,
                tile_k: 256,
                warps: 4,
                stages: 2,
                split_k: 4,
            },
            dtype: DType::BF16,
            epilogue: EpilogueKind::None,
            target: "sm_80".into(),
        },
    }
}

#[test]
fn sm80_geometry() {
    let k = generate(&spec("sm80")).unwrap();
    let h100 = target("sm_90a").unwrap();
    let g = k.geometry(100, 300, 4096, h100);
    assert_eq!(g.grid, (3, 2, 1));
    assert_eq!(g.block, 128);
    assert_eq!(g.dynamic_smem, k.smem_bytes());
    assert_eq!(k.smem_bytes(), 3 * (128 * 72 + 64 * 128));
    assert_eq!(k.workspace_bytes(100, 300, 4096, h100), 0);
    assert!(k
        .source
        .contains("#define SF_EPILOGUE(acc, bias) (sf_silu(acc + bias))"));
    assert!(k.source.contains("#define SF_USES_BIAS 1"));
    assert!(k.source.contains(&format!("SF_KERNEL_NAME {}", k.name)));
}

#[test]
fn decode_geometry() {
    let k = generate(&spec("decode")).unwrap();
    let a100 = target("sm_80").unwrap();
    assert_eq!(k.geometry(5, 1000, 4096, a100).grid, (16, 4, 1));
    assert_eq!(k.geometry(20, 1000, 4096, a100).grid, (16, 4, 2));
    assert_eq!(k.smem_bytes(), 0);
    // 16 output tiles, split 4: three peers hand over a 16x64 fp32 partial each.
    assert_eq!(k.workspace_bytes(5, 1000, 4096, a100), 16 * 3 * 16 * 64 * 4);
    // The runtime fills the workspace with the sentinel the kernel polls for: one value.
    assert!(
        k.source
            .contains(&format!("#define SF_WS_EMPTY {WORKSPACE_EMPTY:#x}u\n")),
        "SF_WS_EMPTY in kernels/mma_sp.cuh must equal WORKSPACE_EMPTY"
    );
    let mut s = spec("decode");
    s.config.split_k = 1;
    let k1 = generate(&s).unwrap();
    assert_eq!(k1.workspace_bytes(5, 1000, 4096, a100), 0);
}

#[test]
fn rejects_unsupported_specs() {
    let mut s = spec("sm80");
    s.config.tile_n = 96;
    assert!(generate(&s).unwrap_err().to_string().contains("tile_n"));
    let mut s = spec("decode");
    s.dtype = DType::F32;
    assert!(generate(&s).is_err());
    let mut s = spec("decode");
    s.target = "sm_75".into();
    assert!(generate(&s)
        .unwrap_err()
        .to_string()
        .contains("sm_80 or newer"));
    assert_eq!(parse_target("sm_90a").unwrap(), (90, true));
    assert!(parse_target("compute_90").is_err());
}

#[test]
fn names_are_unique_across_the_space() {
    let mut names = std::collections::HashSet::new();
    let registry = Registry::builtin();
    for family in registry.families() {
        for dtype in [DType::F16, DType::BF16] {
            for epi in EpilogueKind::all() {
                for s in registry
                    .enumerate(family.name(), dtype, epi, "sm_90a")
                    .unwrap()
                {
                    assert!(names.insert(generate(&s).unwrap().name));
                }
            }
        }
    }
}
