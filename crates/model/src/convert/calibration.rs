//! The calibration file of `convert --method wanda|sparsegpt|sparsegpt-refine --calibration
//! FILE` (format: docs/ACCURACY.md, "Calibration file"; written by
//! `python/sparseflow/calibration_file.py`).
//!
//! `convert` reads only the **activations** form: one float tensor `[tokens, in_features]` per
//! layer, named by the layer's module path (`model.layers.0.mlp.down_proj`). Token ids would
//! need the model run in Rust; `write_calibration_from_model` in the Python helper runs the
//! model on them (or on texts) and writes the activations file instead.
//!
//! The file is memory-mapped; a layer's `H = XᵀX` is accumulated only when that layer is
//! converted (in row chunks of the activations) and dropped after it.

use std::path::{Path, PathBuf};

use safetensors::tensor::Dtype;
use sparseflow_core::Calibration;

use super::process::{chunk_rows, read_as};
use crate::error::{ModelError, Result};
use crate::tensors::TensorFile;

const FORMAT: &str = "sparseflow-calibration";
const VERSION: &str = "1";

/// An opened, checked activations calibration file.
pub struct CalibrationFile {
    file: TensorFile,
    path: PathBuf,
}

fn bad(path: &Path, msg: impl std::fmt::Display) -> ModelError {
    ModelError::Usage(format!("calibration file {}: {msg}", path.display()))
}

impl CalibrationFile {
    /// Opens `path`; errors: not a SparseFlow calibration file, another version, the tokens
    /// form (with what to do instead), an unknown kind, no tensors.
    pub fn open(path: &Path) -> Result<CalibrationFile> {
        let file = TensorFile::open_path(path)?;
        let meta = file.metadata();
        let get = |key: &str| meta.get(key).map(String::as_str);
        if get("format") != Some(FORMAT) {
            return Err(bad(path, format!("not a SparseFlow calibration file (metadata format = {:?}, expected {FORMAT:?}); write one with sparseflow.calibration_file", get("format"))));
        }
        if get("version") != Some(VERSION) {
            return Err(bad(
                path,
                format!(
                    "version {:?}; this SparseFlow reads {VERSION:?}",
                    get("version")
                ),
            ));
        }
        match get("kind") {
            Some("activations") => {}
            Some("tokens") => return Err(bad(path, "holds token ids; convert reads per-layer activations only (running the model is not done in Rust). Turn the tokens into activations with python: sparseflow.calibration_file.write_calibration_from_model(path, model, texts_or_batches)")),
            other => return Err(bad(path, format!("unknown kind {other:?} (activations or tokens)"))),
        }
        if file.entries().is_empty() {
            return Err(bad(path, "holds no activation tensors"));
        }
        Ok(CalibrationFile {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The layers (module paths) the file has activations for.
    pub fn layers(&self) -> impl Iterator<Item = &str> {
        self.file.entries().iter().map(|e| e.name.as_str())
    }

    /// Checks that `layer`'s activations exist and fit a weight with `k` input features
    /// (float, `[tokens >= 1, k]`); the message names the layer.
    pub fn check(&self, layer: &str, k: usize) -> Result<()> {
        let Some(e) = self.file.get(layer) else {
            let held: Vec<&str> = self.layers().take(8).collect();
            return Err(bad(
                &self.path,
                format!(
                    "no activations for layer `{layer}` (the file holds {} layer(s): {}{}); an activation-aware method needs every pruned layer's inputs: add them, --exclude the layer, or use --method magnitude",
                    self.file.entries().len(),
                    held.join(", "),
                    if self.file.entries().len() > held.len() { ", ..." } else { "" }
                ),
            ));
        };
        if !matches!(e.dtype, Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64) {
            return Err(bad(
                &self.path,
                format!(
                    "activations of `{layer}` are {:?}; expected a float dtype",
                    e.dtype
                ),
            ));
        }
        if e.shape.len() != 2 || e.shape[1] != k || e.shape[0] == 0 {
            return Err(bad(
                &self.path,
                format!(
                    "activations of `{layer}` have shape {:?}; expected [tokens >= 1, {k}] (the layer's in_features)",
                    e.shape
                ),
            ));
        }
        Ok(())
    }

    /// `H = XᵀX` of `layer`'s activations (checked with [`Self::check`]); NaN/Inf and all-zero
    /// activations are errors naming the layer.
    pub fn calibration(&self, layer: &str, k: usize) -> Result<Calibration> {
        self.check(layer, k)?;
        let e = self.file.get(layer).ok_or_else(|| bad(&self.path, layer))?;
        let bytes = self.file.bytes(e);
        let mut cal = Calibration::new(k).map_err(|err| bad(&self.path, err))?;
        let step = chunk_rows::<f32>(k);
        for r0 in (0..e.shape[0]).step_by(step) {
            let r1 = (r0 + step).min(e.shape[0]);
            let x = read_as::<f32>(bytes, e.dtype, r0 * k, r1 * k);
            cal.accumulate(&x, r1 - r0)
                .map_err(|err| bad(&self.path, format!("activations of `{layer}`: {err}")))?;
        }
        Ok(cal)
    }
}
