//! Tensor-parallel model directories: each rank's slices of the sharded layers in a file of its
//! own, the split recorded in the manifest, so a rank reads only its file plus the replicated
//! tensors (docs/FORMAT.md, "Tensor-parallel model directories").
//!
//! ```json
//! "tensor_parallel": {"size": 2,
//!   "files": ["model-tp-rank-0-of-2.safetensors", "model-tp-rank-1-of-2.safetensors"],
//!   "layers": {"model.layers.0.mlp.down_proj": {"split": "row", "bounds": [[0, 7168], [7168, 14336]]}}}
//! ```
//!
//! * `split: "column"` cuts `[N, K]` along N: rank r holds rows `bounds[r]` of `<name>.values`,
//!   `<name>.meta` and `<name>.bias` (if the epilogue adds one).
//! * `split: "row"` cuts along K on multiples of 8 (whole 2:4 groups and metadata bytes; the last
//!   bound may end at K): rank r holds columns `bounds[r]` of `values` (`K/2` halves) and `meta`
//!   (bytes `a/8 .. a/8 + ceil((b-a)/8)`); the bias stays whole in `model.safetensors` (it is
//!   added once, after the all-reduce).
//! * The bounds cover `[0, N)` or `[0, K)` contiguously, one non-empty range per rank, as
//!   [`shard_bounds`] cuts them (the rule `sparseflow.parallel.shard_bounds` follows too).
//! * Every other tensor, and the row-parallel biases, are in `model.safetensors` (replicated).
//!   The rank files hold exactly their slices, under the layers' tensor names.
//!
//! [`shard_model`] writes such a directory from an unsharded one (`sparseflow convert --tp N`);
//! [`crate::ModelDir::open`] validates it, rank files included.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;
use serde_json::Value;
use sparseflow_core::format::meta_bytes_per_row;
use sparseflow_core::EpilogueKind;

use crate::error::{ModelError, Result};
use crate::fsx::Root;
use crate::layout::{TensorRef, INDEX, WEIGHTS};
use crate::manifest::{st_dtype, LayerEntry, Manifest, MANIFEST};
use crate::model::ModelDir;
use crate::output::{Committed, Staging};
use crate::tensors::TensorFile;
use crate::write::{write_bytes, write_json, Planned, ShardWriter};

/// Row-parallel bounds are multiples of this: two 2:4 groups, one metadata byte.
pub const K_SPLIT_MULTIPLE: usize = 8;

/// How a layer is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Along N (output features): q/k/v, gate/up.
    Column,
    /// Along K (input features), partial products summed by an all-reduce: o, down.
    Row,
}

/// One sharded layer: its split and every rank's `[start, stop)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TpLayer {
    pub split: Split,
    pub bounds: Vec<[usize; 2]>,
}

/// The `tensor_parallel` record of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorParallel {
    pub size: usize,
    pub files: Vec<String>,
    pub layers: BTreeMap<String, TpLayer>,
}

/// `total` split over `world` ranks as evenly as whole blocks of `multiple` allow: every bound a
/// multiple of `multiple`, the last ending at `total`. An error when a rank would get nothing.
pub fn shard_bounds(
    total: usize,
    world: usize,
    multiple: usize,
) -> std::result::Result<Vec<[usize; 2]>, String> {
    if total == 0 || world == 0 || multiple == 0 {
        return Err(format!(
            "shard_bounds needs positive sizes, got total {total}, world {world}, multiple {multiple}"
        ));
    }
    let blocks = total.div_ceil(multiple);
    if blocks < world {
        return Err(format!(
            "cannot split {total} over {world} ranks in blocks of {multiple}: only {blocks} block(s), a rank would hold nothing"
        ));
    }
    let (base, extra) = (blocks / world, blocks % world);
    let mut start = 0;
    Ok((0..world)
        .map(|r| {
            let stop = total.min(start + (base + usize::from(r < extra)) * multiple);
            let b = [start, stop];
            start = stop;
            b
        })
        .collect())
}

/// The file of rank `rank` of `size`.
pub fn rank_file(rank: usize, size: usize) -> String {
    format!("model-tp-rank-{rank}-of-{size}.safetensors")
}

