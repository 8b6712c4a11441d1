//! `SparseGemmHandle`: one 2:4 weight made ready to run `Y = epilogue(X · Wᵀ [+ b])`.
//!
//! Creating a handle is the slow, synchronous part (metadata checks, upload and kernel
//! compilation on CUDA); `forward` is the fast part. On CUDA it only enqueues work on the
//! stream it is given and allocates nothing, so it can be captured in a CUDA graph. The
//! Python layer caches handles per weight tensor and creates them outside capture.

use std::collections::{BTreeSet, HashMap};
use std::ffi::c_void;
use std::sync::{Mutex, OnceLock};

use pyo3::prelude::*;
use sparseflow_core::alloc::try_copy;
use sparseflow_core::{dispatch_dtype, DType, EpilogueKind};
use sparseflow_runtime::{bucket, BorrowedWeight, Context, Device, SparseGemm};

use crate::error::{core_err, runtime_err, runtime_msg, value_err};
use crate::format::{sizes, sparse_from_host};
use crate::raw::{parse_dtype, slice, slice_mut};

/// One CUDA context per device, shared by every handle (the runtime binds the device's
/// primary context, which PyTorch uses too).
fn cuda_context(ordinal: usize) -> PyResult<Context> {
    static CONTEXTS: OnceLock<Mutex<HashMap<usize, Context>>> = OnceLock::new();
    let mut map = CONTEXTS
        .get_or_init(Default::default)
        .lock()
        .map_err(|_| runtime_msg("context cache poisoned by an earlier panic"))?;
    if let Some(ctx) = map.get(&ordinal) {
        return Ok(ctx.clone());
    }
    let ctx = Context::new(Device::Cuda(ordinal)).map_err(runtime_err)?;
    map.insert(ordinal, ctx.clone());
    Ok(ctx)
}

/// Turns programmatic dependent launch on or off for every handle of CUDA device `device`
/// (sm_90+; off by default — see `Context::set_programmatic_launch`). Experimental.
#[pyfunction]
pub fn set_programmatic_launch(device: usize, on: bool) -> PyResult<()> {
    cuda_context(device)?
        .set_programmatic_launch(on)
        .map_err(runtime_err)
}

/// Whether CUDA device `device` launches with programmatic dependent launch.
#[pyfunction]
pub fn programmatic_launch(device: usize) -> PyResult<bool> {
    Ok(cuda_context(device)?.programmatic_launch())
}

/// What SparseFlow's runtime holds on CUDA device `device` besides the layers' weights (which
/// are the layers' own tensors): `workspace_bytes`, `loaded_kernels`, `kernel_code_bytes`,
/// `max_kernel_local_bytes` and the context's `stack_limit_bytes` (see
/// `sparseflow_runtime::RuntimeMemory`), for memory reports. Creates the device's runtime
/// context if there is none yet.
#[pyfunction]
pub fn runtime_memory(device: usize) -> PyResult<HashMap<&'static str, usize>> {
    let r = cuda_context(device)?
        .runtime_memory()
        .map_err(runtime_err)?;
    Ok(HashMap::from([
        ("workspace_bytes", r.workspace_bytes),
        ("loaded_kernels", r.loaded_kernels),
        ("kernel_code_bytes", r.kernel_code_bytes),
        ("max_kernel_local_bytes", r.max_kernel_local_bytes),
        ("stack_limit_bytes", r.stack_limit_bytes),
    ]))
}

/// A weight ready to run on one device. Immutable once built; safe to share across threads.
#[pyclass(frozen, module = "sparseflow._C")]
pub struct SparseGemmHandle {
    n: usize,
    k: usize,
    dtype: DType,
    epilogue: EpilogueKind,
    device: Option<usize>,
    gemm: SparseGemm,
    /// M buckets whose kernels are loaded (by `prepare` or a forward): a CUDA-graph capture
    /// may only launch these (`is_prepared`), so capture never compiles.
    prepared: Mutex<BTreeSet<usize>>,
}

impl SparseGemmHandle {
    fn mark_prepared(&self, m: usize) {
        if let Ok(b) = bucket(m) {
            self.prepared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(b);
        }
    }

    /// A handle around a built `gemm`, no M bucket prepared yet.
    fn wrap(
        n: usize,
        k: usize,
        dtype: DType,
        epilogue: EpilogueKind,
        device: Option<usize>,
        gemm: SparseGemm,
    ) -> Self {
        SparseGemmHandle {
            n,
            k,
            dtype,
            epilogue,
            device,
            gemm,
            prepared: Mutex::default(),
        }
    }
}

