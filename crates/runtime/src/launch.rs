//! The only module with `unsafe` driver calls and raw-pointer dereferences. Everything above it
//! is safe and typed: [`DeviceAlloc`] owns device memory, [`RawStream`] is a borrowed
//! `CUstream`, [`launch_kernel`] launches one kernel with the parameters its family built.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::{result, sys, CudaContext, CudaFunction, DriverError};
use sparseflow_codegen::{KernelParams, LaunchGeometry};

use crate::error::{Result, RuntimeError};

fn cuda(call: &'static str) -> impl Fn(DriverError) -> RuntimeError {
    move |e| RuntimeError::cuda(call, e)
}

/// Loads libcuda and runs `cuInit`; a clear error instead of cudarc's panic when it is absent.
pub(crate) fn ensure_driver() -> Result<()> {
    // SAFETY: only dlopens libcuda (no driver function is called unless it is present).
    if !unsafe { sys::is_culib_present() } {
        return Err(RuntimeError::NoDriver(
            "libcuda.so could not be loaded".into(),
        ));
    }
    result::init().map_err(|e| {
        let name = e
            .error_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        RuntimeError::NoDriver(format!("cuInit failed with {name}"))
    })
}

/// The driver API version as "major.minor".
pub(crate) fn driver_version() -> Result<String> {
    let mut v: std::ffi::c_int = 0;
    // SAFETY: writes one int; the driver is loaded and initialised (ensure_driver ran).
    unsafe { sys::cuDriverGetVersion(&mut v) }
        .result()
        .map_err(cuda("cuDriverGetVersion"))?;
    Ok(format!("{}.{}", v / 1000, (v % 1000) / 10))
}

/// The context's per-thread stack limit (`CU_LIMIT_STACK_SIZE`). The driver reserves local
/// memory for it on every thread the GPU can hold and raises it, for good, when a kernel that
/// needs more is launched, so it accounts for device memory no allocation shows.
pub(crate) fn stack_limit(ctx: &Arc<CudaContext>) -> Result<usize> {
    ctx.bind_to_thread().map_err(cuda("cuCtxSetCurrent"))?;
    let mut v: usize = 0;
    // SAFETY: writes one size_t; the context is current on this thread (bound above).
    unsafe { sys::cuCtxGetLimit(&mut v, sys::CUlimit::CU_LIMIT_STACK_SIZE) }
        .result()
        .map_err(cuda("cuCtxGetLimit"))?;
    Ok(v)
}

/// A `CUstream` the runtime does not own (the context's NULL stream or a caller's stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct RawStream(sys::CUstream);

// SAFETY: a CUstream handle is an opaque token the driver accepts from any thread.
unsafe impl Send for RawStream {}
// SAFETY: as above; the handle is never dereferenced on the host.
unsafe impl Sync for RawStream {}

/// `CU_STREAM_PER_THREAD`: one stream per host thread behind one handle value.
const PER_THREAD_STREAM: usize = 0x2;

impl RawStream {
    /// # Safety
    /// `s` must be null, `CU_STREAM_LEGACY`/`CU_STREAM_PER_THREAD`, or a live stream of the
    /// context it is used with, and stay alive while work submitted to it may run.
    pub(crate) unsafe fn from_raw(s: *mut c_void) -> Self {
        RawStream(s as sys::CUstream)
    }

    pub(crate) fn per_thread() -> Self {
        RawStream(PER_THREAD_STREAM as sys::CUstream)
    }

    pub(crate) fn handle(self) -> sys::CUstream {
        self.0
    }

    /// A key under which work is ordered: the handle, plus the thread for the per-thread stream
    /// (its one handle value names a different stream on every thread).
    pub(crate) fn ordering_key(self) -> (usize, Option<std::thread::ThreadId>) {
        let h = self.0 as usize;
        (
            h,
            (h == PER_THREAD_STREAM).then(|| std::thread::current().id()),
        )
    }

