//! Kernels: `sparseflow_kernel_create_from_dense`, `sparseflow_kernel_create`,
//! `sparseflow_kernel_create_from_device_layout`, `sparseflow_kernel_run`,
//! `sparseflow_kernel_destroy`.

use std::ffi::c_void;

use sparseflow_core::alloc::try_copy;
use sparseflow_core::format::meta_bytes_per_row;
use sparseflow_core::{dispatch_dtype, prune_magnitude, DType, Element, EpilogueKind, Sparse24};

use crate::boundary::ffi_boundary;
use crate::context::{check_out, write_out, ContextObj};
use crate::engine::{self, Context, SparseGemm};
use crate::error::{Error, Result};
use crate::handles::{self, Handle};
use crate::host::{check_bias_ptr, check_ptr, dim, elements, epilogue_arg, host_slice, overlaps};
use crate::types::{
    dtype_from_raw, RawDType, RawEpilogue, SparseFlowContext, SparseFlowKernel, SparseFlowKernel_,
    SparseFlowStatus,
};

/// What a `SparseFlowKernel` handle refers to.
pub(crate) struct KernelObj {
    gemm: SparseGemm,
    /// Keeps the device alive after `sparseflow_context_destroy` and tells CPU from GPU.
    ctx: Context,
}

impl KernelObj {
    pub(crate) fn new(gemm: SparseGemm, ctx: Context) -> KernelObj {
        KernelObj { gemm, ctx }
    }
}

impl Handle for KernelObj {
    type Opaque = SparseFlowKernel_;
    const TAG: usize = 0x4B;
    const NAME: &'static str = "kernel";
}

/// The checked arguments shared by both create functions.
struct Request {
    ctx: Context,
    dtype: DType,
    n: usize,
    k: usize,
    epilogue: EpilogueKind,
}

fn request(
    context: SparseFlowContext,
    dtype: RawDType,
    n: i64,
    k: i64,
    epilogue: RawEpilogue,
) -> Result<Request> {
    let ctx = handles::get::<ContextObj>(context)?.ctx.clone();
    let dtype = dtype_from_raw(dtype).ok_or_else(|| {
        Error::invalid(format!(
            "unknown dtype {dtype}: use SPARSEFLOW_DTYPE_F16 (0), SPARSEFLOW_DTYPE_BF16 (1) or \
             SPARSEFLOW_DTYPE_F32 (2)"
        ))
    })?;
    let epilogue = epilogue_arg(epilogue)?;
    let n = dim(n, "n (out_features)")?;
    let k = dim(k, "k (in_features)")?;
    if !k.is_multiple_of(4) {
        return Err(sparseflow_core::CoreError::KNotMultipleOf4 { k }.into());
    }
    elements(n, k, dtype, "the weight [n, k]")?;
    if ctx.is_gpu() && dtype == DType::F32 {
        return Err(Error::unsupported(
            "SPARSEFLOW_DTYPE_F32 is host-only: GPU kernels run on fp16/bf16 tensor cores. \
             Convert the weight (and activations) to f16 or bf16, or use a CPU context (device -1)",
        ));
    }
    Ok(Request {
        ctx,
        dtype,
        n,
        k,
        epilogue,
    })
}

/// Borrows the bias (length n) when the epilogue uses one; refuses a bias it would ignore.
///
/// # Safety
/// `bias` is NULL or points to `n` elements of `T`.
unsafe fn bias_slice<'a, T>(req: &Request, bias: *const c_void) -> Result<Option<&'a [T]>> {
    check_bias_ptr(req.epilogue, bias, req.n, "bias_or_null")?;
    if bias.is_null() {
        return Ok(None);
    }
    // SAFETY: the C contract: `bias` points to n elements of the kernel dtype.
    Ok(Some(unsafe { host_slice::<T>(bias, req.n, "bias")? }))
}

fn finish(req: Request, gemm: Result<SparseGemm>, out: *mut SparseFlowKernel) -> Result<()> {
    let gemm = gemm?;
    let handle = handles::new_handle(KernelObj::new(gemm, req.ctx));
    // SAFETY: `out` was checked non-NULL by the caller and is writable by contract.
    unsafe { write_out(out, handle) };
    Ok(())
}

/// # Safety
/// `dense` holds n*k elements of `T`, `bias` NULL or n elements.
unsafe fn from_dense<T: Element>(
    req: &Request,
    dense: *const c_void,
    bias: *const c_void,
) -> Result<SparseGemm> {
    // SAFETY: the C contract: `dense` holds n*k elements (size checked by `request`).
    let dense = unsafe { host_slice::<T>(dense, req.n * req.k, "dense_weight")? };
    // SAFETY: forwarded contract.
    let bias = unsafe { bias_slice::<T>(req, bias)? };
    let pruned = prune_magnitude(dense, req.n, req.k)?;
    let sparse = Sparse24::compress(&pruned, req.n, req.k)?;
    SparseGemm::new(&req.ctx, &sparse, bias, req.epilogue).map_err(engine::runtime_error)
}

