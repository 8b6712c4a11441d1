//! `SparseGemm`: one sparse linear layer `Y = epilogue(X · Wᵀ [+ b])` bound to a context.
//! The same API on both backends: the CPU backend computes with `sparseflow_core`'s reference
//! GEMM; the GPU backend plans, compiles and launches generated kernels (gpu_layer.rs).

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr};
use sparseflow_core::alloc::try_filled;
use sparseflow_core::format::{meta_bytes_per_row, VALID_META_CODES};
use sparseflow_core::{CoreError, DType, Element, EpilogueKind, Sparse24};
use sparseflow_ir::{KernelConfig, LayerPlan};

use crate::context::Context;
use crate::cpu_layer::{self, CpuLayer};
use crate::error::{Result, RuntimeError};
use crate::gpu_layer::GpuLayer;
use crate::launch;
use crate::plan;
use crate::report::{KernelInfo, UploadReport};

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
    backend: Backend,
}

/// Where a layer computes: exactly one of the two.
enum Backend {
    Cpu(Box<dyn CpuLayer>),
    Gpu(GpuLayer),
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
    Ok(epilogue.check_bias(bias.map(<[T]>::len), n)?)
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
        // The GPU layer keeps its own host copy only until the weight is uploaded.
        let backend = match ctx.gpu() {
            Some(g) => Backend::Gpu(GpuLayer::new(g, weight, bias, epilogue)?),
            None => Backend::Cpu(cpu_layer::new(weight, bias, epilogue)?),
        };
        Ok(SparseGemm {
            ctx: ctx.clone(),
            n: weight.n,
            k: weight.k,
            dtype: T::DTYPE,
            epilogue,
            backend,
        })
    }

    /// A GPU layer built elsewhere in the crate (weights.rs adopts caller-owned buffers).
    pub(crate) fn with_gpu_layer(
        ctx: &Context,
        n: usize,
        k: usize,
        dtype: DType,
        epilogue: EpilogueKind,
        gpu: GpuLayer,
    ) -> Self {
        SparseGemm {
            ctx: ctx.clone(),
            n,
            k,
            dtype,
            epilogue,
            backend: Backend::Gpu(gpu),
        }
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

    fn gpu(&self) -> Option<&GpuLayer> {
        match &self.backend {
            Backend::Gpu(g) => Some(g),
            Backend::Cpu(_) => None,
        }
    }

    /// Upload cost so far (empty on the CPU backend).
    pub fn upload_report(&self) -> UploadReport {
        self.gpu().map(|g| g.upload_report()).unwrap_or_default()
    }

    /// What the compiler picks for `m` tokens (planned at M's bucket) on this context's GPU.
    pub fn plan(&self, m: usize) -> Result<LayerPlan> {
        let g = self.ctx.gpu().ok_or(RuntimeError::NeedsGpu("plan"))?;
        let desc = plan::LayerDesc {
            n: self.n,
            k: self.k,
            dtype: self.dtype,
            epilogue: self.epilogue,
        };
        Ok(plan::plan(g, m, &desc)?.plan)
    }

    /// Runs the kernel of `config` for every M of `m`'s bucket from now on, instead of the
    /// planned one (compiles, loads and uploads what it needs). For measuring candidates
    /// (`sparseflow tune`) and experiments; `Err` when `config` cannot serve this layer at that
    /// M on this GPU (the legality check planning applies). GPU only.
    pub fn use_config(&self, m: usize, config: KernelConfig) -> Result<()> {
        let layer = self.gpu().ok_or(RuntimeError::NeedsGpu("use_config"))?;
        layer.use_config(&self.ctx, m, config)
    }

    /// Plans, compiles, loads and uploads everything `m` tokens need, without launching
    /// (warm-up before timing or before capturing a CUDA graph). No-op on the CPU backend.
    pub fn prepare(&self, m: usize) -> Result<()> {
        match self.gpu() {
            Some(layer) => layer.prepare(&self.ctx, m).map(|_| ()),
            None => bucket(m).map(|_| ()),
        }
    }

    /// The kernel `m` tokens launch (prepares it: plans, compiles, uploads). GPU only.
    pub fn kernel_info(&self, m: usize) -> Result<KernelInfo> {
        let layer = self.gpu().ok_or(RuntimeError::NeedsGpu("kernel_info"))?;
        layer.kernel_info(&self.ctx, m)
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
        match &self.backend {
            // SAFETY: T is the layer's dtype (checked above), x holds m·k and y m·n elements
            // (checked / allocated above), and they are distinct allocations.
            Backend::Cpu(cpu) => unsafe {
                cpu.forward_raw(x.as_ptr().cast(), y.as_mut_ptr().cast(), m)?
            },
            Backend::Gpu(layer) => layer.forward_host(
                &self.ctx,
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
        match &self.backend {
            Backend::Gpu(layer) => {
                // SAFETY: forwarded from this function's contract.
                let s = stream.map(|p| unsafe { launch::RawStream::from_raw(p) });
                layer.forward_device_ptrs(&self.ctx, x, y, m, s)
            }
            // SAFETY: lengths, dtype and validity are this function's contract (overlap is
            // checked above).
            Backend::Cpu(cpu) => unsafe { cpu.forward_raw(x, y, m) },
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
        let layer = self.gpu().ok_or(RuntimeError::NeedsGpu("forward_device"))?;
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
}

/// The M bucket a plan is made for: the next power of two (1, 2, 4, 8, 16, 32, ...), the one
/// rule `sparseflow_ir::select::m_bucket` that planning applies. `Err` for 0 and for M beyond
/// the kernels' 32-bit dimensions.
pub fn bucket(m: usize) -> Result<usize> {
    plan::bucket(m)
}
