//! Spec → CUDA source. The templates in `kernels/` are complete CUDA; this module only prepends
//! `#define` lines (tile sizes, dtype, epilogue expression) and inlines the shared headers.

use crate::error::CodegenError;
use crate::spec::{parse_target, KernelFamily, KernelSpec};
use sparseflow_core::DType;

const MMA_SP_CUH: &str = include_str!("../kernels/mma_sp.cuh");
/// The epilogue device functions (`sf_relu`, `sf_silu`, `sf_gelu`, `sf_gelu_tanh`) every
/// `EpilogueSpec::cuda_expr` may call; public so other kernels (the benchmark's separate
/// elementwise kernel) compute exactly what the fused epilogue computes.
pub const EPILOGUE_CUH: &str = include_str!("../kernels/epilogue.cuh");
const SM80_CU: &str = include_str!("../kernels/sm80_sparse_gemm.cu");
const DECODE_CU: &str = include_str!("../kernels/decode_sparse_gemm.cu");

/// A generated kernel: its entry-point name, full CUDA source, and the launch geometry.
#[derive(Debug, Clone)]
pub struct GeneratedKernel {
    pub name: String,
    pub source: String,
    pub spec: KernelSpec,
}

fn div_ceil(a: u32, b: u32) -> u32 {
    a.div_ceil(b).max(1)
}

impl GeneratedKernel {
    /// Launch grid for Y[m, n] = X[m, k] · Wᵀ.
    pub fn grid(&self, m: u32, n: u32, _k: u32) -> (u32, u32, u32) {
        let s = &self.spec;
        match s.family {
            KernelFamily::Sm80 => (div_ceil(n, s.tile_n), div_ceil(m, s.tile_m), 1),
            KernelFamily::Decode => (div_ceil(n, s.tile_n), s.split_k, div_ceil(m, s.tile_m)),
        }
    }

    pub fn block_threads(&self) -> u32 {
        self.spec.warps * 32
    }

    /// Dynamic shared memory to pass at launch (the decode family uses static shared memory only).
    pub fn smem_bytes(&self) -> u32 {
        let s = &self.spec;
        match s.family {
            // Per stage: A values (tile_n/16 blocks × 2 K steps × 512 B), metadata
            // (tile_n/16 × 128 B) and X (tile_m rows × 128 B).
            KernelFamily::Sm80 => s.stages * (s.tile_n * 64 + s.tile_n * 8 + s.tile_m * 128),
            KernelFamily::Decode => 0,
        }
    }

    fn output_tiles(&self, m: u32, n: u32) -> usize {
        let s = &self.spec;
        div_ceil(n, s.tile_n) as usize * div_ceil(m, s.tile_m) as usize
    }

    /// fp32 split-K partials: split_k slots of tile_m × tile_n per output tile (none when the
    /// split-K CTAs reduce through a thread-block cluster).
    pub fn workspace_bytes(&self, m: u32, n: u32, _k: u32) -> usize {
        let s = &self.spec;
        if s.family == KernelFamily::Decode && s.split_k > 1 && !cluster_reduce(s) {
            self.output_tiles(m, n) * (s.split_k * s.tile_m * s.tile_n) as usize * 4
        } else {
            0
        }
    }

    /// Arrival counters (one per output tile), zeroed once at allocation; the kernel leaves
    /// them at zero after every launch.
    pub fn counter_count(&self, m: u32, n: u32, _k: u32) -> usize {
        let s = &self.spec;
        if s.family == KernelFamily::Decode && s.split_k > 1 && !cluster_reduce(s) {
            self.output_tiles(m, n)
        } else {
            0
        }
    }
}

/// Off: the cluster (DSMEM) split-K reduction is correct on the H100 but measured 0–5% slower
/// than the workspace + last-CTA reduction (cluster co-scheduling costs more than the global
/// round trips it saves), so the decode template keeps it behind `SF_CLUSTER_REDUCE`.
const CLUSTER_REDUCE_ENABLED: bool = false;

/// Whether a decode kernel reduces split-K partials inside a thread-block cluster (distributed
/// shared memory, sm_90+) instead of through the global workspace: clusters of up to 8 CTAs are
/// portable, so split_k 2..=8.
pub fn cluster_reduce(spec: &KernelSpec) -> bool {
    let cc = parse_target(&spec.target).map(|(cc, _)| cc).unwrap_or(0);
    CLUSTER_REDUCE_ENABLED
        && spec.family == KernelFamily::Decode
        && cc >= 90
        && (2..=8).contains(&spec.split_k)
}

/// The kernel's entry-point name; unique per spec except the target (the cache key adds it).
pub fn kernel_name(spec: &KernelSpec) -> String {
    format!(
        "sparseflow_{}_{}_{}_m{}n{}k{}_w{}s{}_sk{}",
        spec.family.name(),
        spec.dtype.ir_name(),
        spec.epilogue.name(),
        spec.tile_m,
        spec.tile_n,
        spec.tile_k,
        spec.warps,
        spec.stages,
        spec.split_k
    )
}

/// Generates the CUDA source of one kernel.
pub fn generate(spec: &KernelSpec) -> Result<GeneratedKernel, CodegenError> {
    spec.validate()?;
    let name = kernel_name(spec);
    let epi = spec.epilogue.spec();
    let dtype_define = match spec.dtype {
        DType::F16 => "SF_DTYPE_F16",
        DType::BF16 => "SF_DTYPE_BF16",
        DType::F32 => unreachable!("validate() rejects f32"),
    };
    let template = match spec.family {
        KernelFamily::Sm80 => SM80_CU,
        KernelFamily::Decode => DECODE_CU,
    };
    let mut src =
        String::with_capacity(template.len() + MMA_SP_CUH.len() + EPILOGUE_CUH.len() + 1024);
    src.push_str(&format!(
        "// Generated by sparseflow-codegen: family {}, {} {}, target {}. Do not edit; edit\n\
         // crates/codegen/kernels/ instead.\n",
        spec.family.name(),
        spec.dtype,
        epi.name,
        spec.target
    ));
    src.push_str(&format!("#define SF_KERNEL_NAME {name}\n"));
    src.push_str(&format!("#define {dtype_define} 1\n"));
    for (key, value) in [
        ("TILE_M", spec.tile_m),
        ("TILE_N", spec.tile_n),
        ("TILE_K", spec.tile_k),
        ("WARPS", spec.warps),
        ("STAGES", spec.stages),
        ("SPLIT_K", spec.split_k),
    ] {
        src.push_str(&format!("#define {key} {value}\n"));
    }
    src.push_str(&format!(
        "#define SF_CLUSTER_REDUCE {}\n",
        u32::from(cluster_reduce(spec))
    ));
    src.push_str(&format!(
        "#define SF_USES_BIAS {}\n",
        u32::from(epi.uses_bias)
    ));
    src.push_str(&format!(
        "#define SF_EPILOGUE(acc, bias) ({})\n",
        epi.cuda_expr
    ));
    for (file, body) in [
        ("mma_sp.cuh", MMA_SP_CUH),
        ("epilogue.cuh", EPILOGUE_CUH),
        (template_file(spec.family), template),
    ] {
        src.push_str(&format!("// ---- kernels/{file} ----\n"));
        src.push_str(body);
        if !body.ends_with('\n') {
            src.push('\n');
        }
    }
    Ok(GeneratedKernel {
        name,
        source: src,
        spec: spec.clone(),
    })
}

fn template_file(family: KernelFamily) -> &'static str {
    match family {
        KernelFamily::Sm80 => "sm80_sparse_gemm.cu",
        KernelFamily::Decode => "decode_sparse_gemm.cu",
    }
}
