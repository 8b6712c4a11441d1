//! # sparseflow-codegen
//!
//! The kernel families and everything that turns a fused sparse GEMM (family, dtype, epilogue,
//! tiles, target) into a launchable cubin: CUDA C++ from the readable templates in `kernels/`,
//! NVRTC, an on-disk cubin cache.
//!
//! * [`Family`] (+ `sparseflow_ir::FamilyModel`): one kernel family — configuration space,
//!   resources, grid, workspace, cost estimate, template, weight layout, launch parameters.
//!   Built-in families in [`families`], one file each beside its template.
//! * [`Registry`]: the one list of families; [`Registry::plan`] is the one function from a
//!   layer call and a target to a [`KernelSpec`] (runtime, `sparseflow compile`, benchmark).
//! * [`generate()`] / [`Registry::generate`]: spec → [`GeneratedKernel`] (source, geometry,
//!   [`KernelParams`] of a launch).
//! * [`layout`]: the device layout of the weight ([`upload_layout`]) and its inverse.
//! * [`compiler`]: [`Compiler`] (NVRTC through cudarc, dynamic loading) and the disk cache.
//!
//! Debugging: `SPARSEFLOW_DUMP_DIR=dir` writes every compiled kernel's `.cu`, `.ptx`, `.cubin`
//! and ptxas log there; `SPARSEFLOW_CACHE_DIR` moves the cache (default `~/.cache/sparseflow`).

pub mod compiler;
pub mod error;
pub mod families;
pub mod family;
pub mod generate;
pub mod layout;
pub mod nvrtc_lib;
pub mod params;
pub mod registry;
pub mod spec;
pub mod tensor_map;

pub use compiler::{CompiledKernel, Compiler, CompilerOptions};
pub use error::CodegenError;
pub use family::{Family, LaunchGeometry, Source, WeightLayout, EPILOGUE_CUH};
pub use generate::{kernel_name, GeneratedKernel, WORKSPACE_EMPTY};
pub use layout::{from_upload_layout, padded_dims, upload_layout, UploadLayout};
pub use params::{KernelParams, LaunchInputs};
pub use registry::{generate, PlannedKernel, Registry};
pub use spec::{parse_target, KernelSpec, TARGETS};
