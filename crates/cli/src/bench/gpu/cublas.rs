//! The dense contenders: every dense path a user has on the decompressed 2:4 weight, fp16/bf16
//! in and out, fp32 compute, in the layout PyTorch's `F.linear` uses (weight `[N, K]`
//! row-major, `Y = X·Wᵀ`). Row-major `Y[M×N] = X[M×K]·Wᵀ` is the column-major
//! `Yᶜ[N×M] = Wᶜᵀ[N×K]·Xᶜ[K×M]` ("TN"), so no data is transposed — the same call PyTorch makes.
//!
//! * cuBLASLt with each of the heuristic's top `lt_algos` algorithms (`cublaslt-h0` is the
//!   heuristic's first choice, the only one the benchmark timed before; the others are often
//!   faster at small M or on odd shapes);
//! * `cublasGemmEx` with the default algorithm (`cublas-gemmex`), what `F.linear` without
//!   bias calls through `at::cuda::blas::gemm`, with the same 32 MiB workspace PyTorch gives
//!   cuBLAS on Hopper.
//!
//! The sweep times all of them on the same weight and takes the fastest as *the* dense time.

use std::ffi::c_void;
use std::rc::Rc;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use cudarc::cublas::{result as blas, sys as blas_sys};
use cudarc::cublaslt::{result as lt, sys};
use cudarc::driver::{CudaSlice, CudaStream};

use super::{dptr, Gemm, Gpu, GpuElement};

const WORKSPACE_BYTES: usize = 32 << 20;
/// Contender-name prefix of the cuBLASLt heuristic algorithms (`cublaslt-h0`, `cublaslt-h1`, …).
pub const LT_PREFIX: &str = "cublaslt-h";
/// Contender name of `cublasGemmEx` with the default algorithm.
pub const GEMMEX: &str = "cublas-gemmex";

fn lt_type<T: GpuElement>() -> sys::cudaDataType {
    if T::CUDA_TYPE == super::lt_ffi::CUDA_R_16BF {
        sys::cudaDataType::CUDA_R_16BF
    } else {
        sys::cudaDataType::CUDA_R_16F
    }
}

fn blas_type<T: GpuElement>() -> blas_sys::cudaDataType {
    if T::CUDA_TYPE == super::lt_ffi::CUDA_R_16BF {
        blas_sys::cudaDataType::CUDA_R_16BF
    } else {
        blas_sys::cudaDataType::CUDA_R_16F
    }
}

/// The cuBLASLt handle and, when libcublas loads, a cuBLAS handle, for the whole run.
pub struct Cublas {
    lt: sys::cublasLtHandle_t,
    blas: std::result::Result<blas_sys::cublasHandle_t, String>,
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
        // SAFETY: only probes whether the library can be loaded.
        let blas = if unsafe { blas_sys::is_culib_present() } {
            blas::create_handle().map_err(|e| format!("cublasCreate: {e}"))
        } else {
            Err("libcublas.so not found".to_string())
        };
        Ok(Cublas {
            lt: handle,
            blas,
            version: format!("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100),
        })
    }

    /// Why `cublas-gemmex` cannot run, if it cannot.
    pub fn gemmex_unavailable(&self) -> Option<&str> {
        self.blas.as_ref().err().map(String::as_str)
    }
}

impl Drop for Cublas {
    fn drop(&mut self) {
        // SAFETY: created in `new`, destroyed once.
        unsafe {
            let _ = lt::destroy_handle(self.lt);
            if let Ok(h) = self.blas {
                let _ = blas::destroy_handle(h);
            }
        }
    }
}

/// The cuBLASLt matmul descriptor and the W, X, Y layouts of `Y = X·Wᵀ` ("TN", fp32 compute),
/// destroyed on drop (also when making them fails halfway).
struct LtDescs {
    desc: sys::cublasLtMatmulDesc_t,
    layouts: [sys::cublasLtMatrixLayout_t; 3],
}

