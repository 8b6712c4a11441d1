//! Errors of the code generator. Each message says what was wrong and what to do next.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    /// The spec asks for a configuration no template supports.
    #[error("unsupported kernel configuration: {0}")]
    Unsupported(String),

    /// The weight cannot be laid out for upload.
    #[error("cannot lay out the weight for upload: {0}")]
    Layout(String),

    /// A format-level failure, e.g. the host memory for an upload layout was refused.
    #[error(transparent)]
    Core(#[from] sparseflow_core::CoreError),

    /// libnvrtc could not be loaded.
    #[error(
        "NVRTC (libnvrtc.so.13) could not be loaded, so kernels cannot be compiled. Searched: the \
         loader's path (LD_LIBRARY_PATH), $SPARSEFLOW_NVRTC_DIR, and site-packages/nvidia/cu13/lib \
         of the active virtualenv or conda environment and of ./.venv. Install it with \
         `python3 -m pip install \"nvidia-cuda-nvrtc==13.0.*\"` (scripts/setup puts it into .venv), \
         then activate that environment or set SPARSEFLOW_NVRTC_DIR to its \
         site-packages/nvidia/cu13/lib directory (or install the CUDA 13 toolkit and add its lib64 \
         directory to LD_LIBRARY_PATH)"
    )]
    NvrtcMissing,

    /// An NVRTC API call failed (not a compile error).
    #[error("NVRTC call {call} failed: {status}")]
    Nvrtc { call: &'static str, status: String },

    /// The generated source did not compile; `excerpt` shows the failing generated lines.
    #[error("NVRTC failed to compile kernel {name} for {target}:\n{log}\n--- generated source around the error ---\n{excerpt}")]
    Compile {
        name: String,
        target: String,
        log: String,
        excerpt: String,
    },

    /// ptxas reported register spills or local memory (only when spills are denied).
    #[error("kernel {name} for {target} spills registers or uses local memory (a slow kernel; pick a smaller tile):\n{info}")]
    Spills {
        name: String,
        target: String,
        info: String,
    },

    /// The disk cache could not be written.
    #[error("kernel cache at {path}: {source}. Set SPARSEFLOW_CACHE_DIR to a writable directory")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
}
