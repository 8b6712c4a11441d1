//! Error type of the core crate. Every message says what was wrong and, where it helps,
//! what to do about it.

use thiserror::Error;

pub type Result<T, E = CoreError> = std::result::Result<T, E>;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum CoreError {
    #[error("K = {k} is not a multiple of 4: 2:4 sparsity groups 4 consecutive weights along K (pad the layer's in_features to a multiple of 4)")]
    KNotMultipleOf4 { k: usize },

    #[error("{what} must be non-zero")]
    ZeroDim { what: &'static str },

    #[error("{what}: expected {expected} elements, got {got}")]
    LengthMismatch {
        what: &'static str,
        expected: usize,
        got: usize,
    },

    #[error("{what}: size overflows usize")]
    Overflow { what: &'static str },

    #[error("out of memory: {what} needs {bytes} bytes of host memory, which the allocator refused (a smaller shape or batch, or more memory)")]
    OutOfMemory { what: &'static str, bytes: usize },

    #[error(
        "non-finite weight {value} at row {row}, column {col}: fix or drop it before sparsifying"
    )]
    NonFinite { row: usize, col: usize, value: f64 },

    #[error("row {row}, group {group} (columns {}..{}) is not 2:4: values {values:?} have {nonzeros} non-zeros, at most 2 allowed (prune it first)", group * 4, group * 4 + 3)]
    Not24 {
        row: usize,
        group: usize,
        values: [f64; 4],
        nonzeros: usize,
    },

    #[error("row {row}, group {group}: metadata code {code:#06b} is not two distinct increasing positions (valid: 0b0100, 0b1000, 0b1100, 0b1001, 0b1101, 0b1110)")]
    BadMeta { row: usize, group: usize, code: u8 },

    #[error("unknown epilogue '{name}'; valid epilogues: {valid}")]
    UnknownEpilogue { name: String, valid: String },

    #[error("epilogue '{epilogue}' {problem}")]
    BiasMismatch {
        epilogue: &'static str,
        problem: &'static str,
    },

    #[error("dtype mismatch: {0}")]
    DTypeMismatch(String),

    #[error("{0} contains NaN or Inf; fix the input before measuring")]
    NonFiniteInput(&'static str),

    /// Activation-aware pruning: bad calibration, method name or option.
    #[error(transparent)]
    Prune(#[from] crate::prune::PruneError),
}
