//! `convert`: a Hugging Face checkpoint (directory or one `.safetensors` file) → a SparseFlow
//! model directory (or a plain dense one), streaming tensor by tensor.
//!
//! Two passes over the memory-mapped input: a scan decides every tensor (candidate weights are
//! checked for 2:4: already 2:4, almost, or dense), so each output shard's header can be
//! written first; then each tensor is converted in row chunks ([`process`]) and streamed into
//! its shard. Output shards mirror the input's. The output goes through a [`Staging`]
//! directory and appears complete or not at all. See docs/TOOLS.md for the user's view.

mod calibration;
pub mod ct;
pub mod process;
pub mod report;
mod rss;
pub mod select;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use half::{bf16, f16};
use safetensors::tensor::Dtype;
use serde_json::Value;
use sparseflow_core::format::meta_bytes_per_row;
use sparseflow_core::{DType, DiffReport, PruneMethod};

use crate::error::{ModelError, Result};
use crate::fsx::Root;
use crate::layout::{TensorRef, TensorSet, INDEX, WEIGHTS};
use crate::manifest::{sf_dtype, st_dtype, LayerEntry, Manifest, MANIFEST};
use crate::output::Staging;
use crate::tensors::{byte_len, elements};
use crate::write::{index_json, write_json, Planned, ShardWriter};
pub use calibration::CalibrationFile;
use ct::Compression;
use process::{count_violations, dense_tensor, sparse_layer, OutElem, Pruner, Source};
pub use report::{Report, Row, Status, Totals};
pub use rss::rss_anon;
use select::Selector;

/// A weight with at most this fraction of groups violating 2:4 is "almost 2:4": reported,
/// kept dense unless `--prune`.
pub const ALMOST_FRACTION: f64 = 0.01;

/// Files copied unchanged beside the weights when present.
pub const AUX_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "generation_config.json",
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
];

/// How weights are pruned: by magnitude, or by one of `sparseflow_core::prune`'s
/// activation-aware methods from a calibration file ([`Options::calibration`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// Keep the 2 largest |w| of every group of 4.
    #[default]
    Magnitude,
    /// An activation-aware method (`wanda`, `sparsegpt`, `sparsegpt-refine`).
    Calibrated(PruneMethod),
}

impl Method {
    pub const ALL: [Method; 4] = [
        Method::Magnitude,
        Method::Calibrated(PruneMethod::Wanda),
        Method::Calibrated(PruneMethod::SparseGpt),
        Method::Calibrated(PruneMethod::SparseGptRefine),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::Magnitude => "magnitude",
            Method::Calibrated(m) => m.name(),
        }
    }

    /// The core method when it reads calibration activations.
    pub fn calibrated(self) -> Option<PruneMethod> {
        match self {
            Method::Calibrated(m) if m.needs_calibration() => Some(m),
            _ => None,
        }
    }
}

/// What `convert` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// SparseFlow: `values` + `meta` per sparse layer and `sparseflow.json`.
    #[default]
    Sparseflow,
    /// Plain Hugging Face safetensors, sparse layers stored dense (pruned).
    Dense,
    /// compressed-tensors `sparse-24-bitmask` (`.compressed`, `.bitmask`, `.shape` per sparse
    /// layer and a `quantization_config.sparsity_config`), for tools that read that format.
    Bitmask24,
}

impl OutputFormat {
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Sparseflow => "sparseflow",
            OutputFormat::Dense => "dense",
            OutputFormat::Bitmask24 => "sparse-24-bitmask",
        }
    }
}

/// Options of a conversion.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub method: Method,
    pub format: OutputFormat,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// Output dtype for fp32 / mixed checkpoints (fp16 and bf16 ones keep theirs).
    pub dtype: Option<DType>,
    /// Prune almost-2:4 weights instead of keeping them dense.
    pub prune: bool,
    /// The activations calibration file an activation-aware [`Method`] prunes from.
    pub calibration: Option<PathBuf>,
    pub force: bool,
}