impl LtDescs {
    fn new<T: GpuElement>(m: usize, n: usize, k: usize) -> Result<LtDescs> {
        let e = |what: &'static str| move |err| anyhow!("cuBLASLt {what}: {err}");
        let desc = lt::create_matmul_desc(
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            sys::cudaDataType::CUDA_R_32F,
        )
        .map_err(e("matmul desc"))?;
        let mut d = LtDescs {
            desc,
            layouts: [std::ptr::null_mut(); 3],
        };
        let trans: i32 = 1; // CUBLAS_OP_T
                            // SAFETY: desc is live; the attribute is a cublasOperation_t passed by pointer/size.
        unsafe {
            lt::set_matmul_desc_attribute(
                d.desc,
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                &trans as *const _ as *const c_void,
                std::mem::size_of_val(&trans),
            )
            .map_err(e("TRANSA"))?;
        }
        let dt = lt_type::<T>();
        d.layouts[0] =
            lt::create_matrix_layout(dt, k as u64, n as u64, k as i64).map_err(e("W layout"))?;
        d.layouts[1] =
            lt::create_matrix_layout(dt, k as u64, m as u64, k as i64).map_err(e("X layout"))?;
        d.layouts[2] =
            lt::create_matrix_layout(dt, n as u64, m as u64, n as i64).map_err(e("Y layout"))?;
        Ok(d)
    }
}

impl Drop for LtDescs {
    fn drop(&mut self) {
        // SAFETY: created in `new` (null where creation stopped early), destroyed once.
        unsafe {
            for l in self.layouts.into_iter().filter(|l| !l.is_null()) {
                let _ = lt::destroy_matrix_layout(l);
            }
            let _ = lt::destroy_matmul_desc(self.desc);
        }
    }
}

/// Which dense library call a plan makes.
enum Path {
    Lt {
        descs: LtDescs,
        algo: sys::cublasLtMatmulAlgo_t,
    },
    GemmEx {
        handle: blas_sys::cublasHandle_t,
        dtype: blas_sys::cudaDataType,
    },
}

/// One planned dense `Y[m×n] = X[m×k]·Wᵀ` on one library path.
pub struct DensePlan {
    _owner: Rc<Cublas>,
    path: Path,
    /// Contender name (`cublaslt-h0`, …, `cublas-gemmex`).
    pub name: String,
    /// What the path is, for the report (algorithm, tile, stages, split-K).
    pub detail: String,
    dims: (usize, usize, usize),
    workspace: CudaSlice<u8>,
    stream: Arc<CudaStream>,
}

/// Reads one algorithm-config attribute (an integer) of a cuBLASLt algorithm.
fn algo_attr(
    algo: &sys::cublasLtMatmulAlgo_t,
    attr: sys::cublasLtMatmulAlgoConfigAttributes_t,
) -> i64 {
    let mut v = 0u64; // every attribute read here is a u32/i32/u16; zero-extended
    let mut written = 0usize;
    // SAFETY: algo is an initialised algorithm; the buffer holds 8 bytes and is zeroed.
    let st = unsafe {
        sys::cublasLtMatmulAlgoConfigGetAttribute(
            algo,
            attr,
            &mut v as *mut u64 as *mut c_void,
            std::mem::size_of::<u64>(),
            &mut written,
        )
    };
    if st == sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS && written <= 8 {
        v as i64
    } else {
        -1
    }
}

fn lt_detail(algo: &sys::cublasLtMatmulAlgo_t) -> String {
    use sys::cublasLtMatmulAlgoConfigAttributes_t as A;
    format!(
        "cuBLASLt algo {} tile {} stages {} split-k {}",
        algo_attr(algo, A::CUBLASLT_ALGO_CONFIG_ID),
        algo_attr(algo, A::CUBLASLT_ALGO_CONFIG_TILE_ID),
        algo_attr(algo, A::CUBLASLT_ALGO_CONFIG_STAGES_ID),
        algo_attr(algo, A::CUBLASLT_ALGO_CONFIG_SPLITK_NUM),
    )
}

