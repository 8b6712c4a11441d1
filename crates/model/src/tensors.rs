//! Reading safetensors files: memory-mapped, header checked, every error naming the file and,
//! where one is to blame, the tensor.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::tensor::{Dtype, SafeTensorError};
use safetensors::SafeTensors;

use crate::error::{ModelError, Result};
use crate::fsx::open_regular;

/// One tensor of a file: where its bytes are.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Byte range inside the file.
    start: usize,
    end: usize,
}

impl TensorEntry {
    pub fn len_bytes(&self) -> usize {
        self.end - self.start
    }
}

/// A safetensors file, memory-mapped; its tensors in file (offset) order.
#[derive(Debug)]
pub struct TensorFile {
    shown: PathBuf,
    mmap: Mmap,
    entries: Vec<TensorEntry>,
    index: HashMap<String, usize>,
    metadata: HashMap<String, String>,
}

impl TensorFile {
    /// Opens a file the user named directly (no directory confinement), regular files only.
    pub fn open_path(path: &Path) -> Result<TensorFile> {
        let file = open_regular(path, path)?;
        TensorFile::from_file(file, path)
    }

    /// Maps an opened regular file (`shown` names it in messages).
    pub fn from_file(file: File, shown: &Path) -> Result<TensorFile> {
        let len = file.metadata().map_err(ModelError::io(shown))?.len();
        let bad = |detail: String| ModelError::Safetensors {
            path: shown.to_path_buf(),
            detail,
        };
        if len < 8 {
            return Err(bad(format!(
                "{len} bytes: truncated (a safetensors file starts with an 8-byte header length)"
            )));
        }
        // SAFETY: the mapping is read-only and private to this process. Model files are not
        // modified while they are read (a file truncated underneath us would raise SIGBUS, as
        // with any mmap reader); the bytes are only ever read as plain data.
        let mmap = unsafe { Mmap::map(&file) }.map_err(ModelError::io(shown))?;
        let (header_len, meta) =
            SafeTensors::read_metadata(&mmap).map_err(|e| bad(diagnose(&mmap, &e)))?;
        let data_start = 8 + header_len;
        let mut entries: Vec<TensorEntry> = meta
            .tensors()
            .into_iter()
            .map(|(name, info)| TensorEntry {
                name,
                dtype: info.dtype,
                shape: info.shape.clone(),
                start: data_start + info.data_offsets.0,
                end: data_start + info.data_offsets.1,
            })
            .collect();
        entries.sort_by_key(|e| (e.start, e.end));
        let index = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        Ok(TensorFile {
            shown: shown.to_path_buf(),
            mmap,
            entries,
            index,
            metadata: meta.metadata().clone().unwrap_or_default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.shown
    }

    /// Tensors in the order their bytes appear in the file.
    pub fn entries(&self) -> &[TensorEntry] {
        &self.entries
    }

    pub fn get(&self, name: &str) -> Option<&TensorEntry> {
        self.index.get(name).map(|&i| &self.entries[i])
    }

    /// The `__metadata__` strings of the header.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    pub fn bytes(&self, entry: &TensorEntry) -> &[u8] {
        &self.mmap[entry.start..entry.end]
    }
}

/// A tensor's bytes as elements of `T`: borrowed when aligned, copied otherwise (safetensors
/// does not align tensors, so an fp16 tensor after an odd-sized byte tensor is unaligned).
pub fn elements<T: bytemuck::Pod>(bytes: &[u8]) -> Cow<'_, [T]> {
    match bytemuck::try_cast_slice(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => {
            let mut out = vec![T::zeroed(); bytes.len() / std::mem::size_of::<T>()];
            let dst: &mut [u8] = bytemuck::cast_slice_mut(&mut out);
            let n = dst.len();
            dst.copy_from_slice(&bytes[..n]);
            Cow::Owned(out)
        }
    }
}

/// Names the tensor behind a safetensors parse error, re-reading the header leniently.
fn diagnose(buf: &[u8], err: &SafeTensorError) -> String {
    let header = || -> Option<(usize, serde_json::Map<String, serde_json::Value>)> {
        let n = u64::from_le_bytes(buf.get(..8)?.try_into().ok()?) as usize;
        let text = buf.get(8..8usize.checked_add(n)?)?;
        let value: serde_json::Value = serde_json::from_slice(text).ok()?;
        Some((n, value.as_object()?.clone()))
    };
    let base = format!("not a valid safetensors file: {err}");
    match err {
        SafeTensorError::InvalidHeaderLength => {
            let n = u64::from_le_bytes(buf[..8].try_into().unwrap_or([0; 8]));
            format!(
                "{base}: the header claims {n} bytes but the file has {} (truncated or not safetensors)",
                buf.len()
            )
        }
        SafeTensorError::MetadataIncompleteBuffer | SafeTensorError::TensorInvalidInfo => {
            let Some((n, map)) = header() else {
                return base;
            };
            let available = buf.len() - 8 - n;
            let mut worst: Option<String> = None;
            for (name, info) in &map {
                if name == "__metadata__" {
                    continue;
                }
                let offsets = info["data_offsets"].as_array();
                let end = offsets.and_then(|o| o.get(1)?.as_u64()).unwrap_or(0) as usize;
                if end > available {
                    worst = Some(format!(
                        "{base}: tensor `{name}` ends at byte {end} of the data section but the file holds only {available} bytes of data (truncated?)"
                    ));
                    break;
                }
                let start = offsets.and_then(|o| o.first()?.as_u64()).unwrap_or(0) as usize;
                let numel: Option<usize> = info["shape"]
                    .as_array()
                    .map(|s| s.iter().map(|d| d.as_u64().unwrap_or(0) as usize).product());
                let dtype: Option<Dtype> = serde_json::from_value(info["dtype"].clone()).ok();
                if let (Some(numel), Some(dtype)) = (numel, dtype) {
                    let want = numel.saturating_mul(dtype.bitsize()) / 8;
                    if end.saturating_sub(start) != want {
                        worst = Some(format!(
                            "{base}: tensor `{name}` has shape {} of {dtype} ({want} bytes) but offsets [{start}, {end}]",
                            info["shape"]
                        ));
                    }
                }
            }
            worst.unwrap_or_else(|| {
                format!("{base}: {available} data bytes do not match the tensors the header lists")
            })
        }
        _ => base,
    }
}

/// Size in bytes of `numel` elements of `dtype`, refusing overflow.
pub fn byte_len(dtype: Dtype, shape: &[usize]) -> Option<usize> {
    let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    let bits = numel.checked_mul(dtype.bitsize())?;
    Some(bits.div_ceil(8))
}