/// Progress of a conversion, in input bytes.
pub trait Progress {
    fn phase(&mut self, name: &str, total_bytes: u64);
    fn advance(&mut self, bytes: u64);
}

/// No progress display.
pub struct Silent;

impl Progress for Silent {
    fn phase(&mut self, _: &str, _: u64) {}
    fn advance(&mut self, _: u64) {}
}

/// The decision for one input tensor (or one bitmask layer).
enum Item<'a> {
    Sparse {
        layer: String,
        src: Source<'a>,
        inputs: Vec<TensorRef<'a>>,
        n: usize,
        k: usize,
        status: Status,
        reason: String,
        violations: Option<u64>,
    },
    Dense {
        t: TensorRef<'a>,
        status: Status,
        reason: String,
        violations: Option<u64>,
    },
}

fn usage(msg: impl Into<String>) -> ModelError {
    ModelError::Usage(msg.into())
}

/// Canonical form of a path that may not exist yet.
fn canonical(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) => canonical(if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        })
        .join(name),
        _ => p.to_path_buf(),
    }
}

/// Runs a conversion; see the module docs.
pub fn convert(
    input: &Path,
    output: &Path,
    opts: &Options,
    progress: &mut dyn Progress,
) -> Result<Report> {
    let t0 = Instant::now();
    let sampler = rss::RssSampler::start();
    let (in_c, out_c) = (canonical(input), canonical(output));
    if out_c.starts_with(&in_c) || in_c.starts_with(&out_c) {
        return Err(usage(format!(
            "the output {} overlaps the input {}; write the output elsewhere (the input is never modified)",
            output.display(),
            input.display()
        )));
    }
    let (root, set, config) = if input.is_dir() {
        let root = Root::new(input)?;
        let set = TensorSet::open_dir(&root)?;
        let config = if root.exists("config.json") {
            Some(root.read_json("config.json")?)
        } else {
            None
        };
        (Some(root), set, config)
    } else {
        (None, TensorSet::open_file(input)?, None)
    };
    let config_path = input.join("config.json");
    let compression = config.as_ref().map(ct::detect).unwrap_or(Compression::None);
    if let Compression::Quantized(why) = &compression {
        return Err(usage(format!(
            "{}: {why}. SparseFlow converts fp16/bf16 2:4 checkpoints; quantized (int8/fp8/marlin-24) 2:4 is not supported yet: give the unquantized checkpoint",
            config_path.display()
        )));
    }
    refuse_quantized_tensors(&set)?;
    let bitmask = bitmask_layers(&set)?;
    let target = output_dtype(&set, &bitmask, opts.dtype)?;
    let selector = Selector::new(&opts.include, &opts.exclude)?;
    let cal = calibration_file(opts)?;

    // Pass 1: decide every tensor.
    let scan_total: u64 = set
        .iter()
        .filter(|t| selector.decide(t.name, t.dtype, t.shape).is_ok())
        .map(|t| t.bytes.len() as u64)
        .sum();
    progress.phase("scanning", scan_total);
    let mut items: Vec<Vec<Item>> = (0..set.files().count()).map(|_| Vec::new()).collect();
    let consumed: BTreeSet<String> = bitmask.iter().flat_map(|(p, _)| ct::parts(p)).collect();
    for t in set.iter() {
        let item = if let Some((layer, [n, k])) = bitmask
            .iter()
            .find(|(p, _)| t.name == ct::parts(p)[0])
            .map(|(p, s)| (p.clone(), *s))
        {
            let [c, b, s] =
                ct::parts(&layer).map(|n| set.get(&n).expect("checked in bitmask_layers"));
            Item::Sparse {
                src: Source::Bitmask {
                    compressed: c.bytes,
                    dtype: c.dtype,
                    bitmask: b.bytes,
                },
                layer,
                inputs: vec![c, b, s],
                n,
                k,
                status: Status::Imported,
                reason: "compressed-tensors sparse-24-bitmask, bit-exact".into(),
                violations: Some(0),
            }
        } else if consumed.contains(t.name) {
            continue;
        } else {
            decide(t, &selector, opts, progress)
        };
        items[item_file(&item)].push(item);
    }

    if let Some(file) = &cal {
        for it in items.iter().flatten() {
            if let Item::Sparse {
                layer,
                k,
                src: Source::Dense { prune: true, .. },
                ..
            } = it
            {
                file.check(layer, *k)?;
            }
        }
    }

    // Pass 2: write.
    let write_total: u64 = set.iter().map(|t| t.bytes.len() as u64).sum();
    progress.phase("converting", write_total);
    let staging = Staging::begin(output, opts.force)?;
    let dir = staging.dir().to_path_buf();
    let mut rows = Vec::new();
    let mut manifest = Manifest::new();
    let mut weight_map = BTreeMap::new();
    let mut total_size = 0u64;
    let files: Vec<String> = set.files().map(|(n, _)| n.to_string()).collect();
    for (fi, file_items) in items.iter().enumerate() {
        let out_name = if set.sharded() {
            files[fi].clone()
        } else {
            WEIGHTS.to_string()
        };
        let planned: Vec<Planned> = file_items
            .iter()
            .flat_map(|it| planned(it, target, opts.format))
            .collect();
        for p in &planned {
            weight_map.insert(p.name.clone(), out_name.clone());
            total_size += p.len_bytes()? as u64;
        }
        let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
        let mut w = ShardWriter::create(&dir.join(&out_name), planned, &meta)?;
        for it in file_items {
            let (row, entry) = write_item(it, &set, target, opts, cal.as_ref(), &mut w, progress)?;
            if let Some((name, entry)) = entry {
                manifest.layers.insert(name, entry);
            }
            rows.push(row);
        }
        w.finish()?;
    }
    let mut notes = Vec::new();
    if set.sharded() {
        write_json(&dir.join(INDEX), &index_json(&weight_map, total_size))?;
    }
    write_json(&dir.join(MANIFEST), &manifest.to_value())?;
    if let Some(mut config) = config.clone() {
        if let Some(row) = tied_head(&config, &set, target) {
            rows.push(row);
        }
        notes.extend(ct::rewrite_config(&mut config, target.torch_name()));
        if opts.format == OutputFormat::Bitmask24 {
            notes.push(ct::write_sparsity_config(&mut config, &rows));
        }
        write_json(&dir.join("config.json"), &config)?;
    }
    if let Some(root) = &root {
        for name in AUX_FILES {
            if root.exists(name) {
                copy_file(root, name, &dir.join(name))?;
                notes.push(format!("copied {name}"));
            }
        }
    }
    let committed = staging.commit()?;
    notes.extend(committed.note);
    if committed.replaced {
        notes.push(format!(
            "replaced the SparseFlow model at {}",
            committed.path.display()
        ));
    }
    let totals = Totals::from_rows(&rows);
    Ok(Report {
        schema: report::SCHEMA,
        input: input.display().to_string(),
        output: output.display().to_string(),
        format: opts.format.name().into(),
        method: opts.method.name().into(),
        dtype: target.torch_name().into(),
        input_kind: match (&root, &compression) {
            (None, _) => "safetensors file".into(),
            (_, Compression::Bitmask24) => "compressed-tensors sparse-24-bitmask".into(),
            _ if !bitmask.is_empty() => "compressed-tensors sparse-24-bitmask".into(),
            _ if set.sharded() => "hugging face directory (sharded)".into(),
            _ => "hugging face directory".into(),
        },
        rows,
        totals,
        notes,
        peak_rss_anon_bytes: sampler.finish(),
        largest_tensor_bytes: set.iter().map(|t| t.bytes.len() as u64).max().unwrap_or(0),
        seconds: t0.elapsed().as_secs_f64(),
    })
}