impl DensePlan {
    /// Every dense path for `(m, n, k)`: cuBLASLt's top `lt_algos` heuristic algorithms (as many
    /// as it returns) and `cublasGemmEx`. An error only when none can be planned.
    pub fn candidates<T: GpuElement>(
        cb: &Rc<Cublas>,
        stream: &Arc<CudaStream>,
        m: usize,
        n: usize,
        k: usize,
        lt_algos: usize,
    ) -> Result<Vec<DensePlan>> {
        let mut plans = Vec::new();
        let mut errors = Vec::new();
        match Self::lt_plans::<T>(cb, stream, m, n, k, lt_algos) {
            Ok(mut v) => plans.append(&mut v),
            Err(e) => errors.push(format!("{e:#}")),
        }
        match Self::gemmex::<T>(cb, stream, m, n, k) {
            Ok(p) => plans.push(p),
            Err(e) => errors.push(format!("{e:#}")),
        }
        if plans.is_empty() {
            bail!("no dense path could be planned: {}", errors.join("; "));
        }
        Ok(plans)
    }

    /// The fastest of [`DensePlan::candidates`] on this weight, by a short event-timed run
    /// (for the e2e and epilogue sections, which report one dense figure per case).
    #[allow(clippy::too_many_arguments)]
    pub fn fastest<T: GpuElement>(
        cb: &Rc<Cublas>,
        gpu: &Gpu,
        m: usize,
        n: usize,
        k: usize,
        w: u64,
        x: u64,
        y: u64,
    ) -> Result<DensePlan> {
        let mut best: Option<(f64, DensePlan)> = None;
        for plan in Self::candidates::<T>(cb, &gpu.stream, m, n, k, 4)? {
            let ms = gpu.time_ms(20, || plan.run(w, x, y))?;
            if best.as_ref().is_none_or(|(b, _)| ms < *b) {
                best = Some((ms, plan));
            }
        }
        Ok(best.expect("candidates is never empty").1)
    }

    fn lt_plans<T: GpuElement>(
        cb: &Rc<Cublas>,
        stream: &Arc<CudaStream>,
        m: usize,
        n: usize,
        k: usize,
        count: usize,
    ) -> Result<Vec<DensePlan>> {
        let probe = LtDescs::new::<T>(m, n, k)?;
        let mut heur = vec![
            // SAFETY: a plain C struct of integers and an opaque byte array; all-zero is valid
            // and the library overwrites the entries it returns.
            unsafe { std::mem::zeroed::<sys::cublasLtMatmulHeuristicResult_t>() };
            count.max(1)
        ];
        let mut returned = 0i32;
        let pref = lt::create_matmul_pref().map_err(|e| anyhow!("cuBLASLt preference: {e}"))?;
        let ws = WORKSPACE_BYTES as u64;
        let [a, b, d] = probe.layouts;
        // SAFETY: all descriptors are live; the attribute is a u64 by pointer and size; `heur`
        // holds `heur.len()` entries and the call writes at most that many.
        unsafe {
            let st = lt::set_matmul_pref_attribute(
                pref,
                sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                &ws as *const u64 as *const c_void,
                8,
            )
            .and_then(|_| {
                sys::cublasLtMatmulAlgoGetHeuristic(
                    cb.lt,
                    probe.desc,
                    a,
                    b,
                    d,
                    d,
                    pref,
                    heur.len() as i32,
                    heur.as_mut_ptr(),
                    &mut returned,
                )
                .result()
            });
            let _ = lt::destroy_matmul_pref(pref);
            st.map_err(|e| anyhow!("cuBLASLt heuristic: {e}"))?;
        }
        if returned <= 0 {
            bail!("cuBLASLt heuristic returned no algorithm for M={m} N={n} K={k}");
        }
        let mut plans = Vec::new();
        for (rank, h) in heur.iter().take(returned as usize).enumerate() {
            if h.state != sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS
                || h.workspaceSize > WORKSPACE_BYTES
            {
                continue;
            }
            plans.push(DensePlan {
                _owner: cb.clone(),
                // One descriptor set per plan, so each plan owns (and destroys) its own.
                path: Path::Lt {
                    descs: LtDescs::new::<T>(m, n, k)?,
                    algo: h.algo,
                },
                name: format!("{LT_PREFIX}{rank}"),
                detail: lt_detail(&h.algo),
                dims: (m, n, k),
                workspace: stream.alloc_zeros::<u8>(WORKSPACE_BYTES)?,
                stream: stream.clone(),
            });
        }
        Ok(plans)
    }

