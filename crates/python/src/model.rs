//! Model files for `sf.save` / `sf.load`: the Python package writes and reads through
//! `sparseflow-model`, the same reader and writer as the CLI and the C ABI.

use std::path::Path;

use pyo3::exceptions::{PyFileExistsError, PyFileNotFoundError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes};
use sparseflow_model::{save_model, Dtype, Manifest, ModelDir, ModelError, TensorData};

use crate::raw::slice;

/// `ModelError` → the Python exception a user expects.
fn model_err(e: ModelError) -> PyErr {
    let msg = e.to_string();
    match e {
        ModelError::Exists { .. } | ModelError::NotOurs { .. } => PyFileExistsError::new_err(msg),
        ModelError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(msg)
        }
        _ => PyValueError::new_err(msg),
    }
}

/// The safetensors dtype of a torch dtype name.
fn st_dtype(name: &str) -> PyResult<Dtype> {
    Ok(match name.strip_prefix("torch.").unwrap_or(name) {
        "float16" => Dtype::F16,
        "bfloat16" => Dtype::BF16,
        "float32" => Dtype::F32,
        "float64" => Dtype::F64,
        "uint8" => Dtype::U8,
        "int8" => Dtype::I8,
        "int16" => Dtype::I16,
        "int32" => Dtype::I32,
        "int64" => Dtype::I64,
        "bool" => Dtype::BOOL,
        other => {
            return Err(PyValueError::new_err(format!(
                "tensor dtype {other} cannot be saved"
            )))
        }
    })
}

fn torch_dtype(d: Dtype) -> PyResult<&'static str> {
    Ok(match d {
        Dtype::F16 => "float16",
        Dtype::BF16 => "bfloat16",
        Dtype::F32 => "float32",
        Dtype::F64 => "float64",
        Dtype::U8 => "uint8",
        Dtype::I8 => "int8",
        Dtype::I16 => "int16",
        Dtype::I32 => "int32",
        Dtype::I64 => "int64",
        Dtype::BOOL => "bool",
        other => {
            return Err(PyValueError::new_err(format!(
                "tensor dtype {other} is not supported by sf.load"
            )))
        }
    })
}

/// One tensor from Python: name, torch dtype name, shape, data address, byte length.
type RawTensor = (String, String, Vec<usize>, usize, usize);

/// Writes a model directory. `tensors` are contiguous CPU tensors alive during the call;
/// `files` extra files (`config.json`). Returns the final (absolute) path.
#[pyfunction]
pub fn model_save(
    py: Python<'_>,
    path: &str,
    manifest_json: &str,
    tensors: Vec<RawTensor>,
    files: Vec<(String, Vec<u8>)>,
    force: bool,
) -> PyResult<String> {
    let manifest =
        Manifest::from_json(manifest_json, Path::new("sparseflow.json")).map_err(model_err)?;
    let dtypes = tensors
        .iter()
        .map(|t| st_dtype(&t.1))
        .collect::<PyResult<Vec<_>>>()?;
    py.detach(|| {
        let mut data = Vec::with_capacity(tensors.len());
        for ((name, _, shape, ptr, len), dtype) in tensors.iter().zip(&dtypes) {
            let bytes: &[u8] = if *len == 0 {
                &[]
            } else {
                // SAFETY: the Python layer passes contiguous CPU tensors of `len` bytes that
                // stay alive (held by the caller's list) and unmodified during this call.
                unsafe { slice::<u8>(*ptr, *len, name) }?
            };
            data.push(TensorData {
                name,
                dtype: *dtype,
                shape,
                bytes,
            });
        }
        let files: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        let done =
            save_model(Path::new(path), force, &manifest, &data, &files).map_err(model_err)?;
        Ok(done.path.display().to_string())
    })
}

/// Writes the tensor-parallel directory `dest` of the unsharded model `src` over `size` ranks
/// (`sparseflow_model::tp::shard_model`, as `sparseflow convert --tp`). Returns the final path.
#[pyfunction]
pub fn model_shard_tp(
    py: Python<'_>,
    src: &str,
    dest: &str,
    size: usize,
    force: bool,
) -> PyResult<String> {
    py.detach(|| {
        let done = sparseflow_model::tp::shard_model(Path::new(src), Path::new(dest), size, force)
            .map_err(model_err)?;
        Ok(done.path.display().to_string())
    })
}

/// Reads and validates a model directory: `(manifest JSON, [(name, dtype, shape, bytearray)],
/// config.json bytes or None)`, tensors in file order.
#[pyfunction]
#[allow(clippy::type_complexity)]
pub fn model_load<'py>(
    py: Python<'py>,
    path: &str,
) -> PyResult<(
    String,
    Vec<(String, &'static str, Vec<usize>, Bound<'py, PyByteArray>)>,
    Option<Bound<'py, PyBytes>>,
)> {
    let model = py
        .detach(|| ModelDir::open(Path::new(path)))
        .map_err(model_err)?;
    let manifest = serde_json::to_string(&model.manifest().to_value())
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let mut out = Vec::with_capacity(model.tensors().len());
    for t in model.tensors().iter() {
        let array = PyByteArray::new(py, t.bytes);
        out.push((
            t.name.to_string(),
            torch_dtype(t.dtype)?,
            t.shape.to_vec(),
            array,
        ));
    }
    let root = sparseflow_model::fsx::Root::new(Path::new(path)).map_err(model_err)?;
    let config = if root.exists("config.json") {
        let value = root.read_json("config.json").map_err(model_err)?;
        Some(PyBytes::new(py, value.to_string().as_bytes()))
    } else {
        None
    };
    Ok((manifest, out, config))
}