fn item_file(it: &Item) -> usize {
    match it {
        Item::Sparse { inputs, .. } => inputs[0].file_index,
        Item::Dense { t, .. } => t.file_index,
    }
}

/// Tensors named like quantized weights, or 8-bit float/int weights, are refused.
fn refuse_quantized_tensors(set: &TensorSet) -> Result<()> {
    const QUANT_SUFFIXES: &[&str] = &[
        ".weight_packed",
        ".weight_scale",
        ".weight_zero_point",
        ".qweight",
        ".g_idx",
        ".scales",
    ];
    for t in set.iter() {
        let suffix = QUANT_SUFFIXES.iter().find(|s| t.name.ends_with(*s));
        let low_precision = matches!(
            t.dtype,
            Dtype::F8_E4M3 | Dtype::F8_E5M2 | Dtype::I8 | Dtype::F4
        ) && t.shape.len() == 2;
        if suffix.is_some() || low_precision {
            return Err(ModelError::tensor(
                t.file,
                t.name,
                format!(
                    "{} {:?} is a quantized weight ({}); SparseFlow converts fp16/bf16/fp32 weights, quantized 2:4 is not supported yet: give the unquantized checkpoint",
                    t.dtype,
                    t.shape,
                    suffix.map(|s| format!("a `{s}` tensor")).unwrap_or_else(|| "8-bit or smaller values".into())
                ),
            ));
        }
    }
    Ok(())
}

