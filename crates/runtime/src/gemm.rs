//! `SparseGemm`: one sparse linear layer `Y = epilogue(X · Wᵀ [+ b])` bound to a context.
//! The same API on both backends: the CPU backend computes with `sparseflow_core`'s reference
//! GEMM; the GPU backend plans, compiles and launches generated kernels (gpu_layer.rs).

use std::any::Any;
use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr};
use sparseflow_core::alloc::{try_copy, try_filled};
use sparseflow_core::format::{meta_bytes_per_row, VALID_META_CODES};
use sparseflow_core::{CoreError, DType, Element, EpilogueKind, Sparse24};
use sparseflow_ir::LayerPlan;

use crate::context::Context;
use crate::error::{Result, RuntimeError};
use crate::gpu_layer::GpuLayer;
use crate::launch;

/// What uploading the weight to the GPU cost, per kernel family.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UploadReport {
    /// One entry per family uploaded so far (families are uploaded on first use).
    pub families: Vec<FamilyUpload>,
    /// Bias bytes on the device.
    pub bias_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FamilyUpload {
    /// `"sm80"` or `"decode"`.
    pub family: String,
    pub values_bytes: usize,
    pub meta_bytes: usize,
    pub k_padded: usize,
    /// CPU time to re-order the weight into the family's layout.
    pub layout_ms: f64,
    /// Allocation + host-to-device copy time.
    pub copy_ms: f64,
    /// Set when this family's layout is byte-identical to another's and shares its buffers
    /// (no extra device memory).
    pub shared_with: Option<String>,
}

impl UploadReport {
    /// Device bytes held by the weight (shared layouts counted once) and bias.
    pub fn device_bytes(&self) -> usize {
        self.bias_bytes
            + self
                .families
                .iter()
                .filter(|f| f.shared_with.is_none())
                .map(|f| f.values_bytes + f.meta_bytes)
                .sum::<usize>()
    }
}

/// The kernel one M launches: what the compiler chose and what it cost to get it.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelInfo {
    pub name: String,
    /// `"sm80"` or `"decode"`.
    pub family: String,
    pub tile_m: u32,
    pub tile_n: u32,
    pub tile_k: u32,
    pub warps: u32,
    pub stages: u32,
    pub split_k: u32,
    pub target: String,
    pub grid: (u32, u32, u32),
    pub block_threads: u32,
    pub smem_bytes: u32,
    pub workspace_bytes: usize,
    /// The cubin came from codegen's disk cache.
    pub from_disk_cache: bool,
    /// NVRTC time (0 when from the disk cache).
    pub compile_ms: f64,
    /// cuModuleLoadData time.
    pub load_ms: f64,
}

/// A 2:4 sparse linear layer on a context. `Send + Sync`: share one across threads.
///
/// GPU memory (weights, bias) is freed on drop: drop a layer only after work queued with
/// `forward_raw` on your streams has completed (as with any CUDA allocation).
pub struct SparseGemm {
    ctx: Context,
    n: usize,
    k: usize,
    dtype: DType,
    epilogue: EpilogueKind,
    /// `Sparse24<T>` and `Option<Vec<T>>` bias, type-erased (the CPU backend computes with them).
    host_weight: Option<Arc<dyn Any + Send + Sync>>,
    host_bias: Option<Arc<dyn Any + Send + Sync>>,
    gpu: Option<GpuLayer>,
}

impl std::fmt::Debug for SparseGemm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SparseGemm")
            .field("device", &self.ctx.device())
            .field("n", &self.n)
            .field("k", &self.k)
            .field("dtype", &self.dtype)
            .field("epilogue", &self.epilogue)
            .finish()
    }
}

