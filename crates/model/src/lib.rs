//! # sparseflow-model
//!
//! SparseFlow's model files, defined once: the CLI (`convert`, `audit`), the Python package
//! (`sf.save` / `sf.load` through `sparseflow._C`) and the C ABI all read and write through
//! this crate.
//!
//! A model is a directory in the Hugging Face layout:
//!
//! * `model.safetensors`, or shards plus `model.safetensors.index.json`. A sparsified linear
//!   `<name>` is stored as `<name>.values [N, K/2]` and `<name>.meta [N, ceil(K/8)]` (uint8) in
//!   the 2:4 format of `sparseflow-core`, plus `<name>.bias` if it has one; `<name>.weight` is
//!   absent. Every other tensor keeps its own name.
//! * `sparseflow.json`, the manifest ([`manifest`]): format, version, one entry per sparse
//!   layer, aliases of tied tensors.
//! * `config.json`, tokenizer and generation files when the model has them.
//!
//! Modules: [`fsx`] (confined, regular-file-only reads), [`tensors`] (one safetensors file,
//! memory-mapped), [`layout`] (the files of a directory, shards and index), [`manifest`],
//! [`model`] (a directory opened for reading), [`write`] (streaming safetensors writer) and
//! [`output`] (the staging directory and its atomic commit), [`save`] (a whole in-memory model), [`tp`]
//! (tensor-parallel directories: per-rank files and the split in the manifest), and [`convert`], the
//! engine of `sparseflow convert`.

pub mod convert;
pub mod error;
pub mod fsx;
pub mod layout;
pub mod manifest;
pub mod model;
pub mod output;
pub mod save;
pub mod tensors;
#[doc(hidden)]
pub mod testing;
pub mod tp;
pub mod write;

pub use error::{ModelError, Result};
pub use layout::{TensorRef, TensorSet, INDEX, WEIGHTS};
pub use manifest::{LayerEntry, Manifest, FORMAT, FORMAT_VERSION, MANIFEST};
pub use model::ModelDir;
pub use output::{Committed, Staging};
pub use safetensors::tensor::Dtype;
pub use save::{save_model, TensorData};
pub use write::{Planned, ShardWriter};
