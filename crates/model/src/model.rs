//! A SparseFlow model directory opened for reading: manifest + tensors, checked against each
//! other, and typed access to one layer's compressed weight.

use std::path::Path;

use sparseflow_core::{DType, Element, EpilogueKind, Sparse24};

use crate::error::{ModelError, Result};
use crate::fsx::Root;
use crate::layout::{TensorRef, TensorSet};
use crate::manifest::{st_dtype, LayerEntry, Manifest, MANIFEST};
use crate::tensors::elements;

/// A SparseFlow model directory.
#[derive(Debug)]
pub struct ModelDir {
    root: Root,
    manifest: Manifest,
    tensors: TensorSet,
}

impl ModelDir {
    /// Opens and validates a model directory: manifest version and keys, file layout, and
    /// that the manifest's layers and aliases match the stored tensors.
    pub fn open(dir: &Path) -> Result<ModelDir> {
        let root = Root::new(dir)?;
        let manifest = Manifest::read(&root)?;
        let tensors = TensorSet::open_dir(&root)?;
        manifest.check_tensors(&root.shown(MANIFEST), |name| {
            tensors.get(name).map(|t| (t.dtype, t.shape))
        })?;
        if let Some(tp) = &manifest.tensor_parallel {
            tp.check_files(&root, &manifest.layers)?;
        }
        Ok(ModelDir {
            root,
            manifest,
            tensors,
        })
    }

    pub fn path(&self) -> &Path {
        self.root.path()
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn tensors(&self) -> &TensorSet {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<TensorRef<'_>> {
        self.tensors.get(name)
    }

    /// The manifest entry of a sparse layer; the error lists what the model has.
    pub fn layer_entry(&self, name: &str) -> Result<&LayerEntry> {
        self.manifest.layers.get(name).ok_or_else(|| {
            let mut names: Vec<&str> = self.manifest.layers.keys().map(|s| s.as_str()).collect();
            names.truncate(8);
            ModelError::Usage(format!(
                "{}: no sparse layer `{name}` (sparse layers include: {})",
                self.root.path().display(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ))
        })
    }

    /// Raw bytes of a layer's `values` and `meta` and its entry. A layer held per rank (a
    /// tensor-parallel directory) is an error: it has no whole weight here.
    pub fn layer_bytes(&self, name: &str) -> Result<(&LayerEntry, &[u8], &[u8])> {
        let entry = self.layer_entry(name)?;
        if let Some(tp) = &self.manifest.tensor_parallel {
            if tp.layers.contains_key(name) {
                return Err(ModelError::Usage(format!(
                    "{}: layer `{name}` is tensor-parallel, stored as {} slices in the rank files; load it per rank (sparseflow.parallel.load)",
                    self.root.path().display(),
                    tp.size
                )));
            }
        }
        let [(values, ..), (meta, ..)] = entry.tensors(name);
        // Present with the right shape: checked in `open`.
        let get = |t: &str| self.tensors.get(t).map(|t| t.bytes).unwrap_or_default();
        Ok((entry, get(&values), get(&meta)))
    }

    /// A layer's compressed weight, checked (metadata codes, finiteness). `T` must be the
    /// layer's dtype.
    pub fn layer<T: Element + bytemuck::Pod>(&self, name: &str) -> Result<Sparse24<T>> {
        let (entry, values, meta) = self.layer_bytes(name)?;
        if entry.dtype != T::DTYPE {
            return Err(ModelError::Usage(format!(
                "layer `{name}` is {}, not {}",
                entry.dtype,
                T::DTYPE
            )));
        }
        let [n, k] = entry.shape;
        let values = elements::<T>(values).into_owned();
        Sparse24::from_parts(n, k, values, meta.to_vec()).map_err(|source| ModelError::Core {
            what: format!("{}: layer `{name}`", self.root.path().display()),
            source,
        })
    }

    /// The dtype of a layer.
    pub fn layer_dtype(&self, name: &str) -> Result<DType> {
        Ok(self.layer_entry(name)?.dtype)
    }

    /// The epilogue of a layer (validated against the epilogue table when the manifest was read).
    pub fn layer_epilogue(&self, name: &str) -> Result<EpilogueKind> {
        let entry = self.layer_entry(name)?;
        EpilogueKind::from_name(&entry.epilogue).map_err(|source| ModelError::Core {
            what: format!("{}: layer `{name}`", self.root.shown(MANIFEST).display()),
            source,
        })
    }

    /// The raw bytes of a layer's bias, `<name>.bias` (`[N]` in the layer's dtype), when its
    /// epilogue adds one; `None` when it does not. A bias epilogue without that tensor, or a
    /// bias of another dtype or shape, is an error naming the tensor.
    pub fn layer_bias_bytes(&self, name: &str) -> Result<Option<&[u8]>> {
        let entry = self.layer_entry(name)?;
        if !self.layer_epilogue(name)?.uses_bias() {
            return Ok(None);
        }
        let tensor = format!("{name}.bias");
        let want = (st_dtype(entry.dtype), [entry.shape[0]]);
        match self.tensors.get(&tensor) {
            None => Err(ModelError::key(
                self.root.shown(MANIFEST),
                format!("layers.{name}.epilogue"),
                format!(
                    "`{}` adds a bias but tensor `{tensor}` is missing from the model files",
                    entry.epilogue
                ),
            )),
            Some(t) if (t.dtype, t.shape) != (want.0, &want.1[..]) => Err(ModelError::tensor(
                t.file,
                &tensor,
                format!(
                    "{} {:?}, expected {} {:?} (the bias of layer `{name}`)",
                    t.dtype, t.shape, want.0, want.1
                ),
            )),
            Some(t) => Ok(Some(t.bytes)),
        }
    }
}