#[pymethods]
impl SparseGemmHandle {
    /// Builds a handle from host (CPU) tensors: `values [n, k/2]`, `meta [n, k/8]` (u8) and an
    /// optional `bias [n]` of the same dtype. `device=None` → CPU reference path;
    /// `device=i` → CUDA device `i` (its weights are uploaded and kernels compiled now).
    #[new]
    #[pyo3(signature = (values_ptr, meta_ptr, bias_ptr, n, k, dtype, epilogue, device=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        values_ptr: usize,
        meta_ptr: usize,
        bias_ptr: Option<usize>,
        n: usize,
        k: usize,
        dtype: &str,
        epilogue: &str,
        device: Option<usize>,
    ) -> PyResult<Self> {
        let dtype = parse_dtype(dtype)?;
        let epilogue = EpilogueKind::from_name(epilogue).map_err(core_err)?;
        // A bias address holds n elements by the Python layer's contract.
        epilogue
            .check_bias(bias_ptr.map(|_| n), n)
            .map_err(core_err)?;
        if device.is_some() && dtype == DType::F32 {
            return Err(value_err(
                "float32 weights run on the CPU only: SparseFlow's CUDA kernels use fp16/bf16 \
                 sparse tensor cores; convert with .half() or .to(torch.bfloat16)",
            ));
        }
        sizes(n, k)?;
        let gemm = py.detach(|| -> PyResult<SparseGemm> {
            dispatch_dtype!(dtype, T => {
                // SAFETY: the Python layer passes contiguous host tensors of these sizes.
                let w = unsafe { sparse_from_host::<T>(values_ptr, meta_ptr, n, k)? };
                let bias = match bias_ptr {
                    // SAFETY: as above; bias holds n elements of T.
                    Some(p) => Some(
                        try_copy(unsafe { slice::<T>(p, n, "bias")? }, "bias").map_err(core_err)?,
                    ),
                    None => None,
                };
                let ctx = match device {
                    Some(ordinal) => cuda_context(ordinal)?,
                    None => Context::cpu(),
                };
                SparseGemm::new(&ctx, &w, bias.as_deref(), epilogue).map_err(runtime_err)
            })
        })?;
        Ok(Self::wrap(n, k, dtype, epilogue, device, gemm))
    }

    /// Adopts a weight that already lives on CUDA device `device` in the fragment layout
    /// (`values_ptr` / `meta_ptr`, see `fragment_layout_bytes`) plus an optional bias
    /// (`n` elements): nothing is copied, every launch reads these addresses. The Python layer
    /// (`SparseLinear`) owns the tensors and keeps them alive as long as the handle.
    #[staticmethod]
    #[pyo3(signature = (values_ptr, meta_ptr, bias_ptr, n, k, dtype, epilogue, device))]
    #[allow(clippy::too_many_arguments)]
    fn from_device_layout(
        values_ptr: usize,
        meta_ptr: usize,
        bias_ptr: Option<usize>,
        n: usize,
        k: usize,
        dtype: &str,
        epilogue: &str,
        device: usize,
    ) -> PyResult<Self> {
        let dtype = parse_dtype(dtype)?;
        let epilogue = EpilogueKind::from_name(epilogue).map_err(core_err)?;
        let ctx = cuda_context(device)?;
        let w = BorrowedWeight {
            values: values_ptr as *const c_void,
            meta: meta_ptr as *const c_void,
            bias: bias_ptr.map(|p| p as *const c_void),
        };
        // SAFETY: the Python layer passes the addresses of its own CUDA tensors in the
        // fragment layout (sizes checked there against fragment_layout_bytes), laid out from
        // checked metadata, and keeps them alive for as long as this handle
        // (SparseLinear holds both).
        let gemm = unsafe { SparseGemm::from_device_layout(&ctx, dtype, n, k, w, epilogue) }
            .map_err(runtime_err)?;
        Ok(Self::wrap(n, k, dtype, epilogue, Some(device), gemm))
    }

    /// Runs `y[m, n] = epilogue(x[m, k] · Wᵀ [+ b])`. CPU handle: host addresses, computed
    /// before returning. CUDA handle: device addresses, enqueued on `stream` (a `CUstream`
    /// address, e.g. `torch.cuda.current_stream().cuda_stream`; 0 is the legacy default
    /// stream) and not waited for; allocates nothing, so it is CUDA-graph capturable.
    fn forward(
        &self,
        py: Python<'_>,
        x_ptr: usize,
        y_ptr: usize,
        m: usize,
        stream: usize,
    ) -> PyResult<()> {
        if m == 0 {
            return Ok(());
        }
        // SAFETY: the Python layer passes contiguous tensors on this handle's device (host
        // memory for a CPU handle), x [m, k] and a fresh y [m, n] of its dtype, 16-byte aligned
        // on CUDA. They come from torch's caching allocator, which orders any reuse of that
        // memory after the work queued on `stream`, so they outlive the launch.
        py.detach(|| unsafe {
            self.gemm.forward_raw(
                x_ptr as *const c_void,
                y_ptr as *mut c_void,
                m,
                Some(stream as *mut c_void),
            )
        })
        .map_err(runtime_err)?;
        self.mark_prepared(m);
        Ok(())
    }

    /// Plans, compiles, loads and uploads everything `m` tokens need without launching: call
    /// before capturing a CUDA graph (the first forward of a new M bucket does it otherwise,
    /// synchronously). No-op on the CPU.
    fn prepare(&self, py: Python<'_>, m: usize) -> PyResult<()> {
        py.detach(|| self.gemm.prepare(m)).map_err(runtime_err)?;
        self.mark_prepared(m);
        Ok(())
    }

    /// Prepares every M bucket up to `max_tokens` (1, 2, 4, ..., the bucket of `max_tokens`),
    /// so any M <= `max_tokens` launches without compiling (CUDA-graph capture, torch.compile).
    fn prepare_up_to(&self, py: Python<'_>, max_tokens: usize) -> PyResult<()> {
        let last = bucket(max_tokens.max(1)).map_err(runtime_err)?;
        let mut b = 1;
        while b <= last {
            self.prepare(py, b)?;
            b *= 2;
        }
        Ok(())
    }

    /// Whether `m` tokens launch without preparing anything (its bucket is ready).
    fn is_prepared(&self, m: usize) -> bool {
        match bucket(m) {
            Ok(b) => self
                .prepared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&b),
            Err(_) => false,
        }
    }

    /// Device bytes the runtime holds for this weight beyond what it borrows (0 for a handle
    /// from `from_device_layout`: the caller's tensors are the only copy).
    #[getter]
    fn owned_device_bytes(&self) -> usize {
        self.gemm.upload_report().device_bytes()
    }

    /// Output features N.
    #[getter]
    fn n(&self) -> usize {
        self.n
    }

    /// Input features K.
    #[getter]
    fn k(&self) -> usize {
        self.k
    }

    /// The torch dtype name (`float16`, `bfloat16`, `float32`).
    #[getter]
    fn dtype(&self) -> &'static str {
        self.dtype.torch_name()
    }

    /// The epilogue name (`none`, `bias_silu`, ...).
    #[getter]
    fn epilogue(&self) -> &'static str {
        self.epilogue.name()
    }

    /// `None` for the CPU path, the CUDA device ordinal otherwise.
    #[getter]
    fn device(&self) -> Option<usize> {
        self.device
    }

    fn __repr__(&self) -> String {
        let device = self
            .device
            .map_or("cpu".to_string(), |d| format!("cuda:{d}"));
        format!(
            "SparseGemmHandle(n={}, k={}, dtype={}, epilogue={}, device={device})",
            self.n,
            self.k,
            self.dtype.torch_name(),
            self.epilogue.name()
        )
    }
}

