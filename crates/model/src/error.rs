//! Errors of the model-file layer. Every message names the file (and the tensor or manifest
//! key) it is about, and says what to do where that helps.

use std::path::PathBuf;

use thiserror::Error;

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{path}: {kind}, not a regular file; model files must be plain files")]
    NotRegular { path: PathBuf, kind: &'static str },

    #[error("{path}: `{name}` is outside the model directory ({why}); every file a model names must live inside it")]
    OutsideRoot {
        path: PathBuf,
        name: String,
        why: &'static str,
    },

    #[error("{path}: {size} bytes is more than the {limit} bytes a JSON file of a model may have")]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },

    #[error("{path}: invalid JSON: {detail}")]
    Json { path: PathBuf, detail: String },

    #[error("{path}: key `{key}`: {problem}")]
    Key {
        path: PathBuf,
        key: String,
        problem: String,
    },

    #[error("{path}: format_version {found} is not supported; this sparseflow reads format version {supported} (a newer file needs a newer sparseflow)")]
    Version {
        path: PathBuf,
        found: String,
        supported: u64,
    },

    #[error("{path}: {detail}")]
    Safetensors { path: PathBuf, detail: String },

    #[error("{path}: tensor `{tensor}`: {problem}")]
    Tensor {
        path: PathBuf,
        tensor: String,
        problem: String,
    },

    #[error("{path}: {problem}")]
    Layout { path: PathBuf, problem: String },

    #[error("{path} already exists; pass --force (CLI) or force=True (Python) to replace it")]
    Exists { path: PathBuf },

    #[error("{path} is not a SparseFlow model directory ({why}); refusing to replace it, even with force")]
    NotOurs { path: PathBuf, why: String },

    #[error("{what}: {source}")]
    Core {
        what: String,
        source: sparseflow_core::CoreError,
    },

    #[error("{0}")]
    Usage(String),
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ModelError {
        let path = path.into();
        move |source| ModelError::Io { path, source }
    }

    pub(crate) fn key(
        path: impl Into<PathBuf>,
        key: impl Into<String>,
        problem: impl Into<String>,
    ) -> ModelError {
        ModelError::Key {
            path: path.into(),
            key: key.into(),
            problem: problem.into(),
        }
    }

    pub(crate) fn tensor(
        path: impl Into<PathBuf>,
        tensor: impl Into<String>,
        problem: impl Into<String>,
    ) -> ModelError {
        ModelError::Tensor {
            path: path.into(),
            tensor: tensor.into(),
            problem: problem.into(),
        }
    }
}