    /// The id of the CUDA-graph capture this stream is recording into right now (work queued
    /// then does not execute until the graph is launched), or `None` when it is not capturing.
    /// Ids are unique per capture within the process.
    pub(crate) fn capture_id(self) -> Result<Option<u64>> {
        let mut status = sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE;
        let mut id: sys::cuuint64_t = 0;
        // SAFETY: the stream is valid (from_raw's contract); `status` and `id` are valid
        // out-pointers; the graph, dependency and edge outputs are optional (NULL).
        unsafe {
            sys::cuStreamGetCaptureInfo_v3(
                self.0,
                &mut status,
                &mut id,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        }
        .result()
        .map_err(cuda("cuStreamGetCaptureInfo"))?;
        Ok((status != sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE).then_some(id))
    }

    pub(crate) fn synchronize(self) -> Result<()> {
        // SAFETY: the stream is valid (from_raw's contract).
        unsafe { result::stream::synchronize(self.0) }.map_err(cuda("cuStreamSynchronize"))
    }
}

/// A non-blocking stream owned by the runtime (weight and bias uploads): it never orders
/// against, or disturbs a CUDA-graph capture on, the caller's streams.
pub(crate) struct OwnedStream {
    stream: RawStream,
    ctx: Arc<CudaContext>,
}

impl OwnedStream {
    pub(crate) fn new(ctx: &Arc<CudaContext>) -> Result<Self> {
        ctx.bind_to_thread().map_err(cuda("cuCtxSetCurrent"))?;
        let s = result::stream::create(result::stream::StreamKind::NonBlocking)
            .map_err(cuda("cuStreamCreate"))?;
        Ok(OwnedStream {
            stream: RawStream(s),
            ctx: ctx.clone(),
        })
    }

    pub(crate) fn raw(&self) -> RawStream {
        self.stream
    }
}

impl Drop for OwnedStream {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: we created the stream and nothing else holds it.
            let _ = unsafe { result::stream::destroy(self.stream.0) };
        }
    }
}

