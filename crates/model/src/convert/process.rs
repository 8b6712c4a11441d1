//! The numeric work of `convert`, in bounded row chunks: a tensor is never materialised whole
//! (the source stays memory-mapped); each chunk of at most [`CHUNK_BYTES`] of dense data is
//! converted to the output dtype, pruned (or checked to be 2:4), compressed, measured and
//! written. Only a sparse layer's metadata (1/16 of its dense bytes) is held until its values
//! are written.

use half::{bf16, f16};
use safetensors::tensor::Dtype;
use sparseflow_core::format::meta_bytes_per_row;
use sparseflow_core::{
    diff_report, prune, Calibration, DType, DiffReport, Element, PruneMethod, PruneOptions,
    Sparse24,
};

use crate::tensors::elements;

/// Dense bytes (in the output dtype) processed per chunk.
pub const CHUNK_BYTES: usize = 32 << 20;

/// An element type `convert` writes.
pub trait OutElem: Element + bytemuck::Pod {}
impl OutElem for f16 {}
impl OutElem for bf16 {}

/// Rows per chunk for rows of `k` elements of `T`.
pub fn chunk_rows<T>(k: usize) -> usize {
    (CHUNK_BYTES / (k * std::mem::size_of::<T>()).max(1)).max(1)
}

/// Elements `[start, end)` of a tensor stored as `src`, converted to `T`.
pub fn read_as<T: Element + bytemuck::Pod>(
    bytes: &[u8],
    src: Dtype,
    start: usize,
    end: usize,
) -> Vec<T> {
    let size = src.bitsize() / 8;
    let raw = &bytes[start * size..end * size];
    if src == crate::manifest::st_dtype(T::DTYPE) {
        return elements::<T>(raw).into_owned();
    }
    match src {
        Dtype::F16 => elements::<f16>(raw)
            .iter()
            .map(|v| T::from_f32(v.to_f32()))
            .collect(),
        Dtype::BF16 => elements::<bf16>(raw)
            .iter()
            .map(|v| T::from_f32(v.to_f32()))
            .collect(),
        Dtype::F32 => elements::<f32>(raw)
            .iter()
            .map(|&v| T::from_f32(v))
            .collect(),
        Dtype::F64 => elements::<f64>(raw)
            .iter()
            .map(|&v| T::from_f64(v))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether an element's bits are ±0.
fn is_zero_bits(raw: &[u8]) -> bool {
    let (last, rest) = raw.split_last().unwrap_or((&0, &[]));
    last & 0x7f == 0 && rest.iter().all(|&b| b == 0)
}

/// Counts groups of 4 (along rows of `k`) with more than two non-zeros, and zero elements.
pub fn count_violations(bytes: &[u8], dtype: Dtype) -> (u64, u64) {
    let size = dtype.bitsize() / 8;
    let (mut violations, mut zeros) = (0u64, 0u64);
    for group in bytes.chunks_exact(4 * size) {
        let z = group.chunks_exact(size).filter(|e| is_zero_bits(e)).count() as u64;
        zeros += z;
        violations += u64::from(z < 2);
    }
    (violations, zeros)
}

/// Where a sparse layer's dense rows come from.
pub enum Source<'a> {
    /// A dense weight; `prune`: magnitude-prune, else it must already be 2:4.
    Dense {
        bytes: &'a [u8],
        dtype: Dtype,
        prune: bool,
    },
    /// compressed-tensors `sparse-24-bitmask`: `compressed [n, k/2]` + `bitmask [n, ceil(k/8)]`.
    Bitmask {
        compressed: &'a [u8],
        dtype: Dtype,
        bitmask: &'a [u8],
    },
}

/// Accumulates a [`DiffReport`] over row chunks.
#[derive(Debug, Default)]
pub struct DiffAcc {
    count: f64,
    max: f64,
    sum_abs: f64,
    sq_err: f64,
    sq_w: f64,
    l1_w: f64,
    l1_ws: f64,
    zeros: f64,
    bytes_dense: usize,
    bytes_sparse: usize,
}

impl DiffAcc {
    fn add<T: Element>(&mut self, w: &[T], r: &DiffReport) {
        let (sq_w, l1_w) = w.iter().fold((0.0, 0.0), |(s, l), v| {
            let v = v.to_f64();
            (s + v * v, l + v.abs())
        });
        let count = w.len() as f64;
        self.count += count;
        self.max = self.max.max(r.max_error);
        self.sum_abs += r.mean_abs_error * count;
        self.sq_err += (r.rel_fro_error * sq_w.sqrt()).powi(2);
        self.sq_w += sq_w;
        self.l1_w += l1_w;
        self.l1_ws += r.kept_magnitude * l1_w;
        self.zeros += (r.sparsity * count).round();
        self.bytes_dense += r.bytes_dense;
        self.bytes_sparse += r.bytes_sparse;
    }

    pub fn finish(&self) -> DiffReport {
        let ratio = |a: f64, b: f64, z: f64| if b == 0.0 { z } else { a / b };
        DiffReport {
            max_error: self.max,
            mean_abs_error: ratio(self.sum_abs, self.count, 0.0),
            rel_fro_error: ratio(self.sq_err.sqrt(), self.sq_w.sqrt(), 0.0),
            kept_magnitude: ratio(self.l1_ws, self.l1_w, 1.0),
            sparsity: ratio(self.zeros, self.count, 0.0),
            bytes_dense: self.bytes_dense,
            bytes_sparse: self.bytes_sparse,
            output_max_error: None,
            output_rel_error: None,
        }
    }
}

/// The dense rows `[r0, r1)` of a source, in `T`.
fn dense_rows<T: OutElem>(
    src: &Source<'_>,
    k: usize,
    r0: usize,
    r1: usize,
) -> Result<Vec<T>, String> {
    match *src {
        Source::Dense { bytes, dtype, .. } => Ok(read_as::<T>(bytes, dtype, r0 * k, r1 * k)),
        Source::Bitmask {
            compressed,
            dtype,
            bitmask,
        } => {
            let values = read_as::<T>(compressed, dtype, r0 * k / 2, r1 * k / 2);
            let per_row = k.div_ceil(8);
            let mut out = vec![T::default(); (r1 - r0) * k];
            let mut next = values.iter();
            for row in r0..r1 {
                let mask = &bitmask[row * per_row..(row + 1) * per_row];
                for group in 0..k / 4 {
                    let mut set = 0;
                    for i in 0..4 {
                        let col = group * 4 + i;
                        if mask[col / 8] >> (col % 8) & 1 == 1 {
                            set += 1;
                            out[(row - r0) * k + col] =
                                *next.next().ok_or("more mask bits than values")?;
                        }
                    }
                    if set != 2 {
                        return Err(format!(
                            "row {row}, group {group} has {set} mask bits set; sparse-24-bitmask stores exactly 2 per group of 4"
                        ));
                    }
                }
            }
            Ok(out)
        }
    }
}

/// How a dense layer is pruned: by magnitude, or by an activation-aware method from this
/// layer's calibration. Rows are independent in every method (one `H` for all rows), so the
/// row chunks give the same result as the whole tensor.
#[derive(Clone, Copy)]
pub enum Pruner<'a> {
    Magnitude,
    Calibrated(PruneMethod, &'a Calibration),
}

impl Pruner<'_> {
    fn prune<T: Element>(
        self,
        w: &[T],
        rows: usize,
        k: usize,
    ) -> sparseflow_core::Result<Sparse24<T>> {
        match self {
            Pruner::Magnitude => Sparse24::prune_compress(w, rows, k),
            Pruner::Calibrated(method, cal) => {
                prune(method, w, rows, k, Some(cal), &PruneOptions::default()).map(|(s, _)| s)
            }
        }
    }
}