impl TensorParallel {
    /// Parses the record (syntax only; [`TensorParallel::check`] checks it against the layers).
    pub(crate) fn parse(v: &Value, path: &Path) -> Result<TensorParallel> {
        let err = |key: &str, problem: String| {
            ModelError::key(path, format!("tensor_parallel{key}"), problem)
        };
        let obj = v
            .as_object()
            .ok_or_else(|| err("", "expected an object".into()))?;
        if let Some(k) = obj
            .keys()
            .find(|k| !["size", "files", "layers"].contains(&k.as_str()))
        {
            return Err(err(
                &format!(".{k}"),
                "unknown key (known: size, files, layers)".into(),
            ));
        }
        let size = obj
            .get("size")
            .and_then(Value::as_u64)
            .filter(|&s| s >= 1)
            .ok_or_else(|| err(".size", "expected a whole number >= 1".into()))?
            as usize;
        let files: Vec<String> = obj
            .get("files")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(|f| f.as_str().map(String::from)).collect())
            .ok_or_else(|| err(".files", "expected an array of file names".into()))?;
        if files.len() != size {
            return Err(err(
                ".files",
                format!("{} file(s) for size {size}: one per rank", files.len()),
            ));
        }
        for f in &files {
            let plain = !f.is_empty()
                && !f.starts_with('.')
                && !f.contains(['/', '\\'])
                && f.ends_with(".safetensors");
            if !plain || f == WEIGHTS || f == INDEX {
                return Err(err(
                    ".files",
                    format!("`{f}` is not a plain .safetensors file name of its own"),
                ));
            }
        }
        if files.iter().collect::<BTreeSet<_>>().len() != size {
            return Err(err(".files", "names a file twice".into()));
        }
        let mut layers = BTreeMap::new();
        let entries = obj
            .get("layers")
            .and_then(Value::as_object)
            .ok_or_else(|| err(".layers", "expected an object".into()))?;
        for (name, entry) in entries {
            let key = format!(".layers.{name}");
            let split = match entry.get("split").and_then(Value::as_str) {
                Some("column") => Split::Column,
                Some("row") => Split::Row,
                _ => {
                    return Err(err(
                        &format!("{key}.split"),
                        "expected \"column\" or \"row\"".into(),
                    ))
                }
            };
            if let Some(k) = entry.as_object().and_then(|o| {
                o.keys()
                    .find(|k| !["split", "bounds"].contains(&k.as_str()))
            }) {
                return Err(err(
                    &format!("{key}.{k}"),
                    "unknown key (known: split, bounds)".into(),
                ));
            }
            let bounds: Vec<[usize; 2]> = entry
                .get("bounds")
                .and_then(Value::as_array)
                .and_then(|a| {
                    a.iter()
                        .map(|b| match b.as_array().map(|p| &p[..]) {
                            Some([s, e]) => Some([s.as_u64()? as usize, e.as_u64()? as usize]),
                            _ => None,
                        })
                        .collect()
                })
                .ok_or_else(|| {
                    err(
                        &format!("{key}.bounds"),
                        "expected [[start, stop], ...] of whole numbers".into(),
                    )
                })?;
            layers.insert(name.clone(), TpLayer { split, bounds });
        }
        Ok(TensorParallel {
            size,
            files,
            layers,
        })
    }

    /// Every sharded layer is a sparse layer of the manifest, and its bounds cover its split
    /// dimension contiguously, one non-empty range per rank, row bounds on multiples of 8.
    pub(crate) fn check(&self, layers: &BTreeMap<String, LayerEntry>, path: &Path) -> Result<()> {
        for (name, tp) in &self.layers {
            let key = format!("tensor_parallel.layers.{name}");
            let entry = layers.get(name).ok_or_else(|| {
                ModelError::key(path, &key, "is not a sparse layer of the manifest")
            })?;
            let [n, k] = entry.shape;
            let total = if tp.split == Split::Column { n } else { k };
            let bad = |problem: String| ModelError::key(path, format!("{key}.bounds"), problem);
            if tp.bounds.len() != self.size {
                return Err(bad(format!(
                    "{} range(s) for {} ranks",
                    tp.bounds.len(),
                    self.size
                )));
            }
            let mut expect = 0;
            for (r, &[a, b]) in tp.bounds.iter().enumerate() {
                if a != expect || b <= a || b > total {
                    return Err(bad(format!(
                        "rank {r}: [{a}, {b}) does not continue [0, {expect}) within [0, {total})"
                    )));
                }
                let aligned = |x: usize| x.is_multiple_of(K_SPLIT_MULTIPLE) || x == k;
                if tp.split == Split::Row && !(aligned(a) && aligned(b)) {
                    return Err(bad(format!(
                        "rank {r}: [{a}, {b}) of K = {k} is not on multiples of {K_SPLIT_MULTIPLE} (whole 2:4 groups and metadata bytes)"
                    )));
                }
                expect = b;
            }
            if expect != total {
                return Err(bad(format!("covers [0, {expect}), not [0, {total})")));
            }
        }
        Ok(())
    }

    /// `(tensor name, dtype, shape)` of what rank `rank` holds of every sharded layer.
    pub fn rank_tensors(
        &self,
        layers: &BTreeMap<String, LayerEntry>,
        rank: usize,
    ) -> Vec<(String, safetensors::tensor::Dtype, Vec<usize>)> {
        let mut out = Vec::new();
        for (name, tp) in &self.layers {
            let Some(entry) = layers.get(name) else {
                continue;
            };
            let [n, k] = entry.shape;
            let [a, b] = tp.bounds[rank];
            let dtype = st_dtype(entry.dtype);
            match tp.split {
                Split::Column => {
                    out.push((format!("{name}.values"), dtype, vec![b - a, k / 2]));
                    out.push((
                        format!("{name}.meta"),
                        safetensors::tensor::Dtype::U8,
                        vec![b - a, meta_bytes_per_row(k)],
                    ));
                    if uses_bias(entry) {
                        out.push((format!("{name}.bias"), dtype, vec![b - a]));
                    }
                }
                Split::Row => {
                    out.push((format!("{name}.values"), dtype, vec![n, (b - a) / 2]));
                    out.push((
                        format!("{name}.meta"),
                        safetensors::tensor::Dtype::U8,
                        vec![n, meta_bytes_per_row(b - a)],
                    ));
                }
            }
        }
        out
    }

    /// Names of the tensors held per rank (never in `model.safetensors`).
    pub fn sharded_tensor_names(&self, layers: &BTreeMap<String, LayerEntry>) -> BTreeSet<String> {
        self.rank_tensors(layers, 0)
            .into_iter()
            .map(|t| t.0)
            .collect()
    }

    /// Checks every rank file of a directory: it holds exactly its slices, with their shapes.
    pub(crate) fn check_files(
        &self,
        root: &Root,
        layers: &BTreeMap<String, LayerEntry>,
    ) -> Result<()> {
        for (rank, file) in self.files.iter().enumerate() {
            let shown = root.shown(file);
            if !root.exists(file) {
                return Err(ModelError::Layout {
                    path: root.shown(MANIFEST),
                    problem: format!("rank {rank}'s file `{file}` is missing"),
                });
            }
            let f = TensorFile::from_file(root.open(file)?, &shown)?;
            let want = self.rank_tensors(layers, rank);
            for (name, dtype, shape) in &want {
                match f.get(name) {
                    None => {
                        return Err(ModelError::tensor(
                            &shown,
                            name,
                            format!("missing: rank {rank} holds its slice of it"),
                        ))
                    }
                    Some(e) if e.dtype != *dtype || e.shape != *shape => {
                        return Err(ModelError::tensor(
                            &shown,
                            name,
                            format!(
                                "{} {:?}, rank {rank}'s slice is {dtype} {shape:?}",
                                e.dtype, e.shape
                            ),
                        ))
                    }
                    Some(_) => {}
                }
            }
            let names: BTreeSet<&str> = want.iter().map(|t| t.0.as_str()).collect();
            if let Some(extra) = f
                .entries()
                .iter()
                .find(|e| !names.contains(e.name.as_str()))
            {
                return Err(ModelError::tensor(
                    &shown,
                    &extra.name,
                    "is not a slice of a sharded layer (a rank file holds only those)",
                ));
            }
        }
        Ok(())
    }
}