/// Bitmask layers: prefix → `[n, k]`, every part checked.
fn bitmask_layers(set: &TensorSet) -> Result<Vec<(String, [usize; 2])>> {
    let mut out = Vec::new();
    for t in set.iter() {
        let Some(prefix) = t.name.strip_suffix(".bitmask") else {
            continue;
        };
        let [cn, bn, sn] = ct::parts(prefix);
        let (Some(c), Some(s)) = (set.get(&cn), set.get(&sn)) else {
            return Err(ModelError::tensor(
                t.file,
                t.name,
                format!("a sparse-24-bitmask layer also needs `{cn}` and `{sn}`"),
            ));
        };
        let dims: Vec<usize> = match s.dtype {
            Dtype::I64 => elements::<i64>(s.bytes)
                .iter()
                .map(|&d| d as usize)
                .collect(),
            Dtype::I32 => elements::<i32>(s.bytes)
                .iter()
                .map(|&d| d as usize)
                .collect(),
            d => {
                return Err(ModelError::tensor(
                    s.file,
                    &sn,
                    format!("dtype {d}: expected int64 [2, 1] holding the dense shape"),
                ))
            }
        };
        let [n, k] = dims[..] else {
            return Err(ModelError::tensor(
                s.file,
                &sn,
                format!("holds {dims:?}: expected the 2-D shape [rows, cols]"),
            ));
        };
        if n == 0 || k == 0 || !k.is_multiple_of(4) {
            return Err(ModelError::tensor(
                s.file,
                &sn,
                format!(
                    "shape [{n}, {k}]: rows and cols must be positive and cols a multiple of 4"
                ),
            ));
        }
        if sf_dtype(c.dtype).is_none() {
            return Err(ModelError::tensor(c.file, &cn, format!("dtype {}: quantized 2:4 (fp8/int8 sparse-24-bitmask) is not supported yet; give the unquantized checkpoint", c.dtype)));
        }
        if c.shape != [n, k / 2] {
            return Err(ModelError::tensor(
                c.file,
                &cn,
                format!(
                    "shape {:?}, expected [{n}, {}] for the dense shape [{n}, {k}]",
                    c.shape,
                    k / 2
                ),
            ));
        }
        if t.dtype != Dtype::U8 || t.shape != [n, k.div_ceil(8)] {
            return Err(ModelError::tensor(
                t.file,
                &bn,
                format!(
                    "{} {:?}, expected U8 [{n}, {}] (numpy.packbits of the mask, little bit order)",
                    t.dtype,
                    t.shape,
                    k.div_ceil(8)
                ),
            ));
        }
        out.push((prefix.to_string(), [n, k]));
    }
    Ok(out)
}

