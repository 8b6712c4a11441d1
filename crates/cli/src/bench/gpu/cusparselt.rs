//! The cuSPARSELt contender, called natively (no PyTorch wrapper). Layout as PyTorch uses it:
//! the sparse weight is A `[N×K]` row-major, X is B `[K×M]` (X row-major read column-major),
//! and the output is Yᵀ `[N×M]` row-major. (A column-major output descriptor gave wrong results
//! on the H100 with cuSPARSELt 0.8 once the searched algorithm changed.) cuSPARSELt refuses
//! M < 8, so M is padded to a multiple of 8; the table says so. The plan is built and
//! `cusparseLtMatmulSearch` run once, untimed; the workspace is re-queried after the search.

use std::path::Path;
use std::rc::Rc;

use anyhow::Result;
use cudarc::driver::{CudaSlice, CudaStream};

use super::lt_ffi::{self as ffi, check, Api, Opaque};
use super::{dptr, Gemm, GpuElement};

/// M as cuSPARSELt runs it: a multiple of 8, at least 8.
pub fn padded_m(m: usize) -> usize {
    m.div_ceil(8).max(1) * 8
}

pub struct Lt {
    api: Api,
    handle: Box<Opaque>,
    pub version: String,
}

impl Lt {
    pub fn new(explicit: Option<&Path>) -> Result<Lt> {
        let api = Api::load(explicit)?;
        let mut handle = Opaque::boxed();
        // SAFETY: handle is a caller-allocated opaque object larger than the library's.
        check("cusparseLtInit", unsafe { (api.init)(handle.mut_ptr()) })?;
        let mut v = 0i32;
        // SAFETY: handle was initialised above; v is an out-parameter.
        let version = if unsafe { (api.get_version)(handle.ptr(), &mut v) } == ffi::SUCCESS {
            format!(
                "{}.{}.{} ({})",
                v / 1000,
                (v % 1000) / 100,
                v % 100,
                api.path.display()
            )
        } else {
            api.path.display().to_string()
        };
        Ok(Lt {
            api,
            handle,
            version,
        })
    }
    fn h(&self) -> *const std::ffi::c_void {
        self.handle.ptr()
    }
}

impl Drop for Lt {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once, after every plan (they hold an Rc).
        unsafe { (self.api.destroy)(self.handle.ptr()) };
    }
}

/// A weight compressed by cuSPARSELt, in rotated copies; shared by the plans of all M.
pub struct LtWeight {
    lt: Rc<Lt>,
    mat_a: Box<Opaque>,
    pub copies: Vec<CudaSlice<u8>>,
}

impl LtWeight {
    pub fn new<T: GpuElement>(
        lt: &Rc<Lt>,
        stream: &std::sync::Arc<CudaStream>,
        dense: &CudaSlice<T>,
        n: usize,
        k: usize,
        copies: usize,
    ) -> Result<LtWeight> {
        let api = &lt.api;
        let mut mat_a = Opaque::boxed();
        let (mut size, mut buf_size) = (0usize, 0usize);
        // SAFETY: the handle is live, mat_a is caller-allocated; sizes are out-parameters.
        unsafe {
            check(
                "cusparseLtStructuredDescriptorInit",
                (api.structured_init)(
                    lt.h(),
                    mat_a.mut_ptr(),
                    n as i64,
                    k as i64,
                    k as i64,
                    16,
                    T::CUDA_TYPE,
                    ffi::ORDER_ROW,
                    ffi::SPARSITY_50,
                ),
            )?;
            check(
                "cusparseLtSpMMACompressedSize2",
                (api.compressed_size2)(lt.h(), mat_a.ptr(), &mut size, &mut buf_size),
            )?;
        }
        let first = stream.alloc_zeros::<u8>(size.max(1))?;
        let buffer = stream.alloc_zeros::<u8>(buf_size.max(1))?;
        // SAFETY: dense is an [n×k] device buffer of T (the descriptor's shape); `first` and
        // `buffer` have the sizes the library asked for; all on our stream.
        unsafe {
            check(
                "cusparseLtSpMMACompress2",
                (api.compress2)(
                    lt.h(),
                    mat_a.ptr(),
                    1,
                    ffi::OP_N,
                    dptr(dense, stream) as *const _,
                    dptr(&first, stream) as *mut _,
                    dptr(&buffer, stream) as *mut _,
                    stream.cu_stream() as *mut _,
                ),
            )?;
        }
        let mut v = vec![first];
        for _ in 1..copies {
            v.push(stream.clone_dtod(&v[0])?);
        }
        stream.synchronize()?;
        Ok(LtWeight {
            lt: lt.clone(),
            mat_a,
            copies: v,
        })
    }
}

