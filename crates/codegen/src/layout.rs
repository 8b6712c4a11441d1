//! Upload layout: `Sparse24` (row-major values + metadata nibbles, docs/FORMAT.md) re-ordered once
//! into the order the kernels load. Every family reads the one fragment-major layout
//! (kernels/README.md, `WeightLayout::Fragment`); `upload_layout` takes the layout a family
//! names (`Family::weight_layout`) so a new family may add another.
//!
//! * N is padded to a multiple of 128 (every tile_n divides it: loads never need an N check),
//!   K to a multiple of 64 (one K pair = two mma.sp K steps). Padding holds value 0 with
//!   metadata code 0x4 (positions 0,1), a valid code for `mma.sp::ordered_metadata`.
//! * values: for each 16-row block `rb`, for each 32-wide K step `ks`: 32 lanes × 16 bytes,
//!   lane (g = lane/4, t = lane%4) holding its four A registers a0..a3 of mma.sp.m16n8k32:
//!   a0 = row g, compressed columns 2t, 2t+1; a1 = row g+8, same; a2 = row g, 2t+8, 2t+9;
//!   a3 = row g+8, same (compressed columns ks·16 + c).
//! * meta: for each `rb`, for each 64-wide K pair `kp`: 32 lanes × u32 (little endian). Lane
//!   (g, t) with s = t/2, h = t%2 holds the nibbles of K step 2kp+s, logical columns
//!   16h..16h+15 of that step: bits 0..15 row g, bits 16..31 row g+8. The MMA of K step 2kp+s
//!   reads it with selector s.

use crate::error::CodegenError;
use crate::family::WeightLayout;
// The host buffers of an upload layout are as large as the weight: a refused allocation is an
// error naming the size (CodegenError::Core), not an abort.
use sparseflow_core::alloc::try_filled;
use sparseflow_core::{DType, Element, Sparse24};

/// N is padded to this multiple at upload.
pub const N_ALIGN: usize = 128;
/// K is padded to this multiple at upload.
pub const K_ALIGN: usize = 64;
/// Metadata code for padding: positions 0 and 1.
const PAD_CODE: u8 = 0x4;

/// A weight in a family's upload order, ready to copy to the device as raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadLayout {
    pub values: Vec<u8>,
    pub meta: Vec<u8>,
    pub k_padded: usize,
}

fn element_bits<T: Element>(v: T) -> u16 {
    match T::DTYPE {
        DType::F16 => half::f16::from_f32(v.to_f32()).to_bits(),
        DType::BF16 => half::bf16::from_f32(v.to_f32()).to_bits(),
        DType::F32 => unreachable!("checked by the caller"),
    }
}

fn element_from_bits<T: Element>(bits: u16) -> T {
    match T::DTYPE {
        DType::F16 => T::from_f32(half::f16::from_bits(bits).to_f32()),
        DType::BF16 => T::from_f32(half::bf16::from_bits(bits).to_f32()),
        DType::F32 => unreachable!("checked by the caller"),
    }
}

/// Padded sizes (n_padded, k_padded) of a weight [n, k].
pub fn padded_dims(n: usize, k: usize) -> (usize, usize) {
    (n.div_ceil(N_ALIGN) * N_ALIGN, k.div_ceil(K_ALIGN) * K_ALIGN)
}

/// Byte offset of A register `reg` (0..3), half `hf` (0..1) of `lane` in block (rb, ks), and the
/// (row within the 16-row block, compressed column within the step) it holds.
fn value_slot(lane: usize, reg: usize, hf: usize) -> (usize, usize, usize) {
    let (g, t) = (lane / 4, lane % 4);
    let row = g + 8 * (reg & 1);
    let col = 2 * t + 8 * (reg >> 1) + hf;
    (lane * 16 + reg * 4 + hf * 2, row, col)
}

/// (row within the 16-row block, first group index within the K pair) of metadata bits
/// `16·half ..` of `lane`: 4 nibbles = 4 consecutive groups of 4 logical columns.
fn meta_slot(lane: usize, half: usize) -> (usize, usize) {
    let (g, t) = (lane / 4, lane % 4);
    let (s, h) = (t / 2, t % 2);
    (g + 8 * half, s * 8 + h * 4)
}

fn nibble(meta: &[u8], row_bytes: usize, row: usize, group: usize) -> u8 {
    let b = meta[row * row_bytes + group / 2];
    if group.is_multiple_of(2) {
        b & 0xF
    } else {
        b >> 4
    }
}

/// Re-orders a compressed weight into `layout` (done once per weight).
pub fn upload_layout<T: Element>(
    layout: WeightLayout,
    w: &Sparse24<T>,
) -> Result<UploadLayout, CodegenError> {
    match layout {
        WeightLayout::Fragment => fragment_layout(w),
    }
}

