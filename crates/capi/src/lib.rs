//! # libsparseflow — SparseFlow's stable C ABI
//!
//! Builds `libsparseflow.so` / `libsparseflow.a`; `include/sparseflow.h` is generated from this
//! crate by cbindgen (`cargo run -p sparseflow-capi --example gen_header`) and checked in.
//! docs/C_API.md is the user's manual; this crate's layout:
//!
//! * [`types`]: the C-visible enums and opaque handle types (all ABI).
//! * `boundary`: `ffi_boundary!`, the wrapper every exported body goes through (panics →
//!   `SPARSEFLOW_STATUS_INTERNAL`, errors → status + thread-local message).
//! * `handles`: handle tokens and the registry of live objects (NULL / foreign / destroyed
//!   handles are `SPARSEFLOW_STATUS_INVALID_HANDLE`, never UB); it knows no object type, so
//!   `context`, `kernel` and `model` depend on it one way.
//! * `error`, `host`: statuses and messages; checks on sizes and pointers from C.
//! * `engine`: the only module that talks to `sparseflow_runtime`.
//! * the exported functions, one file per topic: `info`, `context`, `kernel`, `format`,
//!   `model` (SparseFlow model directories, read through `sparseflow-model`), `layout` (the
//!   device layout on the host, for `sparseflow_kernel_create_from_device_layout`).
//!
//! Compatibility rules (docs/C_API.md, "Versioning"): `abi/v1.0.txt` records every function
//! signature and enum value; `tests/abi.rs` fails on any difference unless the version is
//! bumped and the list re-recorded.

#![deny(unsafe_op_in_unsafe_fn)]

mod boundary;
mod context;
mod engine;
mod error;
mod format;
mod handles;
mod host;
mod info;
mod kernel;
mod layout;
mod model;
pub mod types;

pub use context::{sparseflow_context_create, sparseflow_context_destroy};
pub use format::{sparseflow_compress_2to4, sparseflow_compressed_sizes, sparseflow_validate_2to4};
pub use info::{
    sparseflow_abi_version, sparseflow_epilogue_info, sparseflow_last_error,
    sparseflow_status_string, SPARSEFLOW_ABI_VERSION_MAJOR, SPARSEFLOW_ABI_VERSION_MINOR,
};
pub use kernel::{
    sparseflow_kernel_create, sparseflow_kernel_create_from_dense,
    sparseflow_kernel_create_from_device_layout, sparseflow_kernel_destroy, sparseflow_kernel_run,
};
pub use layout::{sparseflow_device_layout_sizes, sparseflow_layout_to_device_order};
pub use model::{
    sparseflow_kernel_create_from_model, sparseflow_model_destroy, sparseflow_model_layer_count,
    sparseflow_model_layer_info, sparseflow_model_layer_name, sparseflow_model_load_layer,
    sparseflow_model_open,
};
pub use types::*;

/// Number of live context and kernel handles in this process (for leak checks in tests).
#[doc(hidden)]
pub fn live_handle_count() -> usize {
    handles::live_count()
}

#[cfg(test)]
mod tests {
    use crate::handles::Handle;

    /// The handle registry tells kinds apart by tag first (a downcast only backs it up), so no
    /// two kinds may share one.
    #[test]
    fn handle_tags_are_distinct_and_odd() {
        let tags = [
            crate::context::ContextObj::TAG,
            crate::kernel::KernelObj::TAG,
            crate::model::ModelObj::TAG,
        ];
        for (i, t) in tags.iter().enumerate() {
            assert_eq!(
                t & 1,
                1,
                "tag {t:#x} must be odd (real pointers are aligned)"
            );
            assert!(!tags[i + 1..].contains(t), "tag {t:#x} used twice");
        }
    }
}