/// Views a slice of a plain scalar element type as bytes.
pub(crate) fn as_bytes<T: sparseflow_core::Element>(v: &[T]) -> &[u8] {
    assert_eq!(
        std::mem::size_of::<T>(),
        T::DTYPE.size_bytes(),
        "element type has padding"
    );
    // SAFETY: Element types are Copy scalars (f32, f16, bf16) whose size equals their dtype's
    // (checked above), so every byte is initialised; u8 has alignment 1.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

/// Views a mutable slice of a plain scalar element type as bytes.
pub(crate) fn as_bytes_mut<T: sparseflow_core::Element>(v: &mut [T]) -> &mut [u8] {
    assert_eq!(
        std::mem::size_of::<T>(),
        T::DTYPE.size_bytes(),
        "element type has padding"
    );
    // SAFETY: as in `as_bytes`; additionally every bit pattern is a valid f32/f16/bf16.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, std::mem::size_of_val(v)) }
}

/// Runs `f` with this thread's stream-capture mode set to relaxed, so allocating while some
/// stream (e.g. PyTorch's CUDA-graph capture) is capturing is legal, as PyTorch's allocator does.
pub(crate) fn with_relaxed_capture<R>(f: impl FnOnce() -> R) -> R {
    let mut mode = sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED;
    // SAFETY: swaps a thread-local setting; restored below.
    let swapped = unsafe { sys::cuThreadExchangeStreamCaptureMode(&mut mode) }
        .result()
        .is_ok();
    let out = f();
    if swapped {
        // SAFETY: restores the previous mode.
        let _ = unsafe { sys::cuThreadExchangeStreamCaptureMode(&mut mode) };
    }
    out
}

/// Owned device memory (`cuMemAlloc`), freed on drop.
///
/// Why not cudarc's `CudaSlice` (issue 22 asked; not measured, no GPU where this was written):
/// a `CudaSlice` belongs to one `CudaStream` and, with cudarc's event tracking on, every
/// `device_ptr(stream)` records and waits on events so other streams see its writes. The
/// runtime hands these addresses to kernels on streams it does not own (PyTorch's current
/// stream, often being captured into a CUDA graph), once per launch of ~5 µs decode kernels:
/// tracking would add driver calls to every launch and event nodes to captured graphs, and
/// turning it off leaves a `CudaSlice` with nothing over this type. Allocation also has to run
/// in relaxed capture mode and report a typed out-of-memory error (free / total), and freeing
/// must not be stream-ordered on a stream that may be capturing. Revisit with a measurement of
/// the decode benchmark if cudarc grows untracked slices.
pub(crate) struct DeviceAlloc {
    ptr: sys::CUdeviceptr,
    bytes: usize,
    ctx: Arc<CudaContext>,
}

impl std::fmt::Debug for DeviceAlloc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceAlloc({:#x}, {} bytes)", self.ptr, self.bytes)
    }
}

impl DeviceAlloc {
    /// Allocates `bytes` (at least 1) of uninitialised device memory; OOM is a typed error.
    pub(crate) fn new(ctx: &Arc<CudaContext>, bytes: usize, what: &'static str) -> Result<Self> {
        ctx.bind_to_thread().map_err(cuda("cuCtxSetCurrent"))?;
        let size = bytes.max(1);
        // SAFETY: plain allocation; the result is owned by the returned value.
        let r = with_relaxed_capture(|| unsafe { result::malloc_sync(size) });
        match r {
            Ok(ptr) => Ok(DeviceAlloc {
                ptr,
                bytes,
                ctx: ctx.clone(),
            }),
            Err(e) if e.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => {
                let (free, total) = result::mem_get_info().unwrap_or((0, 0));
                Err(RuntimeError::OutOfMemory {
                    what,
                    bytes,
                    free,
                    total,
                })
            }
            Err(e) => Err(RuntimeError::cuda("cuMemAlloc", e)),
        }
    }

    /// Allocates and fills with `data` through `stream`; returns when the copy is complete.
    pub(crate) fn from_host(
        ctx: &Arc<CudaContext>,
        data: &[u8],
        what: &'static str,
        stream: RawStream,
    ) -> Result<Self> {
        let a = DeviceAlloc::new(ctx, data.len(), what)?;
        a.copy_from_host(data, stream)?;
        Ok(a)
    }

    pub(crate) fn ptr(&self) -> u64 {
        self.ptr
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Stream-ordered fill of the first `count` u32 words.
    pub(crate) fn memset_u32(&self, value: u32, count: usize, stream: RawStream) -> Result<()> {
        assert!(count * 4 <= self.bytes, "memset past the allocation");
        // SAFETY: in bounds (checked above); the allocation outlives the queued memset because
        // it is only freed after the stream work that uses it (see WorkspacePool).
        unsafe { sys::cuMemsetD32Async(self.ptr, value, count, stream.handle()) }
            .result()
            .map_err(cuda("cuMemsetD32Async"))
    }

    /// Stream-ordered fill of the first `count` u16 words (e.g. a NaN pattern).
    pub(crate) fn memset_u16(&self, value: u16, count: usize, stream: RawStream) -> Result<()> {
        assert!(count * 2 <= self.bytes, "memset past the allocation");
        // SAFETY: in bounds (checked above).
        unsafe { sys::cuMemsetD16Async(self.ptr, value, count, stream.handle()) }
            .result()
            .map_err(cuda("cuMemsetD16Async"))
    }

    /// Copies `src` in; synchronous with respect to the host when `src` is pageable.
    pub(crate) fn copy_from_host(&self, src: &[u8], stream: RawStream) -> Result<()> {
        assert!(src.len() <= self.bytes, "copy past the allocation");
        // SAFETY: in bounds; the stream is synchronised before `src` can go away because the
        // caller synchronises the stream before returning to its caller (forward_host, buffers).
        unsafe { result::memcpy_htod_async(self.ptr, src, stream.handle()) }
            .map_err(cuda("cuMemcpyHtoDAsync"))?;
        stream.synchronize()
    }

    /// Copies out to `dst` and waits for it.
    pub(crate) fn copy_to_host(&self, dst: &mut [u8], stream: RawStream) -> Result<()> {
        assert!(dst.len() <= self.bytes, "copy past the allocation");
        // SAFETY: in bounds; the stream is synchronised before `dst` is read or released.
        unsafe { result::memcpy_dtoh_async(dst, self.ptr, stream.handle()) }
            .map_err(cuda("cuMemcpyDtoHAsync"))?;
        stream.synchronize()
    }
}

impl Drop for DeviceAlloc {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: we own the allocation; callers keep it alive until the stream work that
            // uses it is done (documented on SparseGemm / DeviceBuffer).
            let _ = with_relaxed_capture(|| unsafe { result::free_sync(self.ptr) });
        }
    }
}

