//! The "separate elementwise kernel" of `--epilogue-overhead`: `y = epilogue(y [+ b])` in place,
//! compiled with NVRTC from the epilogue table's CUDA expression (the same one SparseFlow fuses).

use std::sync::Arc;

use anyhow::{anyhow, Result};
use cudarc::driver::{CudaFunction, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
use sparseflow_codegen::EPILOGUE_CUH;
use sparseflow_core::EpilogueKind;

use super::Gpu;

// The epilogue functions come from sparseflow_codegen::EPILOGUE_CUH (prepended at compile time).
const SOURCE: &str = r#"
#if SF_BF16
__device__ __forceinline__ float ld(unsigned short v) { return __uint_as_float(((unsigned)v) << 16); }
__device__ __forceinline__ unsigned short st(float f) { unsigned short r; asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(f)); return r; }
#else
__device__ __forceinline__ float ld(unsigned short v) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v)); return f; }
__device__ __forceinline__ unsigned short st(float f) { unsigned short r; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(f)); return r; }
#endif
extern "C" __global__ void sf_bench_epilogue(unsigned short* y, const unsigned short* b, long long total, int n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        float acc = ld(y[i]);
        float bias = b ? ld(b[i % n]) : 0.0f;
        (void)bias;
        y[i] = st(SF_EXPR);
    }
}
"#;

pub struct Elementwise {
    func: CudaFunction,
    sms: u32,
}

impl Elementwise {
    pub fn new(gpu: &Gpu, epilogue: EpilogueKind, bf16: bool) -> Result<Elementwise> {
        let (maj, min) = gpu.ctx.compute_capability()?;
        let arch: &'static str = Box::leak(format!("compute_{maj}{min}").into_boxed_str());
        let src = format!(
            "#define SF_BF16 {}\n#define SF_EXPR ({})\n{EPILOGUE_CUH}\n{SOURCE}",
            bf16 as i32,
            epilogue.spec().cuda_expr
        );
        let opts = CompileOptions {
            arch: Some(arch),
            ..Default::default()
        };
        let ptx = compile_ptx_with_opts(src, opts)
            .map_err(|e| anyhow!("NVRTC (elementwise kernel): {e}"))?;
        let module = Arc::clone(&gpu.ctx).load_module(ptx)?;
        Ok(Elementwise {
            func: module.load_function("sf_bench_epilogue")?,
            sms: gpu.info.sm_count.unwrap_or(132),
        })
    }

    /// Enqueues `y[i] = epilogue(y[i], b[i % n])` over `total` elements (`b` may be 0).
    pub fn launch(&self, gpu: &Gpu, y: u64, b: u64, total: usize, n: usize) -> Result<()> {
        let blocks = (total.div_ceil(256) as u32).clamp(1, self.sms * 8);
        let cfg = LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let (total, n) = (total as i64, n as i32);
        let mut l = gpu.stream.launch_builder(&self.func);
        l.arg(&y).arg(&b).arg(&total).arg(&n);
        // SAFETY: y holds `total` and b (when non-null) `n` elements of 2 bytes, on this device;
        // the argument types match the kernel's signature (pointers passed as u64).
        unsafe { l.launch(cfg) }?;
        Ok(())
    }
}