/// Checks what `Sparse24`'s public fields could break: lengths and metadata codes.
fn check_weight<T: Element>(w: &Sparse24<T>) -> Result<()> {
    if w.n == 0 || w.k == 0 {
        return Err(CoreError::ZeroDim {
            what: "weight [N, K]",
        }
        .into());
    }
    if !w.k.is_multiple_of(4) {
        return Err(CoreError::KNotMultipleOf4 { k: w.k }.into());
    }
    let (vals, mb) = (w.n * (w.k / 2), meta_bytes_per_row(w.k));
    if w.values.len() != vals {
        return Err(CoreError::LengthMismatch {
            what: "weight values [N, K/2]",
            expected: vals,
            got: w.values.len(),
        }
        .into());
    }
    if w.meta.len() != w.n * mb {
        return Err(CoreError::LengthMismatch {
            what: "weight meta [N, K/8]",
            expected: w.n * mb,
            got: w.meta.len(),
        }
        .into());
    }
    let groups = w.k / 4;
    for (row, meta_row) in w.meta.chunks_exact(mb).enumerate() {
        for group in 0..groups {
            let code = (meta_row[group / 2] >> (4 * (group % 2))) & 0xF;
            if !VALID_META_CODES.contains(&code) {
                return Err(CoreError::BadMeta { row, group, code }.into());
            }
        }
    }
    Ok(())
}

fn check_bias<T>(bias: Option<&[T]>, n: usize, epilogue: EpilogueKind) -> Result<()> {
    match (epilogue.uses_bias(), bias) {
        (true, None) => Err(CoreError::BiasMismatch {
            epilogue: epilogue.name(),
            problem: "needs a bias vector of length N, but none was given",
        }
        .into()),
        (false, Some(_)) => Err(CoreError::BiasMismatch {
            epilogue: epilogue.name(),
            problem: "takes no bias, but one was given (use a bias_* epilogue)",
        }
        .into()),
        (true, Some(b)) if b.len() != n => Err(CoreError::LengthMismatch {
            what: "bias [N]",
            expected: n,
            got: b.len(),
        }
        .into()),
        _ => Ok(()),
    }
}