/// Where a pointer handed in by a caller lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PointerKind {
    /// Device memory of this ordinal (cudaMalloc, PyTorch CUDA tensors).
    Device(usize),
    /// Managed (unified) memory: usable from any device.
    Managed,
    /// Page-locked host memory registered with CUDA.
    PinnedHost,
    /// Not known to CUDA (ordinary host memory, or garbage).
    Unknown,
}

/// Classifies `ptr` with one `cuPointerGetAttributes` call (no dereference): it runs on every
/// launch, so it asks for the memory type, managed flag and device ordinal at once. Unlike the
/// singular query, it reports a pointer CUDA does not know with memory type 0, not an error.
pub(crate) fn pointer_kind(ptr: *const c_void) -> Result<PointerKind> {
    use sys::CUpointer_attribute as A;
    let mut mem_type: u32 = 0;
    let mut managed: u32 = 0;
    let mut ordinal: std::ffi::c_int = -1;
    let mut attrs = [
        A::CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
        A::CU_POINTER_ATTRIBUTE_IS_MANAGED,
        A::CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
    ];
    let mut data: [*mut c_void; 3] = [
        &mut mem_type as *mut u32 as *mut c_void,
        &mut managed as *mut u32 as *mut c_void,
        &mut ordinal as *mut std::ffi::c_int as *mut c_void,
    ];
    // SAFETY: three attributes with three out-pointers of the sizes the driver writes for them
    // (CUmemorytype = u32, IS_MANAGED = bool as u32, DEVICE_ORDINAL = int); no dereference of ptr.
    unsafe {
        sys::cuPointerGetAttributes(
            attrs.len() as u32,
            attrs.as_mut_ptr(),
            data.as_mut_ptr(),
            ptr as sys::CUdeviceptr,
        )
    }
    .result()
    .map_err(cuda("cuPointerGetAttributes"))?;
    Ok(if managed != 0 {
        PointerKind::Managed
    } else if mem_type == sys::CUmemorytype::CU_MEMORYTYPE_DEVICE as u32 {
        PointerKind::Device(ordinal.max(0) as usize)
    } else if mem_type == sys::CUmemorytype::CU_MEMORYTYPE_HOST as u32 {
        PointerKind::PinnedHost
    } else {
        PointerKind::Unknown
    })
}

/// Sets the dynamic shared memory opt-in of `f` (needed above 48 KiB).
pub(crate) fn set_max_dynamic_smem(f: &CudaFunction, bytes: u32) -> Result<()> {
    f.set_attribute(
        sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
        bytes as i32,
    )
    .map_err(cuda("cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)"))
}

/// The launch attribute asking for thread-block clusters of `dims` CTAs.
fn cluster_dimension(dims: (u32, u32, u32)) -> sys::CUlaunchAttribute {
    // SAFETY: an all-zero CUlaunchAttribute is valid plain data (an id and a union of PODs).
    let mut a: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
    a.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
    a.value.clusterDim.x = dims.0;
    a.value.clusterDim.y = dims.1;
    a.value.clusterDim.z = dims.2;
    a
}