fn uses_bias(entry: &LayerEntry) -> bool {
    EpilogueKind::from_name(&entry.epilogue).is_ok_and(|e| e.uses_bias())
}

/// Rank `[a, b)` of a layer's tensor `suffix` (`values`, `meta`, `bias`) from the unsharded bytes.
pub fn slice_tensor(
    entry: &LayerEntry,
    split: Split,
    [a, b]: [usize; 2],
    suffix: &str,
    bytes: &[u8],
) -> Vec<u8> {
    let [n, k] = entry.shape;
    let es = entry.dtype.size_bytes();
    // (row length in bytes, byte range within a row) of the tensor, per split.
    let (row, range) = match (suffix, split) {
        ("bias", _) => return bytes[a * es..b * es].to_vec(),
        ("values", Split::Column) => return bytes[a * k / 2 * es..b * k / 2 * es].to_vec(),
        ("meta", Split::Column) => {
            let mb = meta_bytes_per_row(k);
            return bytes[a * mb..b * mb].to_vec();
        }
        ("values", Split::Row) => (k / 2 * es, a / 2 * es..b / 2 * es),
        _ => {
            let first = a / K_SPLIT_MULTIPLE;
            (
                meta_bytes_per_row(k),
                first..first + meta_bytes_per_row(b - a),
            )
        }
    };
    let mut out = Vec::with_capacity(n * range.len());
    for r in 0..n {
        out.extend_from_slice(&bytes[r * row + range.start..r * row + range.end]);
    }
    out
}

