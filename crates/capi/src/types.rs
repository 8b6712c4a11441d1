//! The C-visible types: status codes, dtypes, epilogues and the opaque handle structs.
//!
//! Enums that C passes *in* (dtype, epilogue, status for `sparseflow_status_string`) are taken
//! as plain `u32` in the Rust signatures ([`RawDType`], [`RawEpilogue`], [`RawStatus`]; cbindgen
//! prints them under the enum's name): a C caller can put any integer in an enum variable, and
//! an out-of-range value must be `SPARSEFLOW_STATUS_INVALID_ARGUMENT`, not undefined behaviour
//! from materialising an invalid Rust enum. Values the library returns are real Rust enums.
//!
//! Every value here is ABI: numbers never change, new ones are appended (see `abi/v1.0.txt`).

#![allow(non_camel_case_types)]

use sparseflow_core::{DType, EpilogueKind};

/// Result of every fallible `sparseflow_*` function. On anything but `SPARSEFLOW_STATUS_OK`,
/// `sparseflow_last_error()` says what was wrong on the calling thread.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SparseFlowStatus {
    /// Success.
    SPARSEFLOW_STATUS_OK = 0,
    /// A NULL pointer, a negative or zero size, a size that overflows, an unknown enum value,
    /// a bias that does not match the epilogue, or misaligned host data.
    SPARSEFLOW_STATUS_INVALID_ARGUMENT = 1,
    /// A NULL, foreign or already-destroyed context or kernel handle.
    SPARSEFLOW_STATUS_INVALID_HANDLE = 2,
    /// The weight is not 2:4 (more than two non-zeros in a group of 4 along K) or the
    /// metadata holds a code that is not two distinct increasing positions.
    SPARSEFLOW_STATUS_NOT_2TO4 = 3,
    /// Valid request that this build, device or backend cannot serve (e.g. F32 on a GPU).
    SPARSEFLOW_STATUS_UNSUPPORTED = 4,
    /// The CUDA driver, a kernel launch, NVRTC or the kernel cache (`SPARSEFLOW_CACHE_DIR`)
    /// failed.
    SPARSEFLOW_STATUS_CUDA_ERROR = 5,
    /// Host or device memory could not be allocated.
    SPARSEFLOW_STATUS_OUT_OF_MEMORY = 6,
    /// A bug in SparseFlow (including a caught panic): please report it with the message.
    SPARSEFLOW_STATUS_INTERNAL = 7,
}

pub use SparseFlowStatus::*;

/// Element type of host and device data. F16 and BF16 are raw IEEE / bfloat16 bit patterns
/// stored in `uint16_t`; F32 is `float`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SparseFlowDType {
    /// IEEE 754 half precision, as `uint16_t` bits.
    SPARSEFLOW_DTYPE_F16 = 0,
    /// bfloat16, as `uint16_t` bits.
    SPARSEFLOW_DTYPE_BF16 = 1,
    /// `float`. Host data only: accepted by the CPU backend, `UNSUPPORTED` on a GPU context.
    SPARSEFLOW_DTYPE_F32 = 2,
}

/// Epilogue applied to the fp32 accumulator before rounding to the output dtype. The values
/// are the epilogue table of docs/FORMAT.md (`sparseflow_core::EPILOGUES`); new kinds are
/// appended. `sparseflow_epilogue_info` describes each value at run time.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SparseFlowEpilogue {
    /// `y = acc`
    SPARSEFLOW_EPILOGUE_NONE = 0,
    /// `y = max(acc, 0)`
    SPARSEFLOW_EPILOGUE_RELU = 1,
    /// `y = acc * sigmoid(acc)`
    SPARSEFLOW_EPILOGUE_SILU = 2,
    /// `y = gelu(acc)`, exact erf form
    SPARSEFLOW_EPILOGUE_GELU = 3,
    /// `y = acc + bias`
    SPARSEFLOW_EPILOGUE_BIAS = 4,
    /// `y = relu(acc + bias)`
    SPARSEFLOW_EPILOGUE_BIAS_RELU = 5,
    /// `y = silu(acc + bias)`
    SPARSEFLOW_EPILOGUE_BIAS_SILU = 6,
    /// `y = gelu(acc + bias)`, exact erf form
    SPARSEFLOW_EPILOGUE_BIAS_GELU = 7,
    /// `y = gelu(acc)`, tanh approximation (PyTorch `approximate="tanh"`)
    SPARSEFLOW_EPILOGUE_GELU_TANH = 8,
    /// `y = gelu(acc + bias)`, tanh approximation
    SPARSEFLOW_EPILOGUE_BIAS_GELU_TANH = 9,
    /// `y = max(acc, 0)^2`, squared ReLU (ABI 1.2)
    SPARSEFLOW_EPILOGUE_RELU2 = 10,
    /// `y = max(acc + bias, 0)^2` (ABI 1.2)
    SPARSEFLOW_EPILOGUE_BIAS_RELU2 = 11,
}