/// How many clusters of `dims` CTAs of `f` (`threads` per CTA, `smem` dynamic bytes) the device
/// runs at once (`cuOccupancyMaxActiveClusters`).
pub(crate) fn max_active_clusters(
    ctx: &Arc<CudaContext>,
    f: &CudaFunction,
    dims: (u32, u32, u32),
    threads: u32,
    smem: u32,
) -> Result<u32> {
    ctx.bind_to_thread().map_err(cuda("cuCtxSetCurrent"))?;
    let mut attr = cluster_dimension(dims);
    let config = sys::CUlaunchConfig {
        gridDimX: dims.0,
        gridDimY: dims.1,
        gridDimZ: dims.2,
        blockDimX: threads,
        blockDimY: 1,
        blockDimZ: 1,
        sharedMemBytes: smem,
        hStream: std::ptr::null_mut(),
        attrs: &mut attr,
        numAttrs: 1,
    };
    let mut n: std::ffi::c_int = 0;
    // SAFETY: `config` and the attribute it points to live across the call; `f` is a loaded
    // function of the current context; `n` is a valid out pointer.
    unsafe { sys::cuOccupancyMaxActiveClusters(&mut n, f.cu_function(), &config) }
        .result()
        .map_err(cuda("cuOccupancyMaxActiveClusters"))?;
    if n <= 0 {
        return Err(RuntimeError::Shape(format!(
            "the device holds no cluster of {dims:?} CTAs of {threads} threads and {smem} bytes of shared memory"
        )));
    }
    Ok(n as u32)
}

/// Queues one kernel on `stream` with the parameters its family laid out; with
/// `programmatic`, as a programmatic dependent launch (sm_90+: the kernel may start before the
/// previous one on the stream has finished and waits for it with `griddepcontrol.wait` before
/// its first memory access).
///
/// The caller (gpu_layer.rs) has checked: `params` are what `f`'s family builds for its own
/// kernel signature (`Family::launch_params`); `x`/`y` are device memory of this context of at
/// least m·k / m·n elements (the caller's contract for raw pointers); weights/bias/workspace
/// are live allocations sized by the family's own formulas and stay alive until the work
/// completes.
pub(crate) fn launch_kernel(
    ctx: &Arc<CudaContext>,
    f: &CudaFunction,
    geometry: &LaunchGeometry,
    stream: RawStream,
    params: &mut KernelParams,
    programmatic: bool,
) -> Result<()> {
    ctx.bind_to_thread().map_err(cuda("cuCtxSetCurrent"))?;
    let mut pointers = params.pointers();
    // SAFETY: an all-zero CUlaunchAttribute is valid plain data (an id and a union of PODs).
    let mut attrs: [sys::CUlaunchAttribute; 2] = unsafe { std::mem::zeroed() };
    let mut count = 0;
    if programmatic {
        let a = &mut attrs[count];
        a.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
        a.value.programmaticStreamSerializationAllowed = 1;
        count += 1;
    }
    if let Some(dims) = geometry.cluster {
        attrs[count] = cluster_dimension(dims);
        count += 1;
    }
    let config = sys::CUlaunchConfig {
        gridDimX: geometry.grid.0,
        gridDimY: geometry.grid.1,
        gridDimZ: geometry.grid.2,
        blockDimX: geometry.block,
        blockDimY: 1,
        blockDimZ: 1,
        sharedMemBytes: geometry.dynamic_smem,
        hStream: stream.handle(),
        attrs: attrs.as_mut_ptr(),
        numAttrs: count as u32,
    };
    // SAFETY: `pointers` holds one pointer per kernel parameter into `params`' storage, which
    // is neither moved nor dropped before the call returns (the driver copies the values);
    // the parameter list matches the kernel's signature (the family's contract); `config` and
    // the attributes it points to live across the call; pointer validity is the caller's
    // contract.
    unsafe {
        sys::cuLaunchKernelEx(
            &config,
            f.cu_function(),
            pointers.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    }
    .result()
    .map_err(cuda("cuLaunchKernelEx"))
}

/// Borrows caller-provided host memory as slices (CPU backend of `forward_raw`).
///
/// # Safety
/// `x` must point to `x_len` readable `T`s and `y` to `y_len` writable `T`s, not overlapping,
/// valid for the duration of the returned borrows.
pub(crate) unsafe fn host_slices<'a, T>(
    x: *const c_void,
    x_len: usize,
    y: *mut c_void,
    y_len: usize,
) -> (&'a [T], &'a mut [T]) {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        (
            std::slice::from_raw_parts(x as *const T, x_len),
            std::slice::from_raw_parts_mut(y as *mut T, y_len),
        )
    }
}