/// The dtype the output holds: `--dtype`, else the checkpoint's single fp16/bf16 dtype.
fn output_dtype(
    set: &TensorSet,
    bitmask: &[(String, [usize; 2])],
    wanted: Option<DType>,
) -> Result<DType> {
    if let Some(d) = wanted {
        if d == DType::F32 {
            return Err(usage(
                "--dtype must be fp16 or bf16 (2:4 tensor cores run those)",
            ));
        }
        return Ok(d);
    }
    let shapes: BTreeSet<String> = bitmask.iter().map(|(p, _)| format!("{p}.shape")).collect();
    let mut found: Vec<(DType, &str)> = Vec::new();
    for t in set.iter().filter(|t| !shapes.contains(t.name)) {
        if let Some(d) = sf_dtype(t.dtype).or((t.dtype == Dtype::F64).then_some(DType::F32)) {
            if !found.iter().any(|f| f.0 == d) {
                found.push((d, t.name));
            }
        }
    }
    match found[..] {
        [] => Ok(DType::F16),
        [(d, _)] if d != DType::F32 => Ok(d),
        _ => Err(usage(format!(
            "the checkpoint holds {}: fp32 or mixed-dtype checkpoints need --dtype fp16 or --dtype bf16",
            found
                .iter()
                .map(|(d, n)| format!("{} (e.g. `{n}`)", d.torch_name()))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The calibration file an activation-aware method needs (`None` for magnitude).
fn calibration_file(opts: &Options) -> Result<Option<CalibrationFile>> {
    match (opts.method.calibrated(), &opts.calibration) {
        (Some(m), None) => Err(usage(format!(
            "--method {m} prunes from calibration activations: pass --calibration FILE (per-layer activations, see docs/ACCURACY.md), or use --method magnitude"
        ))),
        (None, Some(path)) => Err(usage(format!(
            "--calibration {} is only read by --method wanda, sparsegpt or sparsegpt-refine (the method is {})",
            path.display(),
            opts.method.name()
        ))),
        (Some(_), Some(path)) => CalibrationFile::open(path).map(Some),
        (None, None) => Ok(None),
    }
}

/// Pass 1 for one tensor.
fn decide<'a>(
    t: TensorRef<'a>,
    selector: &Selector,
    opts: &Options,
    progress: &mut dyn Progress,
) -> Item<'a> {
    if let Err(reason) = selector.decide(t.name, t.dtype, t.shape) {
        return Item::Dense {
            t,
            status: Status::Dense,
            reason,
            violations: None,
        };
    }
    let (n, k) = (t.shape[0], t.shape[1]);
    let (violations, _) = count_violations(t.bytes, t.dtype);
    progress.advance(t.bytes.len() as u64);
    let groups = (n * k / 4) as u64;
    let layer = t.name.strip_suffix(".weight").unwrap_or(t.name).to_string();
    let almost = violations > 0 && (violations as f64) <= ALMOST_FRACTION * groups as f64;
    let (status, reason, prune) = if violations == 0 {
        (Status::Already24, "already 2:4, error 0".to_string(), false)
    } else if almost && !opts.prune {
        return Item::Dense {
            t,
            status: Status::AlmostKeptDense,
            reason: format!(
                "almost 2:4: {violations} of {groups} groups have more than 2 non-zeros; kept dense (--prune prunes them)"
            ),
            violations: Some(violations),
        };
    } else if almost {
        (
            Status::Pruned,
            format!(
                "almost 2:4: {violations} violating groups pruned ({})",
                opts.method.name()
            ),
            true,
        )
    } else {
        (Status::Pruned, opts.method.name().to_string(), true)
    };
    Item::Sparse {
        layer,
        src: Source::Dense {
            bytes: t.bytes,
            dtype: t.dtype,
            prune,
        },
        inputs: vec![t],
        n,
        k,
        status,
        reason,
        violations: Some(violations),
    }
}

/// Output dtype of a dense tensor: floats take the target dtype, the rest keep theirs.
fn dense_dtype(d: Dtype, target: DType) -> Dtype {
    if sf_dtype(d).is_some() || d == Dtype::F64 {
        st_dtype(target)
    } else {
        d
    }
}

fn planned(it: &Item, target: DType, format: OutputFormat) -> Vec<Planned> {
    match it {
        Item::Dense { t, .. } => vec![Planned::new(
            t.name,
            dense_dtype(t.dtype, target),
            t.shape.to_vec(),
        )],
        Item::Sparse { layer, n, k, .. } => match format {
            OutputFormat::Dense => vec![Planned::new(
                format!("{layer}.weight"),
                st_dtype(target),
                vec![*n, *k],
            )],
            OutputFormat::Sparseflow => vec![
                Planned::new(format!("{layer}.values"), st_dtype(target), vec![*n, k / 2]),
                Planned::new(
                    format!("{layer}.meta"),
                    Dtype::U8,
                    vec![*n, meta_bytes_per_row(*k)],
                ),
            ],
            OutputFormat::Bitmask24 => {
                let [c, b, s] = ct::parts(layer);
                vec![
                    Planned::new(c, st_dtype(target), vec![*n, k / 2]),
                    Planned::new(b, Dtype::U8, vec![*n, k.div_ceil(8)]),
                    Planned::new(s, Dtype::I64, vec![2, 1]),
                ]
            }
        },
    }
}

/// Pass 2 for one item: writes it, returns its report row and manifest entry.
fn write_item(
    it: &Item,
    set: &TensorSet,
    target: DType,
    opts: &Options,
    cal: Option<&CalibrationFile>,
    w: &mut ShardWriter,
    progress: &mut dyn Progress,
) -> Result<(Row, Option<(String, LayerEntry)>)> {
    let t0 = Instant::now();
    match it {
        Item::Dense {
            t,
            status,
            reason,
            violations,
        } => {
            let dst = dense_dtype(t.dtype, target);
            let cast = (dst != t.dtype).then_some(target);
            dense_tensor(
                t.bytes,
                t.dtype,
                cast,
                |b| w.write(b),
                |d| progress.advance(d),
            )?;
            Ok((
                Row {
                    name: t.name.to_string(),
                    shape: t.shape.to_vec(),
                    dtype: dst.to_string(),
                    status: *status,
                    reason: reason.clone(),
                    sparsity: None,
                    rel_error: None,
                    max_error: None,
                    kept_magnitude: None,
                    violating_groups: *violations,
                    bytes_before: t.bytes.len() as u64,
                    bytes_after: byte_len(dst, t.shape).unwrap_or(0) as u64,
                    seconds: t0.elapsed().as_secs_f64(),
                },
                None,
            ))
        }
        Item::Sparse {
            layer,
            src,
            inputs,
            n,
            k,
            status,
            reason,
            violations,
        } => {
            let dense_out = opts.format == OutputFormat::Dense;
            // An activation-aware method prunes from this layer's calibration (checked to exist
            // in pass 1); H is built here and dropped with the layer.
            let layer_cal = match (cal, src) {
                (Some(file), Source::Dense { prune: true, .. }) => {
                    Some(file.calibration(layer, *k)?)
                }
                _ => None,
            };
            let pruner = match (&layer_cal, opts.method.calibrated()) {
                (Some(c), Some(method)) => Pruner::Calibrated(method, c),
                _ => Pruner::Magnitude,
            };
            // The bias stays a tensor of its own, `<layer>.bias`; the epilogue says it is used.
            let has_bias = set.get(&format!("{layer}.bias")).is_some();
            let result = match target {
                DType::BF16 => run_layer::<bf16>(src, *n, *k, pruner, dense_out, w, progress)?,
                _ => run_layer::<f16>(src, *n, *k, pruner, dense_out, w, progress)?,
            };
            let (meta, diff) =
                result.map_err(|e| ModelError::tensor(inputs[0].file, inputs[0].name, e))?;
            match opts.format {
                OutputFormat::Sparseflow => w.write(&meta)?,
                OutputFormat::Bitmask24 => {
                    w.write(&ct::bitmask_from_meta(&meta, *k))?;
                    w.write(&ct::shape_bytes(*n, *k))?;
                }
                OutputFormat::Dense => {}
            }
            let bytes_after = match opts.format {
                OutputFormat::Dense => diff.bytes_dense,
                OutputFormat::Sparseflow => diff.bytes_sparse,
                // Values and bitmask have the sizes of values and metadata, plus the shape.
                OutputFormat::Bitmask24 => diff.bytes_sparse + 16,
            } as u64;
            let row = Row {
                name: format!("{layer}.weight"),
                shape: vec![*n, *k],
                dtype: st_dtype(target).to_string(),
                status: *status,
                reason: reason.clone(),
                sparsity: Some(diff.sparsity),
                rel_error: Some(diff.rel_fro_error),
                max_error: Some(diff.max_error),
                kept_magnitude: Some(diff.kept_magnitude),
                violating_groups: *violations,
                bytes_before: inputs.iter().map(|t| t.bytes.len() as u64).sum(),
                bytes_after,
                seconds: t0.elapsed().as_secs_f64(),
            };
            let entry = (opts.format == OutputFormat::Sparseflow).then(|| {
                (
                    layer.clone(),
                    LayerEntry {
                        shape: [*n, *k],
                        dtype: target,
                        method: match status {
                            Status::Already24 => "already-2:4".into(),
                            Status::Imported => "sparse-24-bitmask".into(),
                            _ => opts.method.name().into(),
                        },
                        epilogue: if has_bias { "bias" } else { "none" }.into(),
                        diff: diff_map(&diff),
                        fused_activation: None,
                    },
                )
            });
            Ok((row, entry))
        }
    }
}

fn run_layer<T: OutElem>(
    src: &Source<'_>,
    n: usize,
    k: usize,
    pruner: Pruner<'_>,
    dense_out: bool,
    w: &mut ShardWriter,
    progress: &mut dyn Progress,
) -> Result<std::result::Result<(Vec<u8>, DiffReport), String>> {
    sparse_layer::<T>(
        src,
        n,
        k,
        pruner,
        dense_out,
        |b| w.write(b),
        |d| progress.advance(d),
    )
}

/// The diff report as manifest numbers (absent measurements left out).
pub fn diff_map(d: &DiffReport) -> BTreeMap<String, Value> {
    match serde_json::to_value(d) {
        Ok(Value::Object(m)) => m.into_iter().filter(|(_, v)| !v.is_null()).collect(),
        _ => BTreeMap::new(),
    }
}

/// The report row of an `lm_head` tied to the embeddings (no tensor of its own).
fn tied_head(config: &Value, set: &TensorSet, target: DType) -> Option<Row> {
    let tied = config
        .get("tie_word_embeddings")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if !tied || set.get("lm_head.weight").is_some() {
        return None;
    }
    let emb = set
        .iter()
        .find(|t| t.name.ends_with("embed_tokens.weight") || t.name.ends_with("wte.weight"))?;
    Some(Row {
        name: "lm_head.weight".into(),
        shape: emb.shape.to_vec(),
        dtype: st_dtype(target).to_string(),
        status: Status::Tied,
        reason: format!(
            "tied to `{}` (tie_word_embeddings), no tensor of its own; stays dense",
            emb.name
        ),
        sparsity: None,
        rel_error: None,
        max_error: None,
        kept_magnitude: None,
        violating_groups: None,
        bytes_before: 0,
        bytes_after: 0,
        seconds: 0.0,
    })
}

/// Copies a regular file of the input into the staging directory, fsynced.
fn copy_file(root: &Root, name: &str, to: &Path) -> Result<()> {
    let mut from = root.open(name)?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(ModelError::io(to))?;
    std::io::copy(&mut from, &mut out)
        .and_then(|_| out.flush())
        .and_then(|_| out.sync_all())
        .map_err(ModelError::io(to))?;
    Ok(())
}