/// A `SparseFlowDType` as C passes it (any integer); checked by [`dtype_from_raw`].
pub type RawDType = u32;
/// A `SparseFlowEpilogue` as C passes it (any integer); checked by [`epilogue_from_raw`].
pub type RawEpilogue = u32;
/// A `SparseFlowStatus` as C passes it (any integer).
pub type RawStatus = u32;

/// `sparseflow_compress_2to4` flag: magnitude-prune each group to its two largest entries
/// first, instead of refusing a weight that is not already 2:4.
pub const SPARSEFLOW_COMPRESS_PRUNE: u32 = 1;

/// Opaque context; C sees only `SparseFlowContext`, a pointer-sized token (see `handles`).
pub struct SparseFlowContext_ {
    _never_constructed: [u8; 0],
}

/// Opaque kernel; C sees only `SparseFlowKernel`, a pointer-sized token (see `handles`).
pub struct SparseFlowKernel_ {
    _never_constructed: [u8; 0],
}

/// Opaque model directory (ABI 1.1); C sees only `SparseFlowModel`, a pointer-sized token.
pub struct SparseFlowModel_ {
    _never_constructed: [u8; 0],
}

/// `typedef struct SparseFlowContext_* SparseFlowContext;`
pub type SparseFlowContext = *mut SparseFlowContext_;
/// `typedef struct SparseFlowKernel_* SparseFlowKernel;`
pub type SparseFlowKernel = *mut SparseFlowKernel_;
/// `typedef struct SparseFlowModel_* SparseFlowModel;`
pub type SparseFlowModel = *mut SparseFlowModel_;

/// Checks a C dtype value.
pub(crate) fn dtype_from_raw(raw: RawDType) -> Option<DType> {
    match raw {
        0 => Some(DType::F16),
        1 => Some(DType::BF16),
        2 => Some(DType::F32),
        _ => None,
    }
}

/// Checks a C epilogue value against the epilogue table (`host::epilogue_arg` adds the error).
pub(crate) fn epilogue_from_raw(raw: RawEpilogue) -> Option<EpilogueKind> {
    EpilogueKind::from_abi(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epilogue_values_are_the_core_table() {
        // The C names and values themselves are checked against the table in tests/header.rs.
        for spec in sparseflow_core::EPILOGUES {
            assert_eq!(epilogue_from_raw(spec.abi_value), Some(spec.kind));
        }
        assert_eq!(
            epilogue_from_raw(sparseflow_core::EPILOGUES.len() as u32),
            None
        );
    }

    #[test]
    fn dtype_values_round_trip() {
        assert_eq!(
            dtype_from_raw(SparseFlowDType::SPARSEFLOW_DTYPE_F16 as u32),
            Some(DType::F16)
        );
        assert_eq!(
            dtype_from_raw(SparseFlowDType::SPARSEFLOW_DTYPE_BF16 as u32),
            Some(DType::BF16)
        );
        assert_eq!(
            dtype_from_raw(SparseFlowDType::SPARSEFLOW_DTYPE_F32 as u32),
            Some(DType::F32)
        );
        assert_eq!(dtype_from_raw(3), None);
        assert_eq!(dtype_from_raw(u32::MAX), None);
    }
}
