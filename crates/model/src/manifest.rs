//! `sparseflow.json`: the manifest of a SparseFlow model directory, parsed and validated in one
//! place. Unknown keys and contradictions are errors that name the key.
//!
//! ```json
//! {"format": "sparseflow", "format_version": 1, "sparseflow_version": "0.1.0",
//!  "layers": {"model.layers.0.mlp.up_proj": {"shape": [N, K], "dtype": "float16",
//!             "method": "magnitude", "epilogue": "none", "diff": {...},
//!             "fused_activation": null}},
//!  "aliases": {"lm_head.weight": "model.embed_tokens.weight"}}
//! ```
//!
//! * `layers`: every sparsified linear `<name>`, stored as `<name>.values [N, K/2]` (the
//!   layer's dtype) and `<name>.meta [N, ceil(K/8)]` (uint8), never `<name>.weight`.
//! * `method`: how the layer became 2:4 (`magnitude`, `already-2:4`, `sparse-24-bitmask`, or a
//!   pruning method added later); `epilogue`: a name of the epilogue table; `diff`: the pruning
//!   report (numbers); `fused_activation`: the module path of an activation fused into this
//!   layer's epilogue (then the epilogue must contain that activation).
//! * `aliases`: tensors stored once under another name (tied weights). An alias may not name a
//!   tensor the file holds, and its target must be stored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use safetensors::tensor::Dtype;
use serde::Serialize;
use serde_json::{Map, Value};
use sparseflow_core::format::meta_bytes_per_row;
use sparseflow_core::{DType, ElementwiseOp, EpilogueKind};

use crate::error::{ModelError, Result};
use crate::fsx::Root;
use crate::tp::TensorParallel;

pub const FORMAT: &str = "sparseflow";
/// The major format version this library writes and reads.
pub const FORMAT_VERSION: u64 = 1;
pub const MANIFEST: &str = "sparseflow.json";

/// A validated manifest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sparseflow_version: Option<String>,
    pub layers: BTreeMap<String, LayerEntry>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub aliases: BTreeMap<String, String>,
    /// Present in a tensor-parallel directory: which layers are held per rank, how they are
    /// cut, and the rank files ([`crate::tp`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tensor_parallel: Option<TensorParallel>,
}

/// One sparsified linear layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerEntry {
    /// `[N, K]` = `[out_features, in_features]`.
    pub shape: [usize; 2],
    #[serde(serialize_with = "ser_dtype")]
    pub dtype: DType,
    pub method: String,
    pub epilogue: String,
    pub diff: BTreeMap<String, Value>,
    pub fused_activation: Option<String>,
}

fn ser_dtype<S: serde::Serializer>(d: &DType, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(d.torch_name())
}

/// The safetensors dtype of a SparseFlow dtype.
pub fn st_dtype(d: DType) -> Dtype {
    match d {
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
    }
}

/// The SparseFlow dtype of a safetensors dtype, if it has one.
pub fn sf_dtype(d: Dtype) -> Option<DType> {
    match d {
        Dtype::F32 => Some(DType::F32),
        Dtype::F16 => Some(DType::F16),
        Dtype::BF16 => Some(DType::BF16),
        _ => None,
    }
}

impl LayerEntry {
    /// The `(name, dtype, shape)` of the two tensors this layer is stored as.
    pub fn tensors(&self, name: &str) -> [(String, Dtype, Vec<usize>); 2] {
        let [n, k] = self.shape;
        [
            (
                format!("{name}.values"),
                st_dtype(self.dtype),
                vec![n, k / 2],
            ),
            (
                format!("{name}.meta"),
                Dtype::U8,
                vec![n, meta_bytes_per_row(k)],
            ),
        ]
    }
}