/// # Safety
/// `values` holds n*k/2 elements of `T`, `meta` n*ceil(k/8) bytes, `bias` NULL or n elements.
unsafe fn from_parts<T: Element>(
    req: &Request,
    values: *const c_void,
    meta: *const c_void,
    bias: *const c_void,
) -> Result<SparseGemm> {
    // SAFETY: the C contract; n*k fits (checked), so n*(k/2) and n*ceil(k/8) do too.
    let values = unsafe { host_slice::<T>(values, req.n * (req.k / 2), "values")? };
    // SAFETY: as above.
    let meta = unsafe { host_slice::<u8>(meta, req.n * meta_bytes_per_row(req.k), "meta")? };
    // SAFETY: forwarded contract.
    let bias = unsafe { bias_slice::<T>(req, bias)? };
    // Caller-sized copies: a refused allocation is OUT_OF_MEMORY, not an abort.
    let sparse = Sparse24::from_parts(
        req.n,
        req.k,
        try_copy(values, "values")?,
        try_copy(meta, "meta")?,
    )?;
    SparseGemm::new(&req.ctx, &sparse, bias, req.epilogue).map_err(engine::runtime_error)
}

/// Builds a kernel from a dense weight: magnitude-prunes it to 2:4 (keeps the two largest
/// |w| of every group of 4 along K, ties to the lower index), compresses it and uploads it.
///
/// * `dtype`: element type of `dense_weight`, `bias_or_null`, and later of `x` / `y` in
///   `sparseflow_kernel_run`. F16/BF16 are `uint16_t` bit patterns. `SPARSEFLOW_DTYPE_F32`
///   is accepted on the CPU backend only (`UNSUPPORTED` on a GPU context: convert to f16/bf16).
/// * `dense_weight`: host, row-major `[n, k]` (PyTorch `nn.Linear.weight`), `k % 4 == 0`,
///   all finite. Only read during the call: the library keeps its own copy.
/// * `bias_or_null`: host `[n]`; required by the `BIAS*` epilogues, must be NULL otherwise.
/// * `*out`: the new kernel (NULL on failure), released with `sparseflow_kernel_destroy`.
///
/// Errors: `INVALID_HANDLE` (context), `INVALID_ARGUMENT` (NULL pointers, n/k <= 0, k % 4,
/// overflow, unknown dtype/epilogue, bias mismatch, NaN/Inf, misaligned data), `UNSUPPORTED`,
/// `CUDA_ERROR`, `OUT_OF_MEMORY`.
///
/// Thread safety: callable concurrently on the same context from any number of threads.
///
/// # Safety
/// `dense_weight` must be NULL or hold `n * k` readable elements of `dtype`, `bias_or_null`
/// NULL or `n` elements, and `out` NULL or point to writable storage for one handle.
#[no_mangle]
pub unsafe extern "C" fn sparseflow_kernel_create_from_dense(
    context: SparseFlowContext,
    dtype: RawDType,
    n: i64,
    k: i64,
    dense_weight: *const c_void,
    bias_or_null: *const c_void,
    epilogue: RawEpilogue,
    out: *mut SparseFlowKernel,
) -> SparseFlowStatus {
    ffi_boundary!("sparseflow_kernel_create_from_dense", {
        check_out(out)?;
        // SAFETY: `out` is non-NULL and writable by contract.
        unsafe { write_out(out, std::ptr::null_mut()) };
        let req = request(context, dtype, n, k, epilogue)?;
        // SAFETY: buffer sizes are the C caller's contract, documented above.
        let gemm = unsafe {
            dispatch_dtype!(req.dtype, T => from_dense::<T>(&req, dense_weight, bias_or_null))
        };
        finish(req, gemm, out)
    })
}

