//! # sparseflow-codegen
//!
//! Turns one fused sparse GEMM (family, dtype, epilogue, tiles, target) into CUDA C++ from the
//! readable templates in `kernels/`, compiles it with NVRTC to a cubin, and caches cubins on
//! disk. The runtime launches what comes out with the fixed kernel ABI:
//!
//! ```c
//! extern "C" __global__ void <name>(const T* x, const uint8_t* wvals, const uint8_t* wmeta,
//!     const T* bias, T* y, float* workspace, int M, int N, int K);
//! ```
//!
//! * [`spec`]: [`KernelSpec`], [`KernelFamily`] and each family's supported configuration space.
//! * [`generate()`]: spec → [`GeneratedKernel`] (source + launch geometry).
//! * [`layout`]: the per-family upload layout of the weight ([`upload_layout`]) and its inverse.
//! * [`compiler`]: [`Compiler`] (NVRTC through cudarc, dynamic loading) and the disk cache.
//!
//! Debugging: `SPARSEFLOW_DUMP_DIR=dir` writes every compiled kernel's `.cu`, `.ptx`, `.cubin`
//! and ptxas log there; `SPARSEFLOW_CACHE_DIR` moves the cache (default `~/.cache/sparseflow`).

pub mod compiler;
pub mod error;
pub mod generate;
pub mod layout;
pub mod nvrtc_lib;
pub mod spec;

pub use compiler::{CompiledKernel, Compiler, CompilerOptions};
pub use error::CodegenError;
pub use generate::{generate, kernel_name, GeneratedKernel, EPILOGUE_CUH, WORKSPACE_EMPTY};
pub use layout::{from_upload_layout, padded_dims, upload_layout, UploadLayout};
pub use spec::{parse_target, KernelFamily, KernelSpec, TARGETS};