impl SparseGemm {
    /// Binds `weight` (+ `bias`, required exactly when `epilogue.uses_bias()`) to `ctx`.
    /// GPU: f16/bf16; the weight is uploaded on first use of each kernel family (decode for
    /// M ≤ 64 where it wins, sm80 above). CPU: f32/f16/bf16.
    pub fn new<T: Element>(
        ctx: &Context,
        weight: &Sparse24<T>,
        bias: Option<&[T]>,
        epilogue: EpilogueKind,
    ) -> Result<Self> {
        check_weight(weight)?;
        check_bias(bias, weight.n, epilogue)?;
        if ctx.is_gpu() && T::DTYPE == DType::F32 {
            return Err(RuntimeError::UnsupportedDType {
                dtype: DType::F32,
                backend: "the GPU (sparse tensor cores)",
                hint: "convert the weight and activations to f16 or bf16, or use the CPU backend",
            });
        }
        if weight.n > i32::MAX as usize || weight.k > i32::MAX as usize {
            return Err(RuntimeError::Shape(format!(
                "N = {} / K = {} exceed the kernels' 32-bit dimensions",
                weight.n, weight.k
            )));
        }
        // Caller-sized copies: a refused allocation is an error, not an abort.
        let host_weight: Arc<dyn Any + Send + Sync> = Arc::new(Sparse24 {
            n: weight.n,
            k: weight.k,
            values: try_copy(&weight.values, "weight values")?,
            meta: try_copy(&weight.meta, "weight metadata")?,
        });
        let host_bias: Option<Arc<dyn Any + Send + Sync>> = match bias {
            Some(b) => Some(Arc::new(try_copy(b, "bias")?)),
            None => None,
        };
        let gpu = match ctx.gpu() {
            Some(g) => Some(GpuLayer::new(g, weight, bias)?),
            None => None,
        };
        Ok(SparseGemm {
            ctx: ctx.clone(),
            n: weight.n,
            k: weight.k,
            dtype: T::DTYPE,
            epilogue,
            // The GPU layer keeps its own host copy only until every family is uploaded.
            host_weight: if gpu.is_some() {
                None
            } else {
                Some(host_weight)
            },
            host_bias: if gpu.is_some() { None } else { host_bias },
            gpu,
        })
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn epilogue(&self) -> EpilogueKind {
        self.epilogue
    }

    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Upload cost so far (empty on the CPU backend).
    pub fn upload_report(&self) -> UploadReport {
        self.gpu
            .as_ref()
            .map(|g| g.upload_report())
            .unwrap_or_default()
    }

    /// What the compiler picks for `m` tokens (planned at M's bucket) on this context's GPU.
    pub fn plan(&self, m: usize) -> Result<LayerPlan> {
        let g = self.ctx.gpu().ok_or(RuntimeError::NeedsGpu("plan"))?;
        crate::gpu_layer::plan(g, bucket(m)?, self.n, self.k, self.dtype, self.epilogue)
    }

    /// Plans, compiles, loads and uploads everything `m` tokens need, without launching
    /// (warm-up before timing or before capturing a CUDA graph). No-op on the CPU backend.
    pub fn prepare(&self, m: usize) -> Result<()> {
        match &self.gpu {
            Some(layer) => layer.prepare(&self.ctx, m, self).map(|_| ()),
            None => bucket(m).map(|_| ()),
        }
    }

    /// The kernel `m` tokens launch (prepares it: plans, compiles, uploads). GPU only.
    pub fn kernel_info(&self, m: usize) -> Result<KernelInfo> {
        let layer = self
            .gpu
            .as_ref()
            .ok_or(RuntimeError::NeedsGpu("kernel_info"))?;
        layer.kernel_info(&self.ctx, m, self)
    }

    fn check_dtype<T: Element>(&self) -> Result<()> {
        if T::DTYPE != self.dtype {
            return Err(RuntimeError::DTypeMismatch {
                expected: self.dtype,
                got: T::DTYPE,
            });
        }
        Ok(())
    }

    /// `Y [m, n]` for host `x [m, k]` on any context (copies to and from the GPU there).
    pub fn forward_host<T: Element>(&self, x: &[T], m: usize) -> Result<Vec<T>> {
        self.check_dtype::<T>()?;
        bucket(m)?;
        let (xl, yl) = self.lens(m)?;
        if x.len() != xl {
            return Err(RuntimeError::Shape(format!(
                "x has {} elements, expected m·k = {m}·{} = {xl}",
                x.len(),
                self.k
            )));
        }
        let mut y = try_filled(yl, T::default(), "output [m, n]")?;
        match &self.gpu {
            None => self.cpu_forward(x, m, &mut y)?,
            Some(layer) => layer.forward_host(
                &self.ctx,
                self,
                launch::as_bytes(x),
                launch::as_bytes_mut(&mut y),
                m,
            )?,
        }
        Ok(y)
    }

    /// The raw entry used by the C ABI and Python.
    ///
    /// * GPU context: `x [m, k]` and `y [m, n]` are row-major device pointers of this device,
    ///   16-byte aligned (misaligned pointers are an error, not a slow path); the launch is
    ///   queued on `stream` (a `CUstream`, e.g. PyTorch's current stream; `None` = the
    ///   context's default stream) and returns without waiting.
    /// * CPU context: host pointers; computes synchronously; `stream` is ignored.
    ///
    /// # Safety
    /// `x` must hold `m·k` and `y` `m·n` elements of the layer's dtype, `y` must not overlap
    /// `x`, and both (and `stream`) must stay valid until the work completes.
    pub unsafe fn forward_raw(
        &self,
        x: *const c_void,
        y: *mut c_void,
        m: usize,
        stream: Option<*mut c_void>,
    ) -> Result<()> {
        if x.is_null() {
            return Err(RuntimeError::NullPointer("x"));
        }
        if y.is_null() {
            return Err(RuntimeError::NullPointer("y"));
        }
        bucket(m)?;
        let (xl, yl) = self.lens(m)?;
        let es = self.dtype.size_bytes();
        let (xa, ya) = (x as usize, y as usize);
        if xa < ya + yl * es && ya < xa + xl * es {
            return Err(RuntimeError::Shape(
                "y overlaps x; the output needs its own buffer".into(),
            ));
        }
        match &self.gpu {
            Some(layer) => {
                // SAFETY: forwarded from this function's contract.
                let s = stream.map(|p| unsafe { launch::RawStream::from_raw(p) });
                layer.forward_device_ptrs(&self.ctx, self, x, y, m, s)
            }
            None => {
                macro_rules! cpu {
                    ($t:ty) => {{
                        // SAFETY: lengths and non-overlap are this function's contract (checked
                        // for overlap above).
                        let (xs, ys) = unsafe { launch::host_slices::<$t>(x, xl, y, yl) };
                        self.cpu_forward(xs, m, ys)
                    }};
                }
                match self.dtype {
                    DType::F32 => cpu!(f32),
                    DType::F16 => cpu!(half::f16),
                    DType::BF16 => cpu!(half::bf16),
                }
            }
        }
    }

    /// Typed GPU entry for Rust users of cudarc: `x [m, k]`, `y [m, n]` (the slices may be
    /// longer), queued on `stream` (`None` = the context's default stream).
    pub fn forward_device<T: Element + DeviceRepr>(
        &self,
        x: &CudaSlice<T>,
        y: &mut CudaSlice<T>,
        m: usize,
        stream: Option<&Arc<CudaStream>>,
    ) -> Result<()> {
        self.check_dtype::<T>()?;
        let layer = self
            .gpu
            .as_ref()
            .ok_or(RuntimeError::NeedsGpu("forward_device"))?;
        let default = self
            .ctx
            .default_stream()
            .expect("GPU context has a default stream");
        let stream = stream.unwrap_or(&default);
        if stream.context().cu_ctx() != self.ctx.cuda_context().expect("gpu").cu_ctx() {
            return Err(RuntimeError::Shape(
                "the stream belongs to another CUDA context/device".into(),
            ));
        }
        bucket(m)?;
        let (xl, yl) = self.lens(m)?;
        if x.len() < xl || y.len() < yl {
            return Err(RuntimeError::Shape(format!(
                "x has {} elements (need m·k = {xl}), y has {} (need m·n = {yl})",
                x.len(),
                y.len()
            )));
        }
        let (xp, _xguard) = x.device_ptr(stream);
        let (yp, _yguard) = y.device_ptr_mut(stream);
        // SAFETY: the cudarc stream outlives this call and is held by the caller.
        let s = unsafe { launch::RawStream::from_raw(stream.cu_stream() as *mut c_void) };
        layer.forward_device_ptrs(
            &self.ctx,
            self,
            xp as usize as *const c_void,
            yp as usize as *mut c_void,
            m,
            Some(s),
        )
    }

    fn lens(&self, m: usize) -> Result<(usize, usize)> {
        let xl = m.checked_mul(self.k);
        let yl = m.checked_mul(self.n);
        match (xl, yl) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(RuntimeError::Shape(format!(
                "m = {m} overflows the buffer sizes"
            ))),
        }
    }

    fn cpu_forward<T: Element>(&self, x: &[T], m: usize, y: &mut [T]) -> Result<()> {
        let w = self
            .host_weight
            .as_ref()
            .and_then(|w| w.downcast_ref::<Sparse24<T>>())
            .ok_or(RuntimeError::DTypeMismatch {
                expected: self.dtype,
                got: T::DTYPE,
            })?;
        let bias = self
            .host_bias
            .as_ref()
            .and_then(|b| b.downcast_ref::<Vec<T>>())
            .map(|b| b.as_slice());
        sparseflow_core::sparse_gemm_into(x, m, w, bias, self.epilogue, y)?;
        Ok(())
    }
}

/// The M bucket a plan is made for: the next power of two (1, 2, 4, 8, 16, 32, ...).
pub fn bucket(m: usize) -> Result<usize> {
    if m == 0 {
        return Err(RuntimeError::Shape("m (tokens) must be >= 1".into()));
    }
    if m > i32::MAX as usize {
        return Err(RuntimeError::Shape(format!(
            "m = {m} exceeds the kernels' 32-bit dimensions; split the batch"
        )));
    }
    Ok(m.next_power_of_two())
}