/// Converts one sparse layer `[n, k]`, calling `values` with each chunk's bytes to write
/// (compressed values, or with `dense_out` the pruned dense rows) and `progress` with input
/// bytes done. Returns the metadata (empty with `dense_out`) and the diff report.
pub fn sparse_layer<T: OutElem>(
    src: &Source<'_>,
    n: usize,
    k: usize,
    pruner: Pruner<'_>,
    dense_out: bool,
    mut values: impl FnMut(&[u8]) -> crate::Result<()>,
    mut progress: impl FnMut(u64),
) -> crate::Result<Result<(Vec<u8>, DiffReport), String>> {
    let step = chunk_rows::<T>(k);
    let mut meta = Vec::with_capacity(if dense_out {
        0
    } else {
        n * meta_bytes_per_row(k)
    });
    let mut acc = DiffAcc::default();
    let prune = matches!(src, Source::Dense { prune: true, .. });
    let in_bytes_per_row = match src {
        Source::Dense { dtype, .. } => k * dtype.bitsize() / 8,
        Source::Bitmask { dtype, .. } => k / 2 * dtype.bitsize() / 8 + k.div_ceil(8),
    } as u64;
    for r0 in (0..n).step_by(step) {
        let r1 = (r0 + step).min(n);
        let rows = r1 - r0;
        let w = match dense_rows::<T>(src, k, r0, r1) {
            Ok(w) => w,
            Err(e) => return Ok(Err(e)),
        };
        let compressed = if prune {
            pruner.prune(&w, rows, k)
        } else {
            Sparse24::compress(&w, rows, k)
        };
        let s = match compressed {
            Ok(s) => s,
            Err(e) => return Ok(Err(shift_row(e.to_string(), r0))),
        };
        let report = match diff_report(&w, &s, None) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e.to_string())),
        };
        acc.add(&w, &report);
        drop(w);
        if dense_out {
            values(bytemuck::cast_slice(&s.decompress()))?;
        } else {
            values(bytemuck::cast_slice(&s.values))?;
            meta.extend_from_slice(&s.meta);
        }
        progress(rows as u64 * in_bytes_per_row);
    }
    Ok(Ok((meta, acc.finish())))
}

/// Core errors count rows from the chunk start; say the row of the tensor.
fn shift_row(msg: String, r0: usize) -> String {
    if r0 == 0 {
        msg
    } else {
        format!("{msg} (row counted from row {r0} of the tensor)")
    }
}

/// Streams a dense tensor, converted to `dst`, in chunks.
pub fn dense_tensor(
    bytes: &[u8],
    src: Dtype,
    dst: Option<DType>,
    mut write: impl FnMut(&[u8]) -> crate::Result<()>,
    mut progress: impl FnMut(u64),
) -> crate::Result<()> {
    let Some(dst) = dst.filter(|d| crate::manifest::sf_dtype(src).is_some_and(|s| s != *d)) else {
        for piece in bytes.chunks(CHUNK_BYTES) {
            write(piece)?;
            progress(piece.len() as u64);
        }
        return Ok(());
    };
    let size = src.bitsize() / 8;
    let numel = bytes.len() / size;
    let step = CHUNK_BYTES / 4;
    for start in (0..numel).step_by(step) {
        let end = (start + step).min(numel);
        match dst {
            DType::F16 => write(bytemuck::cast_slice(&read_as::<f16>(
                bytes, src, start, end,
            )))?,
            DType::BF16 => write(bytemuck::cast_slice(&read_as::<bf16>(
                bytes, src, start, end,
            )))?,
            DType::F32 => write(bytemuck::cast_slice(&read_as::<f32>(
                bytes, src, start, end,
            )))?,
        }
        progress(((end - start) * size) as u64);
    }
    Ok(())
}
