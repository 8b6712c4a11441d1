//! Writing a whole model held in memory (the Python package's `sf.save`): one
//! `model.safetensors`, the manifest, and extra files such as `config.json`, through a
//! [`Staging`] directory.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::Dtype;

use crate::error::{ModelError, Result};
use crate::layout::WEIGHTS;
use crate::manifest::{Manifest, MANIFEST};
use crate::output::{Committed, Staging};
use crate::tensors::byte_len;
use crate::write::{write_bytes, write_json, Planned, ShardWriter};

/// One tensor to save.
#[derive(Debug, Clone, Copy)]
pub struct TensorData<'a> {
    pub name: &'a str,
    pub dtype: Dtype,
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
}

/// Writes `tensors`, `manifest` and `files` (name → content: `config.json`, ...) as the model
/// directory `dest`. The manifest is checked against the tensors first, so an inconsistent
/// model is never written. `force` replaces an existing SparseFlow model only.
pub fn save_model(
    dest: &Path,
    force: bool,
    manifest: &Manifest,
    tensors: &[TensorData<'_>],
    files: &[(&str, &[u8])],
) -> Result<Committed> {
    if manifest.tensor_parallel.is_some() {
        return Err(ModelError::Usage(
            "save_model writes unsharded models; shard one with `sparseflow convert --tp N` (sparseflow_model::tp::shard_model)".into(),
        ));
    }
    let mut seen = BTreeMap::new();
    for t in tensors {
        if byte_len(t.dtype, t.shape) != Some(t.bytes.len()) {
            return Err(ModelError::Usage(format!(
                "tensor `{}`: {} bytes do not hold {} {:?}",
                t.name,
                t.bytes.len(),
                t.dtype,
                t.shape
            )));
        }
        if seen.insert(t.name, (t.dtype, t.shape)).is_some() {
            return Err(ModelError::Usage(format!(
                "tensor `{}` given twice",
                t.name
            )));
        }
    }
    manifest.check_tensors(&dest.join(MANIFEST), |n| seen.get(n).copied())?;
    for (name, _) in files {
        if matches!(*name, WEIGHTS | MANIFEST) || name.contains('/') || name.starts_with('.') {
            return Err(ModelError::Usage(format!(
                "extra file `{name}`: not a plain file name the model may carry"
            )));
        }
    }
    let staging = Staging::begin(dest, force)?;
    let dir = staging.dir().to_path_buf();
    let planned = tensors
        .iter()
        .map(|t| Planned::new(t.name, t.dtype, t.shape.to_vec()))
        .collect();
    let meta = BTreeMap::from([
        ("format".to_string(), "pt".to_string()),
        (
            "sparseflow".to_string(),
            manifest.format_version.to_string(),
        ),
    ]);
    let mut w = ShardWriter::create(&dir.join(WEIGHTS), planned, &meta)?;
    for t in tensors {
        w.write(t.bytes)?;
    }
    w.finish()?;
    write_json(&dir.join(MANIFEST), &manifest.to_value())?;
    for (name, bytes) in files {
        write_bytes(&dir.join(name), bytes)?;
    }
    staging.commit()
}
