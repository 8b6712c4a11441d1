//! `CUtensorMap` encoding for families that load with TMA (sm90). A map is 128 opaque bytes the
//! driver fills on the host (`cuTensorMapEncodeTiled`, no context needed); the kernel receives
//! it by value as a `__grid_constant__` parameter.

use cudarc::driver::sys;

use crate::error::CodegenError;

/// The bytes of one encoded map, as a kernel parameter (64-byte aligned by the caller).
pub type TensorMapBytes = [u8; 128];

fn encode(
    addr: u64,
    dims: &[u64],
    strides: &[u64],
    boxes: &[u32],
    swizzle: sys::CUtensorMapSwizzle,
) -> Result<TensorMapBytes, CodegenError> {
    let rank = dims.len();
    let bad = |why: String| CodegenError::Unsupported(format!("TMA map of {dims:?}: {why}"));
    if addr == 0 || !addr.is_multiple_of(16) {
        return Err(bad(format!("address {addr:#x} is not 16-byte aligned")));
    }
    if strides.iter().any(|s| !s.is_multiple_of(16)) {
        return Err(bad(format!(
            "strides {strides:?} must be multiples of 16 bytes"
        )));
    }
    if boxes.iter().any(|&b| b == 0 || b > 256) {
        return Err(bad(format!("box {boxes:?}: each side 1..=256")));
    }
    let mut map = sys::CUtensorMap { opaque: [0; 16] };
    let ones = [1u32; 5];
    // SAFETY: every pointer refers to a live local array of `rank` (strides: rank - 1) elements;
    // the driver only writes the 128-byte map and reads `addr` as a number (no access).
    let rc = unsafe {
        sys::cuTensorMapEncodeTiled(
            &mut map,
            sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_UINT16,
            rank as u32,
            addr as *mut std::ffi::c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            boxes.as_ptr(),
            ones.as_ptr(),
            sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            swizzle,
            sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
    };
    if rc != sys::CUresult::CUDA_SUCCESS {
        return Err(bad(format!("cuTensorMapEncodeTiled returned {rc:?}")));
    }
    let mut out = [0u8; 128];
    for (chunk, word) in out.chunks_exact_mut(8).zip(map.opaque) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    Ok(out)
}

/// A row-major `[rows, cols]` 16-bit matrix read in `box_cols × box_rows` boxes with the
/// 128-byte swizzle (the canonical K-major wgmma operand layout; `box_cols` × 2 = 128 bytes).
/// Rows and columns past the end arrive as zeros.
pub fn encode_2d_sw128(
    addr: u64,
    rows: u64,
    cols: u64,
    box_cols: u32,
    box_rows: u32,
) -> Result<TensorMapBytes, CodegenError> {
    encode(
        addr,
        &[cols, rows],
        &[cols * 2],
        &[box_cols, box_rows],
        sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
    )
}

/// A contiguous `[dims[2]][dims[1]][dims[0]]` array of 16-bit words read in boxes of `boxes`
/// (innermost first), unswizzled: a weight in the fragment layout viewed as [row block][K
/// step][block bytes].
pub fn encode_3d_blocks(
    addr: u64,
    dims: [u64; 3],
    boxes: [u32; 3],
) -> Result<TensorMapBytes, CodegenError> {
    encode(
        addr,
        &dims,
        &[dims[0] * 2, dims[0] * dims[1] * 2],
        &boxes,
        sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_NONE,
    )
}
