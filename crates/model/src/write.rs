//! Writing safetensors files tensor by tensor: the header is written first from the planned
//! list of tensors, then each tensor's bytes are streamed (in as many pieces as the caller
//! likes), so a writer never holds more than the piece it is given.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use safetensors::tensor::Dtype;
use serde_json::{json, Map, Value};

use crate::error::{ModelError, Result};
use crate::tensors::byte_len;

/// A tensor to be written: its header entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

impl Planned {
    pub fn new(name: impl Into<String>, dtype: Dtype, shape: Vec<usize>) -> Planned {
        Planned {
            name: name.into(),
            dtype,
            shape,
        }
    }

    pub fn len_bytes(&self) -> Result<usize> {
        byte_len(self.dtype, &self.shape).ok_or_else(|| {
            ModelError::Usage(format!(
                "tensor `{}`: shape {:?} is too large",
                self.name, self.shape
            ))
        })
    }
}

/// Streams one safetensors file.
pub struct ShardWriter {
    path: PathBuf,
    out: BufWriter<File>,
    planned: Vec<(Planned, usize)>,
    current: usize,
    written: usize,
    total: u64,
}

impl ShardWriter {
    /// Creates `path` (which must not exist) and writes the header for `planned`, in that order.
    pub fn create(
        path: &Path,
        planned: Vec<Planned>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<ShardWriter> {
        let mut header = Map::new();
        if !metadata.is_empty() {
            header.insert("__metadata__".into(), json!(metadata));
        }
        let mut offset = 0usize;
        let mut sized = Vec::with_capacity(planned.len());
        for p in planned {
            let len = p.len_bytes()?;
            if header.contains_key(&p.name) {
                return Err(ModelError::Usage(format!(
                    "tensor `{}` is written twice into {}",
                    p.name,
                    path.display()
                )));
            }
            header.insert(
                p.name.clone(),
                json!({"dtype": p.dtype, "shape": p.shape, "data_offsets": [offset, offset + len]}),
            );
            offset += len;
            sized.push((p, len));
        }
        let mut text = serde_json::to_vec(&Value::Object(header))
            .map_err(|e| ModelError::Usage(format!("{}: header: {e}", path.display())))?;
        // Tensor data starts 8-byte aligned, as the reference implementation writes it.
        while !text.len().is_multiple_of(8) {
            text.push(b' ');
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(ModelError::io(path))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&(text.len() as u64).to_le_bytes())
            .and_then(|_| out.write_all(&text))
            .map_err(ModelError::io(path))?;
        let mut w = ShardWriter {
            path: path.to_path_buf(),
            out,
            planned: sized,
            current: 0,
            written: 0,
            total: 8 + text.len() as u64 + offset as u64,
        };
        w.skip_empty();
        Ok(w)
    }

    fn skip_empty(&mut self) {
        while self.current < self.planned.len() && self.planned[self.current].1 == self.written {
            self.current += 1;
            self.written = 0;
        }
    }

    /// The tensor the next bytes belong to.
    pub fn current(&self) -> Option<&Planned> {
        self.planned.get(self.current).map(|(p, _)| p)
    }

    /// Appends bytes of the current tensor; a piece may not run past its end.
    pub fn write(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let Some((p, len)) = self.planned.get(self.current) else {
                return Err(ModelError::Usage(format!(
                    "{}: {} bytes written past the last tensor",
                    self.path.display(),
                    bytes.len()
                )));
            };
            let take = (len - self.written).min(bytes.len());
            let name = p.name.clone();
            self.out
                .write_all(&bytes[..take])
                .map_err(|e| ModelError::tensor(&self.path, name, format!("write: {e}")))?;
            self.written += take;
            bytes = &bytes[take..];
            self.skip_empty();
        }
        Ok(())
    }

    /// Checks that every planned tensor was written in full, flushes and fsyncs the file.
    /// Returns its size in bytes.
    pub fn finish(self) -> Result<u64> {
        if let Some((p, len)) = self.planned.get(self.current) {
            return Err(ModelError::tensor(
                &self.path,
                &p.name,
                format!("only {} of {len} bytes were written", self.written),
            ));
        }
        let file = self
            .out
            .into_inner()
            .map_err(|e| ModelError::io(&self.path)(e.into_error()))?;
        file.sync_all().map_err(ModelError::io(&self.path))?;
        Ok(self.total)
    }
}

/// Writes a JSON file (pretty, trailing newline) and fsyncs it.
pub fn write_json(path: &Path, value: &Value) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(value)
        .map_err(|e| ModelError::Usage(format!("{}: {e}", path.display())))?;
    text.push(b'\n');
    write_bytes(path, &text)
}

/// Writes a new file with `bytes` and fsyncs it.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(ModelError::io(path))?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .map_err(ModelError::io(path))
}

/// The `model.safetensors.index.json` of a sharded model.
pub fn index_json(weight_map: &BTreeMap<String, String>, total_size: u64) -> Value {
    json!({"metadata": {"total_size": total_size}, "weight_map": weight_map})
}