    fn gemmex<T: GpuElement>(
        cb: &Rc<Cublas>,
        stream: &Arc<CudaStream>,
        m: usize,
        n: usize,
        k: usize,
    ) -> Result<DensePlan> {
        let handle = *cb.blas.as_ref().map_err(|e| anyhow!("cublasGemmEx: {e}"))?;
        if [m, n, k].iter().any(|&v| v > i32::MAX as usize) {
            bail!("cublasGemmEx: dimensions exceed 32 bits");
        }
        Ok(DensePlan {
            _owner: cb.clone(),
            path: Path::GemmEx {
                handle,
                dtype: blas_type::<T>(),
            },
            name: GEMMEX.into(),
            detail: "cublasGemmEx, CUBLAS_GEMM_DEFAULT".into(),
            dims: (m, n, k),
            workspace: stream.alloc_zeros::<u8>(WORKSPACE_BYTES)?,
            stream: stream.clone(),
        })
    }

    pub fn stream(&self) -> Arc<CudaStream> {
        self.stream.clone()
    }

    /// Enqueues `y = x·wᵀ` on the plan's stream.
    pub fn run(&self, w: u64, x: u64, y: u64) -> Result<()> {
        let (alpha, beta) = (1.0f32, 0.0f32);
        let ws = dptr(&self.workspace, &self.stream);
        let (m, n, k) = self.dims;
        match &self.path {
            Path::Lt { descs, algo } => {
                let [a, b, d] = descs.layouts;
                // SAFETY: descriptors are live; w/x/y are device buffers of the planned sizes
                // (the callers allocate them from the same m, n, k); the workspace is ours.
                unsafe {
                    lt::matmul(
                        self._owner.lt,
                        descs.desc,
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
                        algo,
                        ws as *mut c_void,
                        self.workspace.len(),
                        self.stream.cu_stream() as sys::cudaStream_t,
                    )
                    .map_err(|e| anyhow!("cublasLtMatmul: {e}"))
                }
            }
            Path::GemmEx { handle, dtype } => {
                // SAFETY: the handle lives as long as `_owner`; stream and workspace are ours
                // and live; w/x/y hold n·k, m·k and m·n elements (same contract as above); the
                // dimensions were checked to fit in i32 when the plan was made.
                unsafe {
                    blas::set_stream(*handle, self.stream.cu_stream() as blas_sys::cudaStream_t)
                        .map_err(|e| anyhow!("cublasSetStream: {e}"))?;
                    blas_sys::cublasSetWorkspace_v2(
                        *handle,
                        ws as *mut c_void,
                        self.workspace.len(),
                    )
                    .result()
                    .map_err(|e| anyhow!("cublasSetWorkspace: {e}"))?;
                    blas::gemm_ex(
                        *handle,
                        blas_sys::cublasOperation_t::CUBLAS_OP_T,
                        blas_sys::cublasOperation_t::CUBLAS_OP_N,
                        n as i32,
                        m as i32,
                        k as i32,
                        &alpha as *const f32 as *const c_void,
                        w as *const c_void,
                        *dtype,
                        k as i32,
                        x as *const c_void,
                        *dtype,
                        k as i32,
                        &beta as *const f32 as *const c_void,
                        y as *mut c_void,
                        *dtype,
                        n as i32,
                        blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                        blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                    )
                    .map_err(|e| anyhow!("cublasGemmEx: {e}"))
                }
            }
        }
    }
}

/// The timed contender: a plan, rotated dense weight copies, and the I/O buffers.
pub struct CublasGemm<'a, T> {
    pub plan: &'a DensePlan,
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
