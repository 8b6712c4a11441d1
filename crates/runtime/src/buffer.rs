//! `DeviceBuffer<T>`: a typed, owned device array for Rust users (and the GPU verify tool)
//! who do not bring their own CUDA memory. Freed on drop; the caller keeps it alive until
//! work queued on it has finished (as with any CUDA allocator).

use std::ffi::c_void;
use std::marker::PhantomData;

use sparseflow_core::{DType, Element};

use crate::context::Context;
use crate::error::{Result, RuntimeError};
use crate::launch::{self, DeviceAlloc, RawStream};

pub struct DeviceBuffer<T: Element> {
    alloc: DeviceAlloc,
    len: usize,
    ctx: Context,
    _elem: PhantomData<T>,
}

impl<T: Element> std::fmt::Debug for DeviceBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DeviceBuffer<{}>[{}] at {:#x}",
            T::DTYPE,
            self.len,
            self.alloc.ptr()
        )
    }
}

impl<T: Element> DeviceBuffer<T> {
    /// `len` elements of uninitialised device memory on `ctx` (a GPU context).
    pub fn uninit(ctx: &Context, len: usize) -> Result<Self> {
        let g = ctx.gpu().ok_or(RuntimeError::NeedsGpu("DeviceBuffer"))?;
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| RuntimeError::Shape(format!("{len} elements overflow usize bytes")))?;
        let alloc = DeviceAlloc::new(&g.ctx, bytes, "DeviceBuffer")?;
        Ok(DeviceBuffer {
            alloc,
            len,
            ctx: ctx.clone(),
            _elem: PhantomData,
        })
    }

    /// A device copy of `data`.
    pub fn from_host(ctx: &Context, data: &[T]) -> Result<Self> {
        let b = Self::uninit(ctx, data.len())?;
        let g = ctx.gpu().expect("checked by uninit");
        b.alloc
            .copy_from_host(launch::as_bytes(data), g.aux.raw())?;
        Ok(b)
    }

    /// Copies the buffer back to the host (waits for work queued on the legacy NULL stream and
    /// blocking streams; synchronise your own non-blocking streams first).
    pub fn to_host(&self) -> Result<Vec<T>> {
        let mut out = vec![T::default(); self.len];
        self.alloc
            .copy_to_host(launch::as_bytes_mut(&mut out), self.null_stream())?;
        Ok(out)
    }

    /// Fills every element with NaN (to catch unwritten outputs), queued on `stream`
    /// (`None` = the context's default stream). fp16/bf16 only.
    ///
    /// # Safety
    /// `stream`, when given, must be a live `CUstream` of this buffer's context.
    pub unsafe fn fill_nan_async(&self, stream: Option<*mut c_void>) -> Result<()> {
        let pattern: u16 = match T::DTYPE {
            DType::F16 => 0x7E00,
            DType::BF16 => 0x7FC0,
            DType::F32 => {
                return Err(RuntimeError::UnsupportedDType {
                    dtype: DType::F32,
                    backend: "fill_nan_async",
                    hint: "use f16 or bf16 buffers",
                })
            }
        };
        // SAFETY: forwarded from this function's contract.
        let s = stream.map_or(self.null_stream(), |p| unsafe { RawStream::from_raw(p) });
        self.alloc.memset_u16(pattern, self.len, s)
    }

    fn null_stream(&self) -> RawStream {
        // SAFETY: the NULL stream is always valid for the current context.
        unsafe { RawStream::from_raw(std::ptr::null_mut()) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The device address, for [`crate::SparseGemm::forward_raw`] and other CUDA code.
    pub fn as_ptr(&self) -> *const c_void {
        self.alloc.ptr() as usize as *const c_void
    }

    pub fn as_mut_ptr(&mut self) -> *mut c_void {
        self.alloc.ptr() as usize as *mut c_void
    }
}
