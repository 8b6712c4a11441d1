//! # sparseflow-core
//!
//! The bottom layer of SparseFlow: everything about 2:4 structured sparsity that needs no GPU.
//!
//! * [`format`]: magnitude pruning, validation, and the compressed [`Sparse24`] format
//!   (`values [N, K/2]` + `meta [N, K/8]`, the hardware's own encoding; see docs/FORMAT.md).
//! * [`prune`]: one interface for magnitude, Wanda and SparseGPT pruning (plus refinement and
//!   channel permutations) driven by calibration activations.
//! * [`diff`]: what pruning cost — weight error, kept magnitude, bytes, output error.
//! * [`epilogue`]: the one epilogue table (IR name, ABI value, CUDA expression, CPU function,
//!   op sequence matched by the fusion pass).
//! * [`reference`]: the CPU GEMM on the compressed form (rayon) and a float64 oracle.
//!
//! Conventions: `Y[M×N] = epilogue(X[M×K] · Wᵀ [+ b])`, PyTorch `nn.Linear` layout,
//! 2:4 groups run along K, accumulation in fp32, output in the input dtype.

pub mod alloc;
pub mod diff;
pub mod dtype;
pub mod epilogue;
pub mod error;
pub mod format;
pub mod prune;
pub mod reference;
mod shape;

pub use diff::{diff_report, DiffReport};
pub use dtype::{DType, Element};
pub use epilogue::{ElementwiseOp, EpilogueKind, EpilogueSpec, EPILOGUES};
pub use error::{CoreError, Result};
pub use format::{prune_magnitude, validate, Sparse24};
pub use prune::{prune, Calibration, PruneError, PruneMethod, PruneOptions, PruneReport};
pub use reference::{dense_gemm, oracle_gemm_f64, sparse_gemm, sparse_gemm_into};