/// Builds a kernel from an already-compressed 2:4 weight, in the format of docs/FORMAT.md:
///
/// * `values`: host `[n, k/2]` of `dtype`: the two kept entries of each group of 4, in
///   increasing column order.
/// * `meta`: host `uint8_t [n, ceil(k/8)]` (see `sparseflow_compressed_sizes`): one 4-bit code
///   `idx0 | idx1 << 2` (idx0 < idx1) per group, two groups per byte, low nibble first; when
///   k/4 is odd the last nibble of a row is padding and must be a valid code (0x4).
///   Metadata that is not two distinct increasing positions is `NOT_2TO4`.
/// * `dtype`, `bias_or_null`, `epilogue`, `*out`: as in `sparseflow_kernel_create_from_dense`.
///
/// The buffers are only read during the call. Thread safety: as
/// `sparseflow_kernel_create_from_dense`.
///
/// # Safety
/// `values` must be NULL or hold `n * k / 2` readable elements of `dtype`, `meta` NULL or
/// `n * ceil(k / 8)` bytes, `bias_or_null` NULL or `n` elements, and `out` NULL or point to
/// writable storage for one handle.
#[no_mangle]
pub unsafe extern "C" fn sparseflow_kernel_create(
    context: SparseFlowContext,
    dtype: RawDType,
    n: i64,
    k: i64,
    values: *const c_void,
    meta: *const c_void,
    bias_or_null: *const c_void,
    epilogue: RawEpilogue,
    out: *mut SparseFlowKernel,
) -> SparseFlowStatus {
    ffi_boundary!("sparseflow_kernel_create", {
        check_out(out)?;
        // SAFETY: `out` is non-NULL and writable by contract.
        unsafe { write_out(out, std::ptr::null_mut()) };
        let req = request(context, dtype, n, k, epilogue)?;
        // SAFETY: buffer sizes are the C caller's contract, documented above.
        let gemm = unsafe {
            dispatch_dtype!(req.dtype, T => from_parts::<T>(&req, values, meta, bias_or_null))
        };
        finish(req, gemm, out)
    })
}

/// Builds a GPU kernel on a weight that is already in device memory in the device layout,
/// without copying it (ABI 1.3): the kernel reads `device_values`, `device_meta` and
/// `device_bias_or_null` where they are at every run, so the caller's buffers are the only copy
/// of the weight on the device.
///
/// * `device_values` / `device_meta`: device memory of the context's GPU holding the bytes
///   `sparseflow_layout_to_device_order` produces (sizes from `sparseflow_device_layout_sizes`),
///   each 16-byte aligned (`cudaMalloc` / `cuMemAlloc` are). The metadata is not checked here (it
///   is on the device): fill the buffers from `sparseflow_layout_to_device_order`, which checks it.
/// * `device_bias_or_null`: device memory holding `n` elements of `dtype`, 16-byte aligned;
///   required by the `BIAS*` epilogues, must be NULL otherwise.
/// * Ownership: the caller owns the three buffers and must keep them allocated, and in the device
///   layout, until `sparseflow_kernel_destroy` of this kernel and the completion of every run
///   queued with it. Writes to them (e.g. a new bias) are seen by runs queued after the write on
///   the same stream; nothing is cached.
/// * `dtype`: F16 or BF16 (`UNSUPPORTED` for F32). A CPU context (device -1) is `UNSUPPORTED`:
///   build CPU kernels from host buffers with `sparseflow_kernel_create`.
///
/// Errors: `INVALID_HANDLE`, `INVALID_ARGUMENT` (NULL or misaligned pointers, host or other-GPU
/// memory, bad sizes, unknown dtype/epilogue, bias vs epilogue mismatch), `UNSUPPORTED`,
/// `CUDA_ERROR`. On failure `*out` is NULL. Thread safety: as
/// `sparseflow_kernel_create_from_dense`.
///
/// # Safety
/// The device buffers must hold the sizes above, stay valid as described under Ownership, and
/// `out` must be NULL or point to writable storage for one handle.
#[no_mangle]
pub unsafe extern "C" fn sparseflow_kernel_create_from_device_layout(
    context: SparseFlowContext,
    dtype: RawDType,
    n: i64,
    k: i64,
    device_values: *const c_void,
    device_meta: *const c_void,
    device_bias_or_null: *const c_void,
    epilogue: RawEpilogue,
    out: *mut SparseFlowKernel,
) -> SparseFlowStatus {
    ffi_boundary!("sparseflow_kernel_create_from_device_layout", {
        check_out(out)?;
        // SAFETY: `out` is non-NULL and writable by contract.
        unsafe { write_out(out, std::ptr::null_mut()) };
        let req = request(context, dtype, n, k, epilogue)?;
        if !req.ctx.is_gpu() {
            return Err(Error::unsupported(
                "a CPU context (device -1) has no device memory to adopt: create CPU kernels \
                 from host buffers with sparseflow_kernel_create",
            ));
        }
        check_bias_ptr(
            req.epilogue,
            device_bias_or_null,
            req.n,
            "device_bias_or_null",
        )?;
        let weight = engine::BorrowedWeight {
            values: device_values,
            meta: device_meta,
            bias: (!device_bias_or_null.is_null()).then_some(device_bias_or_null),
        };
        // SAFETY: the C contract above: the buffers hold the device layout of an [n, k] weight
        // (and n bias elements) and outlive the kernel and its queued runs. The runtime checks
        // NULL, alignment and that each pointer is memory of this GPU.
        let gemm = unsafe {
            SparseGemm::from_device_layout(&req.ctx, req.dtype, req.n, req.k, weight, req.epilogue)
        }
        .map_err(engine::runtime_error);
        finish(req, gemm, out)
    })
}