impl Manifest {
    /// An empty manifest of the current version.
    pub fn new() -> Manifest {
        Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            sparseflow_version: Some(env!("CARGO_PKG_VERSION").into()),
            layers: BTreeMap::new(),
            aliases: BTreeMap::new(),
            tensor_parallel: None,
        }
    }

    /// Reads `sparseflow.json` of a directory (confined, regular file, size-limited).
    pub fn read(root: &Root) -> Result<Manifest> {
        let value = root.read_json(MANIFEST)?;
        Manifest::from_value(&value, &root.shown(MANIFEST))
    }

    /// [`Manifest::read`] for a directory path.
    pub fn read_dir(dir: &Path) -> Result<Manifest> {
        Manifest::read(&Root::new(dir)?)
    }

    /// Parses JSON text (`path` names it in errors).
    pub fn from_json(text: &str, path: &Path) -> Result<Manifest> {
        let value: Value = serde_json::from_str(text).map_err(|e| ModelError::Json {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        Manifest::from_value(&value, path)
    }

    /// Validates a parsed manifest: the version first, then every key.
    pub fn from_value(v: &Value, path: &Path) -> Result<Manifest> {
        let p = Parser { path };
        let top = p.object(v, "(top level)")?;
        match top.get("format") {
            Some(Value::String(f)) if f == FORMAT => {}
            Some(other) => {
                return Err(p.err(
                    "format",
                    format!("is {other}, expected \"{FORMAT}\" (not a SparseFlow manifest)"),
                ))
            }
            None => return Err(p.err("format", "is missing (not a SparseFlow manifest)")),
        }
        let version = match top.get("format_version") {
            Some(Value::Number(n)) => n
                .as_u64()
                .ok_or_else(|| p.err("format_version", format!("{n} is not a whole number")))?,
            Some(other) => {
                return Err(p.err("format_version", format!("{other} is not a whole number")))
            }
            None => return Err(p.err("format_version", "is missing")),
        };
        if version != FORMAT_VERSION {
            return Err(ModelError::Version {
                path: path.to_path_buf(),
                found: version.to_string(),
                supported: FORMAT_VERSION,
            });
        }
        p.known_keys(
            top,
            "",
            &[
                "format",
                "format_version",
                "sparseflow_version",
                "layers",
                "aliases",
                "tensor_parallel",
            ],
        )?;
        let sparseflow_version = match top.get("sparseflow_version") {
            None | Some(Value::Null) => None,
            Some(v) => Some(p.string(v, "sparseflow_version")?.to_string()),
        };
        let mut layers = BTreeMap::new();
        if let Some(l) = top.get("layers") {
            for (name, entry) in p.object(l, "layers")? {
                let key = format!("layers.{name}");
                check_module_path(name).map_err(|e| p.err(&key, e))?;
                layers.insert(name.clone(), p.layer(entry, &key)?);
            }
        }
        let mut aliases = BTreeMap::new();
        if let Some(a) = top.get("aliases") {
            for (alias, target) in p.object(a, "aliases")? {
                let key = format!("aliases.{alias}");
                let target = p.string(target, &key)?;
                check_module_path(alias).map_err(|e| p.err(&key, e))?;
                check_module_path(target).map_err(|e| p.err(&key, e))?;
                if alias == target {
                    return Err(p.err(&key, "names itself"));
                }
                aliases.insert(alias.clone(), target.to_string());
            }
        }
        let tensor_parallel = match top.get("tensor_parallel") {
            None | Some(Value::Null) => None,
            Some(v) => Some(TensorParallel::parse(v, path)?),
        };
        let m = Manifest {
            format: FORMAT.into(),
            format_version: version,
            sparseflow_version,
            layers,
            aliases,
            tensor_parallel,
        };
        m.check_conflicts(path)?;
        if let Some(tp) = &m.tensor_parallel {
            tp.check(&m.layers, path)?;
        }
        Ok(m)
    }

    /// Contradictions between entries.
    fn check_conflicts(&self, path: &Path) -> Result<()> {
        let err = |key: String, problem: String| ModelError::key(path, key, problem);
        let mut fused: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, layer) in &self.layers {
            let Some(act) = &layer.fused_activation else {
                continue;
            };
            let key = format!("layers.{name}.fused_activation");
            if self.layers.contains_key(act) {
                return Err(err(
                    key,
                    format!("`{act}` is a sparse layer, not an activation"),
                ));
            }
            if let Some(other) = fused.insert(act, name) {
                return Err(err(
                    key,
                    format!("`{act}` is already fused into layer `{other}`"),
                ));
            }
        }
        for (alias, target) in &self.aliases {
            let key = format!("aliases.{alias}");
            if self.aliases.contains_key(target) {
                return Err(err(
                    key,
                    format!("`{target}` is itself an alias (no chains)"),
                ));
            }
            for name in self.layers.keys() {
                if alias
                    .strip_prefix(name.as_str())
                    .is_some_and(|rest| matches!(rest, ".values" | ".meta" | ".weight"))
                {
                    return Err(err(
                        key,
                        format!("overwrites a tensor of sparse layer `{name}`"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks the manifest against the tensors a model holds: every layer's `values`/`meta`
    /// present with the right dtype and shape, no `<layer>.weight`, aliases pointing at stored
    /// tensors and never shadowing one. In a tensor-parallel directory `lookup` sees
    /// `model.safetensors`, which must not hold the per-rank tensors (the rank files are
    /// checked by [`TensorParallel`]).
    pub fn check_tensors<'a>(
        &self,
        path: &Path,
        lookup: impl Fn(&str) -> Option<(Dtype, &'a [usize])>,
    ) -> Result<()> {
        if let Some(tp) = &self.tensor_parallel {
            for tensor in tp.sharded_tensor_names(&self.layers) {
                if lookup(&tensor).is_some() {
                    return Err(ModelError::key(
                        path,
                        "tensor_parallel",
                        format!("tensor `{tensor}` is held per rank, but model.safetensors also holds it"),
                    ));
                }
            }
        }
        for (name, layer) in &self.layers {
            if self
                .tensor_parallel
                .as_ref()
                .is_some_and(|tp| tp.layers.contains_key(name))
            {
                continue;
            }
            for (tensor, dtype, shape) in layer.tensors(name) {
                match lookup(&tensor) {
                    None => {
                        return Err(ModelError::key(
                            path,
                            format!("layers.{name}"),
                            format!("tensor `{tensor}` is missing from the model files"),
                        ))
                    }
                    Some((d, s)) if d != dtype || s != shape.as_slice() => {
                        return Err(ModelError::key(
                            path,
                            format!("layers.{name}"),
                            format!(
                                "tensor `{tensor}` is {d} {s:?} in the model files, the manifest's shape and dtype need {dtype} {shape:?}"
                            ),
                        ))
                    }
                    Some(_) => {}
                }
            }
            let weight = format!("{name}.weight");
            if lookup(&weight).is_some() {
                return Err(ModelError::key(
                    path,
                    format!("layers.{name}"),
                    format!("the model files also hold a dense `{weight}`"),
                ));
            }
        }
        for (alias, target) in &self.aliases {
            let key = format!("aliases.{alias}");
            if lookup(alias).is_some() {
                return Err(ModelError::key(
                    path,
                    key,
                    "names a tensor the model files hold; an alias may not overwrite it",
                ));
            }
            if lookup(target).is_none() {
                return Err(ModelError::key(
                    path,
                    key,
                    format!("target `{target}` is not in the model files"),
                ));
            }
        }
        Ok(())
    }

    /// The manifest as pretty JSON.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest::new()
    }
}

/// A dotted module path of identifier-like segments (`model.layers.0.mlp.up_proj`).
fn check_module_path(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.split('.').all(|seg| {
            !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a module path (dot-separated names of letters, digits and _)"
        ))
    }
}

struct Parser<'a> {
    path: &'a Path,
}

impl Parser<'_> {
    fn err(&self, key: &str, problem: impl Into<String>) -> ModelError {
        ModelError::key(PathBuf::from(self.path), key, problem)
    }

    fn object<'v>(&self, v: &'v Value, key: &str) -> Result<&'v Map<String, Value>> {
        v.as_object()
            .ok_or_else(|| self.err(key, format!("expected an object, found {}", kind_of(v))))
    }

    fn string<'v>(&self, v: &'v Value, key: &str) -> Result<&'v str> {
        v.as_str()
            .ok_or_else(|| self.err(key, format!("expected a string, found {}", kind_of(v))))
    }

    fn known_keys(&self, obj: &Map<String, Value>, prefix: &str, known: &[&str]) -> Result<()> {
        match obj.keys().find(|k| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) => Err(self.err(
                &format!("{prefix}{k}"),
                format!("unknown key (known: {})", known.join(", ")),
            )),
        }
    }

    fn layer(&self, v: &Value, key: &str) -> Result<LayerEntry> {
        let obj = self.object(v, key)?;
        let prefix = format!("{key}.");
        self.known_keys(
            obj,
            &prefix,
            &[
                "shape",
                "dtype",
                "method",
                "epilogue",
                "diff",
                "fused_activation",
            ],
        )?;
        let field = |name: &str| {
            obj.get(name)
                .ok_or_else(|| self.err(&format!("{prefix}{name}"), "is missing"))
        };
        let shape_key = format!("{prefix}shape");
        let shape: Vec<usize> = field("shape")?
            .as_array()
            .map(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
            .unwrap_or(None)
            .ok_or_else(|| self.err(&shape_key, "expected [N, K] of whole numbers"))?;
        let [n, k] = shape[..] else {
            return Err(self.err(&shape_key, format!("expected [N, K], found {shape:?}")));
        };
        if n == 0 || k == 0 || !k.is_multiple_of(4) {
            return Err(self.err(
                &shape_key,
                format!("[{n}, {k}]: N and K must be positive and K a multiple of 4"),
            ));
        }
        let dtype_key = format!("{prefix}dtype");
        let dtype_name = self.string(field("dtype")?, &dtype_key)?;
        let dtype = DType::ALL
            .into_iter()
            .find(|d| d.torch_name() == dtype_name)
            .ok_or_else(|| {
                self.err(
                    &dtype_key,
                    format!("`{dtype_name}` is not float16, bfloat16 or float32"),
                )
            })?;
        let method_key = format!("{prefix}method");
        let method = self.string(field("method")?, &method_key)?;
        if method.is_empty()
            || !method
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b))
        {
            return Err(self.err(&method_key, format!("`{method}` is not a method name")));
        }
        let epi_key = format!("{prefix}epilogue");
        let epilogue = self.string(field("epilogue")?, &epi_key)?;
        let kind =
            EpilogueKind::from_name(epilogue).map_err(|e| self.err(&epi_key, e.to_string()))?;
        let diff_key = format!("{prefix}diff");
        let mut diff = BTreeMap::new();
        if let Some(d) = obj.get("diff") {
            for (name, value) in self.object(d, &diff_key)? {
                if !(value.is_number() || value.is_null()) {
                    return Err(self.err(
                        &format!("{diff_key}.{name}"),
                        format!("expected a number, found {}", kind_of(value)),
                    ));
                }
                diff.insert(name.clone(), value.clone());
            }
        }
        let fused_key = format!("{prefix}fused_activation");
        let fused_activation = match obj.get("fused_activation") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let s = self.string(v, &fused_key)?;
                check_module_path(s).map_err(|e| self.err(&fused_key, e))?;
                if !kind
                    .spec()
                    .ops
                    .iter()
                    .any(|op| *op != ElementwiseOp::AddBias)
                {
                    return Err(self.err(
                        &fused_key,
                        format!("names `{s}` but epilogue `{epilogue}` applies no activation"),
                    ));
                }
                Some(s.to_string())
            }
        };
        Ok(LayerEntry {
            shape: [n, k],
            dtype,
            method: method.to_string(),
            epilogue: epilogue.to_string(),
            diff,
            fused_activation,
        })
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Names of the tensors a set of layers stores (for callers checking collisions).
pub fn layer_tensor_names(layers: &BTreeMap<String, LayerEntry>) -> BTreeSet<String> {
    layers
        .iter()
        .flat_map(|(n, l)| l.tensors(n).map(|t| t.0))
        .collect()
}