/// The Megatron plan of a Llama-style model's sparse layers: `*.self_attn.{q,k,v}_proj` column-
/// and `*.self_attn.o_proj` row-parallel by whole heads (head size from `config.json`:
/// `head_dim`, or `hidden_size / num_attention_heads`), `*.mlp.{gate,up}_proj` column- and
/// `*.mlp.down_proj` row-parallel in blocks of 8 — the plan of `sparseflow.parallel.llama_plan`.
/// Every member of a sharded block must be a sparse layer.
pub fn llama_plan(
    manifest: &Manifest,
    config: Option<&Value>,
    size: usize,
) -> Result<BTreeMap<String, TpLayer>> {
    const BLOCKS: [(&str, [(&str, Split); 4]); 2] = [
        (
            "self_attn",
            [
                ("q_proj", Split::Column),
                ("k_proj", Split::Column),
                ("v_proj", Split::Column),
                ("o_proj", Split::Row),
            ],
        ),
        (
            "mlp",
            [
                ("gate_proj", Split::Column),
                ("up_proj", Split::Column),
                ("down_proj", Split::Row),
                ("", Split::Row),
            ],
        ),
    ];
    let usage = |m: String| ModelError::Usage(m);
    let head_dim = || -> Result<usize> {
        let c = config.ok_or_else(|| {
            usage("sharding attention by heads needs config.json (head_dim or hidden_size / num_attention_heads)".into())
        })?;
        let get = |k: &str| c.get(k).and_then(Value::as_u64).map(|v| v as usize);
        match (
            get("head_dim"),
            get("hidden_size"),
            get("num_attention_heads"),
        ) {
            (Some(d), ..) if d > 0 => Ok(d),
            (_, Some(h), Some(n)) if n > 0 && h.is_multiple_of(n) => Ok(h / n),
            _ => Err(usage(
                "config.json has neither head_dim nor hidden_size / num_attention_heads".into(),
            )),
        }
    };
    let mut plan = BTreeMap::new();
    for name in manifest.layers.keys() {
        for (block, members) in BLOCKS {
            let Some((prefix, member)) = name.rsplit_once('.') else {
                continue;
            };
            if !prefix.ends_with(&format!(".{block}")) && prefix != block {
                continue;
            }
            if !members.iter().any(|(m, _)| !m.is_empty() && *m == member) {
                continue;
            }
            if plan.contains_key(name) {
                continue;
            }
            let multiple = if block == "self_attn" {
                head_dim()?
            } else {
                K_SPLIT_MULTIPLE
            };
            for (m, split) in members.iter().filter(|(m, _)| !m.is_empty()) {
                let path = format!("{prefix}.{m}");
                let entry = manifest.layers.get(&path).ok_or_else(|| {
                    usage(format!(
                        "`{path}` is not a sparse layer, but `{name}` is: tensor parallelism shards a whole block, so every member must be 2:4"
                    ))
                })?;
                let [n, k] = entry.shape;
                let total = if *split == Split::Column { n } else { k };
                if block == "self_attn"
                    && (!total.is_multiple_of(multiple) || !(total / multiple).is_multiple_of(size))
                {
                    return Err(usage(format!(
                        "`{path}`: {total} = heads of {multiple} do not split over {size} ranks (whole heads per rank)"
                    )));
                }
                let bounds = shard_bounds(total, size, multiple)
                    .map_err(|e| usage(format!("`{path}`: {e}")))?;
                plan.insert(
                    path,
                    TpLayer {
                        split: *split,
                        bounds,
                    },
                );
            }
        }
    }
    Ok(plan)
}

