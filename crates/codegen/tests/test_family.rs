//! A kernel family registered from this file alone — a dense reference kernel with its own
//! launch parameters (a 128-byte by-value struct, like a TMA descriptor) — is enumerated,
//! planned, generated and compiled with NVRTC exactly like the built-in ones. No other file
//! names it: this is the recipe of kernels/README.md "How to add a kernel family", proven.
//!
//! NVRTC must be loadable (see compile_all.rs); without it the compile step fails, never skips.

use sparseflow_codegen::{
    CodegenError, Compiler, CompilerOptions, Family, KernelParams, KernelSpec, LaunchInputs,
    Registry, Source,
};
use sparseflow_core::{DType, EpilogueKind};
use sparseflow_ir::{
    ConfigSpace, Eligibility, FamilyModel, GemmShape, KernelConfig, LayerProblem, Resources,
    Target, TileChoice,
};

/// One thread per output; reads W through the fragment layout every family shares (here only
/// as raw bytes: a reference kernel, not a fast one) and a by-value parameter block.
const TEMPLATE: &str = r#"
struct RefParams { unsigned long long words[16]; };
extern "C" __global__ void SF_KERNEL_NAME(const RefParams p, const sf_t* __restrict__ x,
                                          const unsigned char* __restrict__ wvals,
                                          sf_t* __restrict__ y, int M, int N, int K) {
    const int n = blockIdx.x * TILE_N + threadIdx.x % TILE_N;
    const int m = blockIdx.y * TILE_M + threadIdx.x / TILE_N;
    if (m >= M || n >= N) return;
    float acc = 0.f;
    for (int k = 0; k < K / 2; ++k) acc += sf_to_float(x[(size_t)m * K + k]) * (float)wvals[k];
    const float bias = 0.f;
    y[(size_t)m * N + n] = sf_from_float(SF_EPILOGUE(acc + (float)p.words[0], bias));
}
"#;

#[derive(Debug)]
struct DenseRef;

static DENSE_REF: DenseRef = DenseRef;

const SPACE: ConfigSpace = ConfigSpace {
    tile_m: &[4],
    tile_n: &[32],
    tile_k: &[64],
    warps: &[4],
    stages: &[1],
    split_k: &[1],
};

impl FamilyModel for DenseRef {
    fn name(&self) -> &'static str {
        "dense_ref"
    }
    fn summary(&self) -> &'static str {
        "test-only dense reference kernel"
    }
    fn space(&self) -> &ConfigSpace {
        &SPACE
    }
    fn supports_arch(&self, arch: &str) -> bool {
        arch == "sm_90a"
    }
    /// Claims every M it can serve, so planning must pick it.
    fn eligibility(&self, _m: u64, shape: &GemmShape, _t: &Target) -> Eligibility {
        if shape.k.is_multiple_of(8) {
            Eligibility::Preferred
        } else {
            Eligibility::Unfit
        }
    }
    fn resources(&self, cfg: &KernelConfig, _dtype: DType) -> Resources {
        Resources {
            threads: cfg.warps * 32,
            dynamic_smem: 0,
            regs_per_thread: 32,
        }
    }
    fn grid(&self, cfg: &KernelConfig, m: u32, n: u32, _k: u32, t: &Target) -> (u32, u32, u32) {
        // Persistent-style sizing from the target, as a Hopper family would.
        let x = n.div_ceil(cfg.tile_n).min(t.sm_count);
        (x, m.div_ceil(cfg.tile_m), 1)
    }
    fn estimate(
        &self,
        cfg: &KernelConfig,
        _shape: &GemmShape,
        _m: u64,
        _t: &Target,
    ) -> Option<TileChoice> {
        Some(TileChoice {
            config: *cfg,
            est_us: 1.0,
            compute_us: 0.0,
            dram_us: 0.0,
            l2_us: 0.0,
            blocks_per_sm: 1,
            grid: 1,
            waves: 1.0,
            wave_efficiency: 1.0,
        })
    }
}

impl Family for DenseRef {
    fn template(&self) -> Source {
        Source {
            file: "dense_ref.cu (test)",
            text: TEMPLATE,
        }
    }
    fn launch_params(
        &self,
        _spec: &KernelSpec,
        i: &LaunchInputs,
        t: &Target,
    ) -> Result<KernelParams, CodegenError> {
        let mut block = [0u8; 128];
        block[..8].copy_from_slice(&u64::from(t.sm_count).to_ne_bytes());
        let mut p = KernelParams::new();
        p.push_bytes(&block, 64)?.ptr(i.x)?.ptr(i.wvals)?.ptr(i.y)?;
        p.int(i.m)?.int(i.n)?.int(i.k)?;
        Ok(p)
    }
}

fn registry() -> Registry {
    Registry::builtin().clone().with(&DENSE_REF)
}

#[test]
fn a_family_registered_here_is_enumerated_planned_generated_and_compiled() {
    let r = registry();
    let h200 = sparseflow_ir::target("h200").unwrap();

    // Enumerated, only where it has a kernel.
    assert!(r.families().iter().any(|f| f.name() == "dense_ref"));
    let specs = r
        .enumerate("dense_ref", DType::F16, EpilogueKind::Relu, "sm_90a")
        .unwrap();
    assert_eq!(specs.len(), 1);
    assert!(r
        .enumerate("dense_ref", DType::F16, EpilogueKind::Relu, "sm_80")
        .unwrap()
        .is_empty());

    // Planned: it wins where it claims the shape, the built-in families serve the rest.
    let problem = |k| LayerProblem {
        m: 3,
        n: 4096,
        k,
        dtype: DType::F16,
        epilogue: EpilogueKind::Relu,
    };
    let planned = r.plan(&problem(4096), h200).unwrap();
    assert_eq!(planned.spec.config.family, "dense_ref");
    assert!(planned.plan.ir_text.contains("family = \"dense_ref\""));
    let other = r.plan(&problem(4100), h200).unwrap();
    assert_eq!(other.spec.config.family, "decode");
    // The built-in registry does not know it.
    assert_eq!(
        Registry::builtin()
            .plan(&problem(4096), h200)
            .unwrap()
            .spec
            .config
            .family,
        "decode"
    );

    // Generated, with its own geometry and launch parameters.
    let kernel = r.generate(&planned.spec).unwrap();
    assert!(kernel
        .source
        .contains("// ---- kernels/dense_ref.cu (test) ----"));
    assert_eq!(kernel.geometry(3, 4096, 4096, h200).grid, (128, 1, 1));
    let inputs = LaunchInputs {
        x: 0x1000,
        wvals: 0x2000,
        wmeta: 0x3000,
        bias: 0,
        y: 0x4000,
        workspace: 0,
        m: 3,
        n: 4096,
        k: 4096,
    };
    let params = kernel.launch_params(&inputs, h200).unwrap();
    let values: Vec<&[u8]> = params.values().collect();
    assert_eq!(values.len(), 7);
    assert_eq!(values[0].len(), 128);
    assert_eq!(values[0][..8], 132u64.to_ne_bytes());
    assert_eq!(values[3], 0x4000u64.to_ne_bytes());

    // Compiled with NVRTC.
    let compiler = Compiler::with_options(CompilerOptions {
        cache_dir: None,
        deny_spills: true,
        use_cache: false,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let compiled = compiler.compile(&kernel).unwrap_or_else(|e| panic!("{e}"));
    assert!(!compiled.cubin.is_empty());
}