impl Drop for LtWeight {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`; plans using it were dropped first (they borrow it).
        unsafe { (self.lt.api.mat_destroy)(self.mat_a.ptr()) };
    }
}

/// A searched plan for one M, with its workspace and I/O pointers.
pub struct LtGemm<'a> {
    w: &'a LtWeight,
    stream: std::sync::Arc<CudaStream>,
    mats: [Box<Opaque>; 2],
    _matmul: Box<Opaque>,
    _alg: Box<Opaque>,
    plan: Box<Opaque>,
    workspace: CudaSlice<u8>,
    pub alg_id: i32,

    x: u64,
    y: u64,
}

impl<'a> LtGemm<'a> {
    /// `x`: `[m_pad×k]` row-major; `y`: Yᵀ `[n×m_pad]` row-major.
    #[allow(clippy::too_many_arguments)]
    pub fn new<T: GpuElement>(
        w: &'a LtWeight,
        stream: &std::sync::Arc<CudaStream>,
        m_pad: usize,
        n: usize,
        k: usize,
        x: u64,
        y: u64,
    ) -> Result<LtGemm<'a>> {
        let lt = &w.lt;
        let api = &lt.api;
        let (mut mat_b, mut mat_c) = (Opaque::boxed(), Opaque::boxed());
        let (mut matmul, mut alg, mut plan) = (Opaque::boxed(), Opaque::boxed(), Opaque::boxed());
        let mut ws = 0usize;
        // SAFETY: every object is caller-allocated and initialised in dependency order.
        unsafe {
            check(
                "cusparseLtDenseDescriptorInit(B)",
                (api.dense_init)(
                    lt.h(),
                    mat_b.mut_ptr(),
                    k as i64,
                    m_pad as i64,
                    k as i64,
                    16,
                    T::CUDA_TYPE,
                    ffi::ORDER_COL,
                ),
            )?;
            check(
                "cusparseLtDenseDescriptorInit(C)",
                (api.dense_init)(
                    lt.h(),
                    mat_c.mut_ptr(),
                    n as i64,
                    m_pad as i64,
                    m_pad as i64,
                    16,
                    T::CUDA_TYPE,
                    ffi::ORDER_ROW,
                ),
            )?;
            check(
                "cusparseLtMatmulDescriptorInit",
                (api.matmul_desc_init)(
                    lt.h(),
                    matmul.mut_ptr(),
                    ffi::OP_N,
                    ffi::OP_N,
                    w.mat_a.ptr(),
                    mat_b.ptr(),
                    mat_c.ptr(),
                    mat_c.ptr(),
                    ffi::COMPUTE_32F,
                ),
            )?;
            check(
                "cusparseLtMatmulAlgSelectionInit",
                (api.alg_sel_init)(lt.h(), alg.mut_ptr(), matmul.ptr(), ffi::ALG_DEFAULT),
            )?;
            check(
                "cusparseLtMatmulPlanInit",
                (api.plan_init)(lt.h(), plan.mut_ptr(), matmul.ptr(), alg.ptr()),
            )?;
            check(
                "cusparseLtMatmulGetWorkspace",
                (api.get_workspace)(lt.h(), plan.ptr(), &mut ws),
            )?;
        }
        let mut workspace = stream.alloc_zeros::<u8>(ws.max(16 << 20))?;
        let (alpha, beta) = (1.0f32, 0.0f32);
        let mut s = stream.cu_stream() as *mut std::ffi::c_void;
        // SAFETY: pointers are device buffers of the planned shapes; the workspace is at
        // least what the plan asked for; one stream.
        unsafe {
            check(
                "cusparseLtMatmulSearch",
                (api.search)(
                    lt.h(),
                    plan.mut_ptr(),
                    &alpha as *const f32 as *const _,
                    dptr(&w.copies[0], stream) as *const _,
                    x as *const _,
                    &beta as *const f32 as *const _,
                    y as *const _,
                    y as *mut _,
                    dptr(&workspace, stream) as *mut _,
                    &mut s,
                    1,
                ),
            )?;
            check(
                "cusparseLtMatmulGetWorkspace(after search)",
                (api.get_workspace)(lt.h(), plan.ptr(), &mut ws),
            )?;
        }
        stream.synchronize()?;
        if ws > workspace.len() {
            workspace = stream.alloc_zeros::<u8>(ws)?;
        }
        let mut alg_id = -1i32;
        // SAFETY: alg was initialised; the attribute is an int.
        unsafe {
            (api.alg_get_attr)(
                lt.h(),
                alg.ptr(),
                ffi::ALG_CONFIG_ID,
                &mut alg_id as *mut i32 as *mut _,
                4,
            )
        };
        Ok(LtGemm {
            w,
            stream: stream.clone(),
            mats: [mat_b, mat_c],
            _matmul: matmul,
            _alg: alg,
            plan,
            workspace,
            alg_id,
            x,
            y,
        })
    }
}

impl Gemm for LtGemm<'_> {
    fn copies(&self) -> usize {
        self.w.copies.len()
    }
    fn launch(&mut self, copy: usize) -> Result<()> {
        let api = &self.w.lt.api;
        let (alpha, beta) = (1.0f32, 0.0f32);
        let mut s = self.stream.cu_stream() as *mut std::ffi::c_void;
        // SAFETY: as in the search above, with weight copy `copy` (same size as copy 0).
        check("cusparseLtMatmul", unsafe {
            (api.matmul)(
                self.w.lt.h(),
                self.plan.ptr(),
                &alpha as *const f32 as *const _,
                dptr(&self.w.copies[copy], &self.stream) as *const _,
                self.x as *const _,
                &beta as *const f32 as *const _,
                self.y as *const _,
                self.y as *mut _,
                dptr(&self.workspace, &self.stream) as *mut _,
                &mut s,
                1,
            )
        })
    }
}

impl Drop for LtGemm<'_> {
    fn drop(&mut self) {
        let api = &self.w.lt.api;
        // SAFETY: initialised in `new`, destroyed once.
        unsafe {
            (api.plan_destroy)(self.plan.ptr());
            for m in &self.mats {
                (api.mat_destroy)(m.ptr());
            }
        }
    }
}