/// `y[m, n] = epilogue(x[m, k] · Wᵀ [+ b])` on the CPU reference, straight from the tensors'
/// current contents: nothing is cached between calls, so every write to `values`, `meta` or
/// `bias` (in place, through `.data`, `.numpy()`, under `inference_mode`, by a fused
/// optimizer) is seen by the next call, and metadata made invalid by a write is an error.
#[pyfunction]
#[pyo3(signature = (x_ptr, m, values_ptr, meta_ptr, bias_ptr, n, k, dtype, epilogue, y_ptr))]
#[allow(clippy::too_many_arguments)]
pub fn sparse_linear_host(
    py: Python<'_>,
    x_ptr: usize,
    m: usize,
    values_ptr: usize,
    meta_ptr: usize,
    bias_ptr: Option<usize>,
    n: usize,
    k: usize,
    dtype: &str,
    epilogue: &str,
    y_ptr: usize,
) -> PyResult<()> {
    let dtype = parse_dtype(dtype)?;
    let epilogue = EpilogueKind::from_name(epilogue).map_err(core_err)?;
    sizes(n, k)?;
    let overflow = || value_err(format!("m = {m} rows overflow the buffer sizes"));
    let (x_len, y_len) = (
        m.checked_mul(k).ok_or_else(overflow)?,
        m.checked_mul(n).ok_or_else(overflow)?,
    );
    if m == 0 {
        return Ok(());
    }
    py.detach(|| {
        dispatch_dtype!(dtype, T => {
            // SAFETY: the Python layer passes contiguous CPU tensors of these sizes and a fresh
            // output `y` that aliases none of them.
            let w = unsafe { sparse_from_host::<T>(values_ptr, meta_ptr, n, k)? };
            // SAFETY: as above.
            let bias = match bias_ptr {
                Some(p) => Some(unsafe { slice::<T>(p, n, "bias")? }),
                None => None,
            };
            // SAFETY: as above.
            let (x, y) = unsafe { (slice::<T>(x_ptr, x_len, "x")?, slice_mut::<T>(y_ptr, y_len, "y")?) };
            sparseflow_core::sparse_gemm_into(x, m, &w, bias, epilogue, y).map_err(core_err)
        })
    })
}
