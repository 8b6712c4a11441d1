//! The tensors of a model directory in the Hugging Face layout: `model.safetensors`, or shards
//! listed in `model.safetensors.index.json` (`{"weight_map": {tensor: shard file}}`). Shard
//! names are confined to the directory; a missing shard, a tensor the index places in a shard
//! that lacks it, and a tensor stored twice are errors naming both.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::Dtype;

use crate::error::{ModelError, Result};
use crate::fsx::Root;
use crate::tensors::{TensorEntry, TensorFile};

pub const WEIGHTS: &str = "model.safetensors";
pub const INDEX: &str = "model.safetensors.index.json";

/// A tensor found in a [`TensorSet`].
#[derive(Debug, Clone, Copy)]
pub struct TensorRef<'a> {
    pub name: &'a str,
    pub dtype: Dtype,
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
    /// The file it lives in (for messages).
    pub file: &'a Path,
    /// Index of that file in [`TensorSet::files`].
    pub file_index: usize,
}

/// Every tensor of a model, memory-mapped, across its files.
#[derive(Debug)]
pub struct TensorSet {
    files: Vec<(String, TensorFile)>,
    map: HashMap<String, (usize, usize)>,
    sharded: bool,
}

impl TensorSet {
    /// Opens the tensors of a model directory.
    pub fn open_dir(root: &Root) -> Result<TensorSet> {
        if root.exists(WEIGHTS) {
            let file = TensorFile::from_file(root.open(WEIGHTS)?, &root.shown(WEIGHTS))?;
            return TensorSet::from_files(vec![(WEIGHTS.to_string(), file)], false);
        }
        if !root.exists(INDEX) {
            return Err(ModelError::Layout {
                path: root.path().to_path_buf(),
                problem: format!("neither {WEIGHTS} nor {INDEX} found"),
            });
        }
        let index_path = root.shown(INDEX);
        let index = root.read_json(INDEX)?;
        let weight_map = index
            .get("weight_map")
            .and_then(|w| w.as_object())
            .ok_or_else(|| {
                ModelError::key(&index_path, "weight_map", "missing or not an object")
            })?;
        let mut shards: Vec<String> = Vec::new();
        let mut expected: Vec<(String, usize)> = Vec::with_capacity(weight_map.len());
        for (tensor, shard) in weight_map {
            let shard = shard.as_str().ok_or_else(|| {
                ModelError::key(
                    &index_path,
                    format!("weight_map.{tensor}"),
                    "not a file name",
                )
            })?;
            let i = match shards.iter().position(|s| s == shard) {
                Some(i) => i,
                None => {
                    shards.push(shard.to_string());
                    shards.len() - 1
                }
            };
            expected.push((tensor.clone(), i));
        }
        let mut files = Vec::with_capacity(shards.len());
        for (i, shard) in shards.iter().enumerate() {
            root.resolve(shard)?;
            if !root.exists(shard) {
                let holder = expected.iter().find(|e| e.1 == i).map(|e| e.0.as_str());
                return Err(ModelError::Layout {
                    path: index_path,
                    problem: format!(
                        "shard `{shard}` (holding tensor `{}`) is missing",
                        holder.unwrap_or("?")
                    ),
                });
            }
            files.push((
                shard.clone(),
                TensorFile::from_file(root.open(shard)?, &root.shown(shard))?,
            ));
        }
        for (tensor, i) in &expected {
            if files[*i].1.get(tensor).is_none() {
                return Err(ModelError::Layout {
                    path: index_path,
                    problem: format!(
                        "tensor `{tensor}` is listed in shard `{}`, which does not hold it",
                        files[*i].0
                    ),
                });
            }
        }
        TensorSet::from_files(files, true)
    }

    /// Opens one `.safetensors` file named by the user.
    pub fn open_file(path: &Path) -> Result<TensorSet> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| WEIGHTS.into());
        TensorSet::from_files(vec![(name, TensorFile::open_path(path)?)], false)
    }

    fn from_files(files: Vec<(String, TensorFile)>, sharded: bool) -> Result<TensorSet> {
        let mut map = HashMap::new();
        for (fi, (_, file)) in files.iter().enumerate() {
            for (ei, e) in file.entries().iter().enumerate() {
                if let Some((other, _)) = map.insert(e.name.clone(), (fi, ei)) {
                    return Err(ModelError::tensor(
                        file.path(),
                        &e.name,
                        format!("also stored in {}", files[other].1.path().display()),
                    ));
                }
            }
        }
        Ok(TensorSet {
            files,
            map,
            sharded,
        })
    }

    /// Whether the tensors came from an index of shards.
    pub fn sharded(&self) -> bool {
        self.sharded
    }

    /// The files, with the names they have in the directory.
    pub fn files(&self) -> impl Iterator<Item = (&str, &TensorFile)> {
        self.files.iter().map(|(n, f)| (n.as_str(), f))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<TensorRef<'_>> {
        let &(fi, ei) = self.map.get(name)?;
        let file = &self.files[fi].1;
        Some(Self::make_ref(fi, file, &file.entries()[ei]))
    }

    fn make_ref<'a>(fi: usize, file: &'a TensorFile, e: &'a TensorEntry) -> TensorRef<'a> {
        TensorRef {
            name: &e.name,
            dtype: e.dtype,
            shape: &e.shape,
            bytes: file.bytes(e),
            file: file.path(),
            file_index: fi,
        }
    }

    /// Every tensor, file by file, in the order of their bytes.
    pub fn iter(&self) -> impl Iterator<Item = TensorRef<'_>> {
        self.files.iter().enumerate().flat_map(|(fi, (_, file))| {
            file.entries()
                .iter()
                .map(move |e| Self::make_ref(fi, file, e))
        })
    }
}
