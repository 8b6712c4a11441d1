//! # sparseflow-runtime
//!
//! Runs SparseFlow's 2:4 sparse layers: on a CUDA GPU (sm_80 or newer) through the compiler
//! (`sparseflow_ir::plan_layer`) and the code generator (`sparseflow_codegen`), or on the CPU
//! backend with the exact reference semantics of `sparseflow_core`. The same binary runs on
//! machines with and without CUDA (cudarc with dynamic loading).
//!
//! * [`Context`] / [`Device`] / [`DeviceInfo`]: which device, its default stream, kernel and
//!   split-K workspace caches. GPU contexts use the device's primary context (as PyTorch does),
//!   so external streams and pointers work.
//! * [`SparseGemm`]: `Y = epilogue(X · Wᵀ [+ b])` for one layer: `forward_host`,
//!   `forward_raw` (C ABI / Python: device pointers + a `CUstream`), `forward_device` (cudarc).
//! * [`SparseGemm::from_device_layout`] / [`BorrowedWeight`]: a layer on caller-owned device
//!   buffers in the fragment layout (weights.rs), adopted without a copy.
//! * [`DeviceBuffer`]: a typed device array for Rust users who bring no CUDA memory.
//! * [`RuntimeError`]: every failure, with what to do about it.
//!
//! Per forward: M is bucketed (`sparseflow_ir::select::m_bucket`: the next power of two), the
//! bucket is planned once (`sparseflow_codegen::Registry::plan` on the device's own `Target`),
//! its kernel generated/compiled (codegen's disk cache) and loaded once per context, and
//! launched with the real M and the parameters its family builds.
//!
//! `unsafe`: every driver call and raw-pointer access is in `launch.rs`. Outside it, `unsafe`
//! appears only where a caller's raw pointer or `CUstream` enters: the `unsafe fn`s
//! `SparseGemm::forward_raw` (gemm.rs), `SparseGemm::from_device_layout` (weights.rs) and `DeviceBuffer::fill_nan_async` (buffer.rs), and the
//! `launch::RawStream::from_raw` / `launch::host_slices` calls that wrap those arguments
//! (gemm.rs, buffer.rs, gpu_layer.rs, cpu_layer.rs), each with a `// SAFETY:` comment.

mod buffer;
mod context;
mod cpu_layer;
mod device_weights;
mod error;
mod gemm;
mod gpu_layer;
mod kernels;
mod launch;
mod plan;
mod report;
mod weights;
mod workspace;

pub use buffer::DeviceBuffer;
pub use context::{target_for, Context, Device, DeviceInfo, RuntimeMemory};
pub use error::{Result, RuntimeError};
pub use gemm::{bucket, SparseGemm};
pub use report::{KernelInfo, UploadReport, WeightUpload};
/// The code generator's error, carried by [`RuntimeError::Codegen`].
pub use sparseflow_codegen::CodegenError;
pub use weights::{
    fragment_layout_bytes, from_fragment_layout, to_fragment_layout, BorrowedWeight,
};

/// Re-exported so users of `forward_device` / `cuda_context` name the same cudarc.
pub use cudarc;
