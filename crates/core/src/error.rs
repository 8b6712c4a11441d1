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
    Prune(#[from] PruneError),
}

/// What went wrong with a pruning request. Wrapped in [`CoreError::Prune`]; the
/// pruning API (`crate::prune`) re-exports it.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum PruneError {
    #[error("calibration is empty (0 tokens): pass the activations this layer sees, [tokens >= 1, in_features]")]
    EmptyCalibration,

    #[error("calibration activations [{rows}, {k}] need {} values, got {got}", rows.saturating_mul(*k))]
    CalibrationShape { rows: usize, k: usize, got: usize },

    #[error("calibration activations have K = {got} channels but the weight has in_features = {expected}: pass this layer's inputs, [tokens, {expected}]")]
    CalibrationK { expected: usize, got: usize },

    #[error("calibration activation at token {token}, channel {channel} is {value}: NaN/Inf in the calibration data (an fp16 overflow upstream?)")]
    NonFiniteCalibration {
        token: usize,
        channel: usize,
        value: f64,
    },

    #[error("calibration activations are all zero: they say nothing about which weights matter")]
    ZeroCalibration,

    #[error("calibration needs at least one input channel (K = 0)")]
    ZeroChannels,

    #[error("method '{method}' needs calibration activations (this layer's inputs, [tokens, in_features])")]
    MissingCalibration { method: &'static str },

    #[error("the calibration Hessian XᵀX is not positive definite even with damping {damping:e} × its mean diagonal: use more (or more varied) calibration tokens")]
    NotPositiveDefinite { damping: f64 },

    #[error(
        "unknown pruning method '{name}'; valid: magnitude, wanda, sparsegpt, sparsegpt-refine"
    )]
    UnknownMethod { name: String },

    #[error("{what} = {value} is invalid: {expected}")]
    BadOption {
        what: &'static str,
        value: f64,
        expected: &'static str,
    },

    #[error("not a permutation of 0..{k}: {problem}")]
    BadPermutation { k: usize, problem: String },
}
