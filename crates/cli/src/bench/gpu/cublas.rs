//! The dense contender: cuBLASLt on the decompressed 2:4 weight, heuristic-chosen algorithm,
//! fp16/bf16 in and out, fp32 compute. Row-major `Y[M×N] = X[M×K]·Wᵀ` is the column-major
//! `Yᶜ[N×M] = Wᶜᵀ[N×K]·Xᶜ[K×M]` ("TN"), so no data is transposed.

use std::ffi::c_void;
use std::rc::Rc;

use anyhow::{anyhow, Result};
use cudarc::cublaslt::{result as lt, sys};
use cudarc::driver::{CudaSlice, CudaStream};

use super::{dptr, Gemm, GpuElement};

const WORKSPACE_BYTES: usize = 32 << 20;

fn data_type<T: GpuElement>() -> sys::cudaDataType {
    if T::CUDA_TYPE == super::lt_ffi::CUDA_R_16BF {
        sys::cudaDataType::CUDA_R_16BF
    } else {
        sys::cudaDataType::CUDA_R_16F
    }
}

/// One cuBLASLt handle for the run.
pub struct Cublas {
    handle: sys::cublasLtHandle_t,
    pub version: String,
}

impl Cublas {
    pub fn new() -> Result<Cublas> {
        // SAFETY: only probes whether the library can be loaded.
        if !unsafe { sys::is_culib_present() } {
            return Err(anyhow!(
                "libcublasLt.so not found (add the CUDA lib64 directory to LD_LIBRARY_PATH)"
            ));
        }
        let handle = lt::create_handle().map_err(|e| anyhow!("cublasLtCreate: {e}"))?;
        // SAFETY: no arguments.
        let v = unsafe { sys::cublasLtGetVersion() };
        Ok(Cublas {
            handle,
            version: format!("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100),
        })
    }
}

impl Drop for Cublas {
    fn drop(&mut self) {
        // SAFETY: created in `new`, destroyed once.
        unsafe {
            let _ = lt::destroy_handle(self.handle);
        }
    }
}

/// A planned `Y[m×n] = X[m×k]·Wᵀ`: descriptors and the heuristic's algorithm.
pub struct DensePlan {
    lt: Rc<Cublas>,
    desc: sys::cublasLtMatmulDesc_t,
    layouts: [sys::cublasLtMatrixLayout_t; 3],
    algo: sys::cublasLtMatmulAlgo_t,
    workspace: CudaSlice<u8>,
    stream: std::sync::Arc<CudaStream>,
}

impl DensePlan {
    pub fn new<T: GpuElement>(
        lt_: &Rc<Cublas>,
        stream: &std::sync::Arc<CudaStream>,
        m: usize,
        n: usize,
        k: usize,
    ) -> Result<DensePlan> {
        let e = |what: &str| {
            let what = what.to_string();
            move |err| anyhow!("cuBLASLt {what}: {err}")
        };
        let dt = data_type::<T>();
        let desc = lt::create_matmul_desc(
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            sys::cudaDataType::CUDA_R_32F,
        )
        .map_err(e("matmul desc"))?;
        let trans: i32 = 1; // CUBLAS_OP_T
                            // SAFETY: desc is live; the attribute is a cublasOperation_t passed by pointer and size.
        unsafe {
            lt::set_matmul_desc_attribute(
                desc,
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                &trans as *const _ as *const c_void,
                std::mem::size_of_val(&trans),
            )
            .map_err(e("TRANSA"))?;
        }
        let a =
            lt::create_matrix_layout(dt, k as u64, n as u64, k as i64).map_err(e("W layout"))?;
        let b =
            lt::create_matrix_layout(dt, k as u64, m as u64, k as i64).map_err(e("X layout"))?;
        let d =
            lt::create_matrix_layout(dt, n as u64, m as u64, n as i64).map_err(e("Y layout"))?;
        let pref = lt::create_matmul_pref().map_err(e("preference"))?;
        let ws = WORKSPACE_BYTES as u64;
        // SAFETY: all descriptors are live; the attribute is a u64 passed by pointer and size.
        let heur = unsafe {
            lt::set_matmul_pref_attribute(
                pref,
                sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                &ws as *const u64 as *const c_void,
                8,
            )
            .map_err(e("workspace preference"))?;
            let h = lt::get_matmul_algo_heuristic(lt_.handle, desc, a, b, d, d, pref);
            let _ = lt::destroy_matmul_pref(pref);
            h.map_err(e("heuristic (no algorithm)"))?
        };
        let workspace = stream.alloc_zeros::<u8>(WORKSPACE_BYTES.max(heur.workspaceSize))?;
        Ok(DensePlan {
            lt: lt_.clone(),
            desc,
            layouts: [a, b, d],
            algo: heur.algo,
            workspace,
            stream: stream.clone(),
        })
    }

    pub fn stream(&self) -> std::sync::Arc<CudaStream> {
        self.stream.clone()
    }

    /// Enqueues `y = x·wᵀ` on the plan's stream.
    pub fn run(&self, w: u64, x: u64, y: u64) -> Result<()> {
        let (alpha, beta) = (1.0f32, 0.0f32);
        let [a, b, d] = self.layouts;
        let ws = dptr(&self.workspace, &self.stream);
        // SAFETY: descriptors are live; w/x/y are device buffers of the planned sizes (the
        // callers allocate them from the same m, n, k); the workspace is ours.
        unsafe {
            lt::matmul(
                self.lt.handle,
                self.desc,
                &alpha as *const f32 as *const c_void,
                &beta as *const f32 as *const c_void,
                w as *const c_void,
                a,
                x as *const c_void,
                b,
                y as *const c_void,
                d,
                y as *mut c_void,
                d,
                &self.algo,
                ws as *mut c_void,
                self.workspace.len(),
                self.stream.cu_stream() as sys::cudaStream_t,
            )
            .map_err(|e| anyhow!("cublasLtMatmul: {e}"))
        }
    }
}

impl Drop for DensePlan {
    fn drop(&mut self) {
        // SAFETY: created in `new`, destroyed once.
        unsafe {
            for l in self.layouts {
                let _ = lt::destroy_matrix_layout(l);
            }
            let _ = lt::destroy_matmul_desc(self.desc);
        }
    }
}

/// The timed contender: a plan, rotated dense weight copies, and the I/O buffers.
pub struct CublasGemm<'a, T> {
    pub plan: DensePlan,
    pub weights: &'a [CudaSlice<T>],
    pub x: u64,
    pub y: u64,
}

impl<T> Gemm for CublasGemm<'_, T> {
    fn copies(&self) -> usize {
        self.weights.len()
    }
    fn launch(&mut self, copy: usize) -> Result<()> {
        let w = dptr(&self.weights[copy], &self.plan.stream);
        self.plan.run(w, self.x, self.y)
    }
}