/// Computes `y[m, n] = epilogue(x[m, k] . W^T (+ bias))`, fp32 accumulation, output in the
/// kernel's dtype. `x` and `y` are row-major and contiguous, in the kernel's dtype.
///
/// * CPU context: host pointers; `stream` must be NULL; synchronous. `x` and `y` must not
///   overlap.
/// * GPU context: device pointers of that GPU, 16-byte aligned (the kernels load 16 bytes at
///   a time; `cudaMalloc` / `cuMemAlloc` and PyTorch allocations are); `stream` is a
///   `CUstream` / `cudaStream_t` of the device's primary context, or NULL for the legacy
///   default stream. Asynchronous: the work is queued on the stream; synchronize it before
///   reading `y`. The first run of a new M bucket (1, 2, 4, 8, 16, 32, ...) compiles and loads
///   its kernel (cached on disk in `SPARSEFLOW_CACHE_DIR`).
/// * `m == 0` does nothing and succeeds (x and y are not touched).
///
/// Errors: `INVALID_HANDLE`, `INVALID_ARGUMENT` (NULL x/y, m < 0, overflow, misaligned or
/// overlapping buffers, stream on a CPU context), `CUDA_ERROR`, `OUT_OF_MEMORY`.
///
/// Thread safety: one kernel may be run from any number of threads at once (each with its own
/// x and y); runs on the same stream are ordered by the stream.
///
/// # Safety
/// `x` must hold `m * k` readable and `y` `m * n` writable elements of the kernel's dtype (host
/// memory on a CPU context, device memory of the context's GPU otherwise); `stream` must be
/// NULL or a live stream of that device's primary context; on a GPU, `x`, `y` and `stream`
/// must stay valid until the queued work has completed.
#[no_mangle]
pub unsafe extern "C" fn sparseflow_kernel_run(
    kernel: SparseFlowKernel,
    x: *const c_void,
    m: i64,
    y: *mut c_void,
    stream: *mut c_void,
) -> SparseFlowStatus {
    ffi_boundary!("sparseflow_kernel_run", {
        let kern = handles::get::<KernelObj>(kernel)?;
        if m < 0 {
            return Err(Error::invalid(format!("m must be >= 0, got {m}")));
        }
        if m == 0 {
            return Ok(());
        }
        let m = dim(m, "m")?;
        let (gemm, dtype) = (&kern.gemm, kern.gemm.dtype());
        let x_len = elements(m, gemm.k(), dtype, "x [m, k]")?;
        let y_len = elements(m, gemm.n(), dtype, "y [m, n]")?;
        let align = dtype.size_bytes();
        check_ptr(x, align, "x")?;
        check_ptr(y, align, "y")?;
        let stream = if kern.ctx.is_gpu() {
            (!stream.is_null()).then_some(stream)
        } else {
            if !stream.is_null() {
                return Err(Error::invalid(
                    "stream must be NULL on a CPU context (it runs synchronously on the host)",
                ));
            }
            if overlaps(x, x_len * align, y, y_len * align) {
                return Err(Error::invalid(
                    "x and y overlap: y must be a separate buffer",
                ));
            }
            None
        };
        // SAFETY: the C contract: x holds m*k and y m*n elements of the kernel dtype, on the
        // host for a CPU context, on the device for a GPU one; sizes, NULL, alignment and
        // (host) overlap were checked above.
        unsafe { gemm.forward_raw(x, y, m, stream) }.map_err(engine::runtime_error)
    })
}

/// Destroys a kernel handle and frees its weights. On a GPU context, synchronize every stream
/// this kernel was run on before destroying it (queued work must not outlive its weights).
///
/// `INVALID_HANDLE` for NULL, a foreign pointer, or a kernel already destroyed; nothing
/// happens in that case.
///
/// Thread safety: callable from any thread; no other thread may still be using this handle.
#[no_mangle]
pub extern "C" fn sparseflow_kernel_destroy(kernel: SparseFlowKernel) -> SparseFlowStatus {
    ffi_boundary!("sparseflow_kernel_destroy", {
        handles::destroy::<KernelObj>(kernel)
    })
}