fn fragment_layout<T: Element>(w: &Sparse24<T>) -> Result<UploadLayout, CodegenError> {
    if T::DTYPE == DType::F32 {
        return Err(CodegenError::Layout(
            "f32 weights: sparse kernels take f16 or bf16".into(),
        ));
    }
    let (n, k) = (w.n, w.k);
    if n == 0 || k == 0 || k % 4 != 0 {
        return Err(CodegenError::Layout(format!(
            "weight [{n}, {k}]: need N > 0, K > 0, K % 4 == 0"
        )));
    }
    let row_vals = k / 2;
    let row_meta = k.div_ceil(8);
    if w.values.len() != n * row_vals || w.meta.len() != n * row_meta {
        return Err(CodegenError::Layout(format!(
            "weight [{n}, {k}]: values/meta lengths {}/{} do not match [N, K/2] / [N, ceil(K/8)]",
            w.values.len(),
            w.meta.len()
        )));
    }
    let (np, kp) = padded_dims(n, k);
    let groups = k / 4;
    let mut values = try_filled(np * kp, 0u8, "upload values")?;
    for (at, row, col) in value_slots(np, kp) {
        if row < n && col < row_vals {
            let bits = element_bits(w.values[row * row_vals + col]);
            values[at..at + 2].copy_from_slice(&bits.to_le_bytes());
        }
    }
    let mut words = try_filled(np / 16 * (kp / 64) * 32, 0u32, "upload metadata")?;
    for (at, shift, row, group) in meta_slots(np, kp) {
        let code = if row < n && group < groups {
            nibble(&w.meta, row_meta, row, group)
        } else {
            PAD_CODE
        };
        words[at / 4] |= u32::from(code) << shift;
    }
    let meta = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    Ok(UploadLayout {
        values,
        meta,
        k_padded: kp,
    })
}

/// Every 16-bit value slot of the padded `[np, kp]` fragment layout, as (byte offset in
/// `values`, row, compressed column). The one traversal both directions share: 16-row blocks,
/// K steps of 32 (512-byte MMA blocks), lanes, A registers, halves.
fn value_slots(np: usize, kp: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    let ks_count = kp / 32;
    (0..np / 16).flat_map(move |rb| {
        (0..ks_count).flat_map(move |ks| {
            let block = (rb * ks_count + ks) * 512;
            (0..32).flat_map(move |lane| {
                (0..4).flat_map(move |reg| {
                    (0..2).map(move |hf| {
                        let (off, r, c) = value_slot(lane, reg, hf);
                        (block + off, rb * 16 + r, ks * 16 + c)
                    })
                })
            })
        })
    })
}

/// Every metadata nibble of the padded layout, as (byte offset of its lane's u32 in `meta`,
/// bit shift in that word, row, group of 4 along K).
fn meta_slots(np: usize, kp: usize) -> impl Iterator<Item = (usize, u32, usize, usize)> {
    let kp_count = kp / 64;
    (0..np / 16).flat_map(move |rb| {
        (0..kp_count).flat_map(move |p| {
            (0..32).flat_map(move |lane| {
                let at = (rb * kp_count + p) * 128 + lane * 4;
                (0..2).flat_map(move |half| {
                    let (r, g0) = meta_slot(lane, half);
                    (0..4).map(move |i| {
                        (at, (16 * half + 4 * i) as u32, rb * 16 + r, p * 16 + g0 + i)
                    })
                })
            })
        })
    })
}

/// The inverse of [`upload_layout`]: recovers the `Sparse24` of shape [n, k]. Used by tests and
/// by anyone who wants to read back an uploaded weight.
pub fn from_upload_layout<T: Element>(
    layout: WeightLayout,
    up: &UploadLayout,
    n: usize,
    k: usize,
) -> Result<Sparse24<T>, CodegenError> {
    match layout {
        WeightLayout::Fragment => from_fragment_layout(up, n, k),
    }
}

fn from_fragment_layout<T: Element>(
    up: &UploadLayout,
    n: usize,
    k: usize,
) -> Result<Sparse24<T>, CodegenError> {
    let (np, kp) = padded_dims(n, k);
    if up.k_padded != kp || up.values.len() != np * kp || up.meta.len() != np / 16 * (kp / 64) * 128
    {
        return Err(CodegenError::Layout(format!(
            "upload layout sizes do not match a [{n}, {k}] weight"
        )));
    }
    let (row_vals, row_meta) = (k / 2, k.div_ceil(8));
    let mut values = vec![T::default(); n * row_vals];
    for (at, row, col) in value_slots(np, kp) {
        if row < n && col < row_vals {
            let bits = u16::from_le_bytes([up.values[at], up.values[at + 1]]);
            values[row * row_vals + col] = element_from_bits(bits);
        }
    }
    let mut meta = vec![0u8; n * row_meta];
    for (at, shift, row, group) in meta_slots(np, kp) {
        if row < n && group < k / 4 {
            let word = u32::from_le_bytes(up.meta[at..at + 4].try_into().expect("4 bytes"));
            let code = ((word >> shift) & 0xF) as u8;
            meta[row * row_meta + group / 2] |= code << (4 * (group % 2));
        }
    }
    if !(k / 4).is_multiple_of(2) {
        // The unused high nibble of each row's last byte holds the padding code (as core's compress).
        for row in 0..n {
            meta[row * row_meta + row_meta - 1] |= PAD_CODE << 4;
        }
    }
    Ok(Sparse24 { n, k, values, meta })
}
#[cfg(test)]
#[path = "layout_tests.rs"]
mod tests;