/// Writes the tensor-parallel directory `dest` of the unsharded SparseFlow model `src` over
/// `size` ranks, by [`llama_plan`]: `model.safetensors` with the replicated tensors, one file per
/// rank with its slices, the manifest with the `tensor_parallel` record, and the other files of
/// `src` (config, tokenizer) copied. `force` replaces an existing SparseFlow model only.
pub fn shard_model(src: &Path, dest: &Path, size: usize, force: bool) -> Result<Committed> {
    let model = ModelDir::open(src)?;
    if model.manifest().tensor_parallel.is_some() {
        return Err(ModelError::Usage(format!(
            "{} is already tensor-parallel; shard the unsharded model",
            src.display()
        )));
    }
    if size == 0 {
        return Err(ModelError::Usage("--tp must be at least 1".into()));
    }
    let root = Root::new(src)?;
    let config = if root.exists("config.json") {
        Some(root.read_json("config.json")?)
    } else {
        None
    };
    let layers = llama_plan(model.manifest(), config.as_ref(), size)?;
    if layers.is_empty() {
        return Err(ModelError::Usage(format!(
            "{}: no Llama-style sparse layers (*.self_attn.q/k/v/o_proj, *.mlp.gate/up/down_proj) to shard",
            src.display()
        )));
    }
    let tp = TensorParallel {
        size,
        files: (0..size).map(|r| rank_file(r, size)).collect(),
        layers,
    };
    let mut manifest = model.manifest().clone();
    tp.check(&manifest.layers, &dest.join(MANIFEST))?;
    let sharded = tp.sharded_tensor_names(&manifest.layers);
    let staging = Staging::begin(dest, force)?;
    let dir = staging.dir().to_path_buf();
    let meta = BTreeMap::from([
        ("format".to_string(), "pt".to_string()),
        (
            "sparseflow".to_string(),
            manifest.format_version.to_string(),
        ),
    ]);
    let replicated: Vec<TensorRef<'_>> = model
        .tensors()
        .iter()
        .filter(|t| !sharded.contains(t.name))
        .collect();
    let planned = replicated
        .iter()
        .map(|t| Planned::new(t.name, t.dtype, t.shape.to_vec()))
        .collect();
    let mut w = ShardWriter::create(&dir.join(WEIGHTS), planned, &meta)?;
    for t in &replicated {
        w.write(t.bytes)?;
    }
    w.finish()?;
    for (rank, file) in tp.files.iter().enumerate() {
        let tensors = tp.rank_tensors(&manifest.layers, rank);
        let planned = tensors
            .iter()
            .map(|(n, d, s)| Planned::new(n.clone(), *d, s.clone()))
            .collect();
        let mut w = ShardWriter::create(&dir.join(file), planned, &meta)?;
        for (name, ..) in &tensors {
            let (layer, suffix) = name.rsplit_once('.').unwrap_or((name, ""));
            let (entry, split) = (&manifest.layers[layer], tp.layers[layer].split);
            let source = model.tensor(name).ok_or_else(|| {
                ModelError::Usage(format!("{}: tensor `{name}` is missing", src.display()))
            })?;
            w.write(&slice_tensor(
                entry,
                split,
                tp.layers[layer].bounds[rank],
                suffix,
                source.bytes,
            ))?;
        }
        w.finish()?;
    }
    manifest.tensor_parallel = Some(tp);
    write_json(&dir.join(MANIFEST), &manifest.to_value())?;
    let tensor_files: BTreeSet<&str> = model.tensors().files().map(|(n, _)| n).collect();
    let entries = std::fs::read_dir(src).map_err(ModelError::io(src))?;
    for entry in entries {
        let entry = entry.map_err(ModelError::io(src))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if !is_file
            || name.starts_with('.')
            || name == MANIFEST
            || name == INDEX
            || tensor_files.contains(name.as_str())
        {
            continue;
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut root.open(&name)?, &mut bytes)
            .map_err(ModelError::io(root.shown(&name)))?;
        write_bytes(&dir.join(&name), &bytes)?;
    }
    staging.commit()
}
