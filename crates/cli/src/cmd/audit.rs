//! `sparseflow audit`: what 2:4 buys a model on a GPU, per layer and for the whole model —
//! weight memory, decode time per token, prefill time, tokens/s, GPUs needed, cost.
//!
//! Every time is **measured** when a `sparseflow benchmark` JSON (`--bench`) has the layer's
//! shape and M (SparseFlow against the fastest dense contender of that row), else
//! **estimated** with a roofline: `t = max(bytes / bandwidth, 2·M·N·K / peak)`, where bytes are
//! the weight as stored (dense `N·K·2`, 2:4 `N·K·2·0.5625`: values plus metadata) plus `X` and
//! `Y`, and the peak is the GPU's dense or 2:4-sparse fp16 tensor-core rate ([`GPUS`]). Only the
//! linear layers are modelled (attention over the KV cache, norms and launch gaps are not), and
//! `lm_head` stays dense. A SparseFlow model directory is audited as stored: its `sparseflow.json`
//! says which block linears are 2:4, and the others are counted dense. The roofline assumes the 2:4 kernels reach the sparse peak, which they
//! do not in compute-bound prefill today: audit says where measured 2:4 loses.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use plotters::prelude::*;
use serde::Serialize;
use serde_json::Value;

use super::table::Table;
use crate::bench::shapes::{block_config, block_layers, BlockConfig, Layer};

/// A GPU's ceilings for fp16/bf16 with fp32 accumulation.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Gpu {
    pub key: &'static str,
    pub name: &'static str,
    pub bandwidth_tbps: f64,
    pub dense_tflops: f64,
    pub sparse_tflops: f64,
    pub memory_gb: f64,
    pub source: &'static str,
}

/// Datasheet figures (dense tensor-core rate; 2:4 sparse is twice that).
pub const GPUS: &[Gpu] = &[
    Gpu { key: "h100", name: "H100 SXM5 80GB", bandwidth_tbps: 3.35, dense_tflops: 989.4, sparse_tflops: 1978.9, memory_gb: 80.0, source: "NVIDIA H100 Tensor Core GPU datasheet (SXM5, FP16 tensor)" },
    Gpu { key: "h200", name: "H200 SXM 141GB", bandwidth_tbps: 4.8, dense_tflops: 989.4, sparse_tflops: 1978.9, memory_gb: 141.0, source: "NVIDIA H200 Tensor Core GPU datasheet (SXM, FP16 tensor)" },
    Gpu { key: "a100", name: "A100 SXM4 80GB", bandwidth_tbps: 2.039, dense_tflops: 312.0, sparse_tflops: 624.0, memory_gb: 80.0, source: "NVIDIA A100 Tensor Core GPU datasheet (SXM4 80GB, FP16 tensor)" },
    Gpu { key: "l40s", name: "L40S 48GB", bandwidth_tbps: 0.864, dense_tflops: 362.05, sparse_tflops: 733.0, memory_gb: 48.0, source: "NVIDIA L40S datasheet (FP16 tensor, FP32 accumulate)" },
    Gpu { key: "rtx4090", name: "GeForce RTX 4090 24GB", bandwidth_tbps: 1.008, dense_tflops: 165.2, sparse_tflops: 330.4, memory_gb: 24.0, source: "NVIDIA Ada Lovelace architecture whitepaper (RTX 4090, FP16 tensor with FP32 accumulate)" },
];

/// Bytes per fp16/bf16 element.
const ES: f64 = 2.0;
/// 2:4 weight bytes over dense: values (1/2) + metadata (1/16).
pub const SPARSE_WEIGHT_RATIO: f64 = 0.5625;

#[derive(Parser)]
pub struct Args {
    /// A model: a directory with config.json (a Hugging Face or SparseFlow model), a
    /// config.json, or a preset (llama3-8b, llama2-7b, mistral-7b, llama3-70b-tp8, bert-base).
    #[arg(long)]
    pub model: String,
    /// The GPU: h100, h200, a100, l40s, rtx4090, or `auto`: this machine's GPU 0, recognised by
    /// name, with every block linear timed on it now (a quick `sparseflow benchmark`: SparseFlow
    /// vs the best dense path, fp16, CUDA graphs, 3 samples per case), so the figures are
    /// measured rather than estimated.
    #[arg(long, default_value = "h100")]
    pub gpu: String,
    /// Batch sizes (concurrent sequences).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub batch: Vec<usize>,
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: usize,
    #[arg(long, default_value_t = 256)]
    pub new_tokens: usize,
    /// Generated tokens per day to serve (sizes the GPU count).
    #[arg(long)]
    pub tokens_per_day: Option<f64>,
    /// Price of one GPU hour, for the cost figures.
    #[arg(long, default_value_t = 2.5)]
    pub price_per_gpu_hour: f64,
    /// `sparseflow benchmark --json` files: their times replace estimates where shape and M match.
    #[arg(long)]
    pub bench: Vec<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write an SVG chart: decode tokens/s, dense vs 2:4, per batch size.
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

/// Roofline time (seconds) of `Y[M×N] = X[M×K]·Wᵀ` on `gpu`, dense or 2:4.
pub fn roofline_s(gpu: &Gpu, n: usize, k: usize, m: usize, sparse: bool) -> f64 {
    let (n, k, m) = (n as f64, k as f64, m as f64);
    let weight = n * k * ES * if sparse { SPARSE_WEIGHT_RATIO } else { 1.0 };
    let bytes = weight + (m * k + m * n) * ES;
    let peak = if sparse {
        gpu.sparse_tflops
    } else {
        gpu.dense_tflops
    };
    (bytes / (gpu.bandwidth_tbps * 1e12)).max(2.0 * m * n * k / (peak * 1e12))
}

/// Where a time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Measured,
    Estimated,
}

/// Measured medians (µs) by (n, k, m): (sparseflow, best dense).
#[derive(Default)]
struct Measured(Vec<(usize, usize, usize, f64, f64)>);

impl Measured {
    fn load(files: &[PathBuf]) -> Result<Measured> {
        let mut out = Measured::default();
        for f in files {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("--bench {}", f.display()))?;
            let v: Value = serde_json::from_str(&text)
                .with_context(|| format!("--bench {}: not JSON", f.display()))?;
            let rows = v["rows"].as_array().with_context(|| {
                format!(
                    "--bench {}: no `rows`; not a sparseflow benchmark report",
                    f.display()
                )
            })?;
            for r in rows {
                let dim = |k: &str| r[k].as_u64().map(|d| d as usize);
                let (Some(n), Some(k), Some(m)) = (dim("n"), dim("k"), dim("m")) else {
                    continue;
                };
                let times = r["measurements"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| {
                        Some((x["contender"].as_str()?, x["time"]["median_us"].as_f64()?))
                    });
                let (mut sparse, mut dense) = (None, None::<f64>);
                for (name, t) in times {
                    match name {
                        "sparseflow" => sparse = Some(t),
                        "cusparselt" | "cpu_sparse" => {}
                        _ => dense = Some(dense.map_or(t, |d| d.min(t))),
                    }
                }
                if let (Some(s), Some(d)) = (sparse, dense) {
                    out.0.push((n, k, m, s, d));
                }
            }
        }
        Ok(out)
    }

    /// Medians of benchmark rows (SparseFlow and the row's best dense path).
    fn extend_from_rows(&mut self, rows: &[crate::bench::report::Row]) {
        for r in rows {
            if let (Some(s), Some(d)) =
                (r.median(crate::bench::report::SPARSEFLOW), r.dense_median())
            {
                self.0.push((r.n, r.k, r.m, s, d));
            }
        }
    }

    fn get(&self, n: usize, k: usize, m: usize) -> Option<(f64, f64)> {
        self.0
            .iter()
            .find(|e| (e.0, e.1, e.2) == (n, k, m))
            .map(|e| (e.3 * 1e-6, e.4 * 1e-6))
    }
}

/// Dense and 2:4 time of one layer at M, and where they come from.
#[derive(Debug, Clone, Serialize)]
pub struct LayerTime {
    pub layer: String,
    pub n: usize,
    pub k: usize,
    pub m: usize,
    pub dense_us: f64,
    pub sparse_us: f64,
    pub speedup: f64,
    pub source: Source,
    /// In how many of the model's blocks this layer is 2:4 (the others count dense): all of
    /// them unless a SparseFlow model's manifest keeps some dense.
    pub sparse_blocks: usize,
}

/// Whole-model figures at one batch size.
#[derive(Debug, Clone, Serialize)]
pub struct BatchFigures {
    pub batch: usize,
    pub decode_ms_per_step_dense: f64,
    pub decode_ms_per_step_sparse: f64,
    pub tokens_per_s_dense: f64,
    pub tokens_per_s_sparse: f64,
    pub prefill_ms_dense: f64,
    pub prefill_ms_sparse: f64,
    pub gpus_dense: Option<u64>,
    pub gpus_sparse: Option<u64>,
    pub usd_per_million_tokens_dense: f64,
    pub usd_per_million_tokens_sparse: f64,
    pub usd_per_month_dense: Option<f64>,
    pub usd_per_month_sparse: Option<f64>,
    /// `measured` only when every layer time of this batch was measured.
    pub decode_source: Source,
    pub prefill_source: Source,
    pub layers: Vec<LayerTime>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    pub schema: &'static str,
    pub model: String,
    pub gpu: Gpu,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    pub blocks: usize,
    pub weight_gb_dense: f64,
    pub weight_gb_sparse: f64,
    pub batches: Vec<BatchFigures>,
    pub losses: Vec<String>,
    pub notes: Vec<String>,
}

/// A model's block shape and vocabulary: a preset, a config.json, or a directory holding one.
fn model_shape(model: &str) -> Result<(BlockConfig, usize)> {
    let path = Path::new(model);
    let config = if path.is_dir() {
        path.join("config.json")
    } else {
        path.to_path_buf()
    };
    if !config.is_file() {
        let vocab = match model {
            "llama3-8b" | "llama3-70b-tp8" => 128_256,
            "bert-base" => 30_522,
            _ => 32_000,
        };
        return Ok((block_config(model)?, vocab));
    }
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(&config).with_context(|| config.display().to_string())?,
    )
    .with_context(|| format!("{}: not JSON", config.display()))?;
    let get = |k: &str| v[k].as_u64().map(|d| d as usize);
    let need = |k: &str| get(k).with_context(|| format!("{}: `{k}` missing", config.display()));
    let hidden = need("hidden_size")?;
    let heads = need("num_attention_heads")?;
    let cfg = BlockConfig {
        hidden,
        intermediate: need("intermediate_size")?,
        heads,
        kv_heads: get("num_key_value_heads").unwrap_or(heads),
        head_dim: get("head_dim").unwrap_or(hidden / heads.max(1)),
        tp: 1,
        gated: v["model_type"].as_str() != Some("bert"),
        layers: need("num_hidden_layers")?,
    };
    Ok((cfg, get("vocab_size").unwrap_or(32_000)))
}

/// Per block layer, in how many blocks it is 2:4. A SparseFlow model directory answers from its
/// manifest (a layer `model.layers.<i>.<...>.<name>` is 2:4 in block `i`; BERT-style
/// `<name>.dense` counts for `<name>`); anything else is assumed 2:4 everywhere.
fn sparse_blocks(
    model: &str,
    block: &[Layer],
    blocks: usize,
    notes: &mut Vec<String>,
) -> Result<Vec<usize>> {
    let dir = Path::new(model);
    if !dir.is_dir() || !dir.join(sparseflow_model::MANIFEST).exists() {
        return Ok(vec![blocks; block.len()]);
    }
    let manifest = sparseflow_model::Manifest::read_dir(dir)?;
    let mut counts = vec![0usize; block.len()];
    let mut unmatched = Vec::new();
    for (name, entry) in &manifest.layers {
        let segs: Vec<&str> = name.split('.').collect();
        let layer = match segs[..] {
            [.., l, "dense"] => l,
            [.., l] => l,
            [] => "",
        };
        let hit = block
            .iter()
            .position(|b| b.name == layer && [b.n, b.k] == entry.shape);
        match hit {
            Some(i) => counts[i] += 1,
            None => unmatched.push(name.as_str()),
        }
    }
    let sparse: usize = counts.iter().map(|&c| c.min(blocks)).sum();
    notes.push(format!(
        "{}: {} of {} block linears are 2:4; the others are audited dense",
        dir.join(sparseflow_model::MANIFEST).display(),
        sparse,
        blocks * block.len()
    ));
    if !unmatched.is_empty() {
        notes.push(format!(
            "{} sparse layers of the manifest match no block linear of this config and are not audited: {}",
            unmatched.len(),
            unmatched.iter().take(4).copied().collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(counts.into_iter().map(|c| c.min(blocks)).collect())
}

fn layer_time(gpu: &Gpu, measured: &Measured, l: &Layer, m: usize) -> LayerTime {
    let (dense, sparse, source) = match measured.get(l.n, l.k, m) {
        Some((s, d)) => (d, s, Source::Measured),
        None => (
            roofline_s(gpu, l.n, l.k, m, false),
            roofline_s(gpu, l.n, l.k, m, true),
            Source::Estimated,
        ),
    };
    LayerTime {
        layer: l.name.clone(),
        n: l.n,
        k: l.k,
        m,
        dense_us: dense * 1e6,
        sparse_us: sparse * 1e6,
        speedup: dense / sparse,
        source,
        sparse_blocks: 0,
    }
}

/// The preset of a GPU by its device name (`NVIDIA H200`, `NVIDIA A100-SXM4-80GB`, ...).
pub fn gpu_key_for_name(name: &str) -> Option<&'static str> {
    let up = name.to_ascii_uppercase();
    [
        ("H200", "h200"),
        ("H100", "h100"),
        ("A100", "a100"),
        ("L40S", "l40s"),
        ("4090", "rtx4090"),
    ]
    .iter()
    .find(|(needle, _)| up.contains(needle))
    .map(|&(_, key)| key)
}

/// `--gpu auto`: opens GPU 0, recognises it, and times the model's block linears at every
/// decode batch and prefill size of the audit with the benchmark's own harness.
fn time_on_this_gpu(args: &Args) -> Result<(&'static str, Vec<crate::bench::report::Row>)> {
    use crate::bench::gpu::{self as bgpu, cublas::Cublas, sweep, Gpu as Device, TimeCfg};
    let device = Device::open().context("--gpu auto needs a GPU; or name one with --gpu")?;
    let key = gpu_key_for_name(&device.info.name).with_context(|| {
        format!(
            "--gpu auto: no preset for `{}`; name the closest with --gpu ({})",
            device.info.name,
            GPUS.iter().map(|g| g.key).collect::<Vec<_>>().join(", ")
        )
    })?;
    let (cfg, _) = model_shape(&args.model)?;
    let layers = crate::bench::shapes::unique_layers(&block_layers(&cfg));
    let mut ms: Vec<usize> = args
        .batch
        .iter()
        .flat_map(|&b| [b, b * args.prompt_tokens])
        .collect();
    ms.sort_unstable();
    ms.dedup();
    let contenders = sweep::Contenders {
        sparseflow: bgpu::sparseflow::open().map_err(|e| format!("{e:#}")),
        cublas: Cublas::new()
            .map(std::rc::Rc::new)
            .map_err(|e| format!("{e:#}")),
        cusparselt: Err("not needed by audit".into()),
    };
    let cfg = sweep::SweepCfg {
        epilogue: sparseflow_core::EpilogueKind::from_name("none")?,
        time: TimeCfg {
            samples: 3,
            sample_ms: 1.0,
            warmup_ms: 5.0,
            graph: true,
        },
        rotation_bytes: 2 * device.l2_bytes,
        hot: false,
        seed: 0,
        copy_tbps: device.measure_copy_tbps().unwrap_or(3.0),
        dense_tflops: 700.0,
        lt_algos: 4,
    };
    eprintln!(
        "--gpu auto: {} → {key}; timing {} shapes × {} token counts",
        device.info.name,
        layers.len(),
        ms.len()
    );
    let pb = indicatif::ProgressBar::new((layers.len() * ms.len() * 3) as u64);
    let rows = sweep::run::<half::f16>(&device, &contenders, &layers, &ms, &cfg, &pb, &mut |_| {
        Ok(())
    })?;
    pb.finish_and_clear();
    Ok((key, rows))
}

/// Computes the audit (no I/O besides `--bench` and the model's config).
pub fn audit(args: &Args) -> Result<Audit> {
    // Checked before `--gpu auto` spends GPU time on a run that would be refused.
    if args.batch.is_empty() || args.batch.contains(&0) {
        bail!("--batch needs positive batch sizes");
    }
    let (gpu_key, timed_here) = if args.gpu == "auto" {
        let (key, rows) = time_on_this_gpu(args)?;
        (key.to_string(), rows)
    } else {
        (args.gpu.clone(), Vec::new())
    };
    let gpu = *GPUS.iter().find(|g| g.key == gpu_key).with_context(|| {
        format!(
            "unknown --gpu `{gpu_key}`; valid: {}",
            GPUS.iter().map(|g| g.key).collect::<Vec<_>>().join(", ")
        )
    })?;
    let (cfg, vocab) = model_shape(&args.model)?;
    let mut measured = Measured::load(&args.bench)?;
    measured.extend_from_rows(&timed_here);
    let block = block_layers(&cfg);
    let head = Layer {
        name: "lm_head (dense)".into(),
        n: vocab,
        k: cfg.hidden,
    };
    let mut notes = Vec::new();
    let sparse_in = sparse_blocks(&args.model, &block, cfg.layers, &mut notes)?;
    // (dense, 2:4) weight bytes of the blocks: a layer kept dense weighs the same in both.
    let (block_dense, block_sparse) =
        block
            .iter()
            .zip(&sparse_in)
            .fold((0.0, 0.0), |(d, s), (l, &sparse)| {
                let one = (l.n * l.k) as f64 * ES;
                let dense = (cfg.layers - sparse) as f64;
                (
                    d + one * cfg.layers as f64,
                    s + one * (sparse as f64 * SPARSE_WEIGHT_RATIO + dense),
                )
            });
    let other_bytes = 2.0 * (vocab * cfg.hidden) as f64 * ES; // embeddings + lm_head
    let weight_dense = block_dense + other_bytes;
    let weight_sparse = block_sparse + other_bytes;
    let mut losses = Vec::new();
    let mut batches = Vec::new();
    for &b in &args.batch {
        let mut layers = Vec::new();
        let (mut dd, mut ds, mut pd, mut ps) = (0.0, 0.0, 0.0, 0.0);
        let (mut decode_measured, mut prefill_measured) = (true, true);
        for (l, &sparse) in block.iter().zip(&sparse_in) {
            let mut d = layer_time(&gpu, &measured, l, b);
            let mut p = layer_time(&gpu, &measured, l, b * args.prompt_tokens);
            (d.sparse_blocks, p.sparse_blocks) = (sparse, sparse);
            let (all, kept) = (cfg.layers as f64, (cfg.layers - sparse) as f64);
            dd += d.dense_us * all;
            ds += d.sparse_us * sparse as f64 + d.dense_us * kept;
            pd += p.dense_us * all;
            ps += p.sparse_us * sparse as f64 + p.dense_us * kept;
            decode_measured &= d.source == Source::Measured;
            prefill_measured &= p.source == Source::Measured;
            for t in [&d, &p] {
                if t.speedup < 1.0 && sparse > 0 {
                    losses.push(format!(
                        "{} [{}x{}] at M={}: 2:4 {:.1} us vs dense {:.1} us ({:?})",
                        t.layer, t.n, t.k, t.m, t.sparse_us, t.dense_us, t.source
                    ));
                }
            }
            layers.extend([d, p]);
        }
        let hd = layer_time(&gpu, &measured, &head, b).dense_us;
        let hp = layer_time(&gpu, &measured, &head, b * args.prompt_tokens).dense_us;
        let (dd, ds, pd, ps) = (dd + hd, ds + hd, pd + hp, ps + hp);
        let tps = |step_us: f64| b as f64 / (step_us * 1e-6);
        let (td, ts) = (tps(dd), tps(ds));
        let gpus = |t: f64, weights: f64| {
            args.tokens_per_day.map(|day| {
                let by_rate = (day / 86_400.0 / t).ceil() as u64;
                by_rate
                    .max((weights / (gpu.memory_gb * 1e9 * 0.9)).ceil() as u64)
                    .max(1)
            })
        };
        let per_million = |t: f64| args.price_per_gpu_hour / (t * 3600.0) * 1e6;
        let (gd, gs) = (gpus(td, weight_dense), gpus(ts, weight_sparse));
        batches.push(BatchFigures {
            batch: b,
            decode_ms_per_step_dense: dd / 1e3,
            decode_ms_per_step_sparse: ds / 1e3,
            tokens_per_s_dense: td,
            tokens_per_s_sparse: ts,
            prefill_ms_dense: pd / 1e3,
            prefill_ms_sparse: ps / 1e3,
            gpus_dense: gd,
            gpus_sparse: gs,
            usd_per_million_tokens_dense: per_million(td),
            usd_per_million_tokens_sparse: per_million(ts),
            usd_per_month_dense: gd.map(|g| g as f64 * args.price_per_gpu_hour * 730.0),
            usd_per_month_sparse: gs.map(|g| g as f64 * args.price_per_gpu_hour * 730.0),
            decode_source: if decode_measured {
                Source::Measured
            } else {
                Source::Estimated
            },
            prefill_source: if prefill_measured {
                Source::Measured
            } else {
                Source::Estimated
            },
            layers,
        });
    }
    notes.splice(0..0, [
        format!("estimates: roofline t = max(bytes / {} TB/s, 2MNK / {} (dense) or {} (2:4) TFLOPS); source: {}", gpu.bandwidth_tbps, gpu.dense_tflops, gpu.sparse_tflops, gpu.source),
        "linear layers only: attention over the KV cache, norms and launch gaps are not modelled; lm_head and embeddings stay dense".into(),
    ]);
    if batches
        .iter()
        .any(|b| b.prefill_source == Source::Estimated)
    {
        notes.push("prefill estimates assume 2:4 kernels reach the sparse tensor-core peak; measured SparseFlow kernels do not in compute-bound prefill today (2:4 can lose there): pass --bench with large-M rows to see measured figures".into());
    }
    Ok(Audit {
        schema: "sparseflow-audit/1",
        model: args.model.clone(),
        gpu,
        prompt_tokens: args.prompt_tokens,
        new_tokens: args.new_tokens,
        blocks: cfg.layers,
        weight_gb_dense: weight_dense / 1e9,
        weight_gb_sparse: weight_sparse / 1e9,
        batches,
        losses,
        notes,
    })
}

pub fn run(args: Args) -> Result<ExitCode> {
    let a = audit(&args)?;
    if let Some(svg) = &args.svg {
        chart(&a, svg)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&a)?);
    } else {
        print!("{}", render(&a));
    }
    Ok(ExitCode::SUCCESS)
}

fn tag(s: Source) -> &'static str {
    match s {
        Source::Measured => "measured",
        Source::Estimated => "estimated",
    }
}

/// The tables: per layer at the first batch, then the whole model per batch.
pub fn render(a: &Audit) -> String {
    let mut out = format!(
        "{} on {}: weights {:.2} GB dense -> {:.2} GB 2:4 ({} blocks)\n\n",
        a.model, a.gpu.name, a.weight_gb_dense, a.weight_gb_sparse, a.blocks
    );
    let mut t = Table::new(&[
        "layer", "N x K", "M", "dense us", "2:4 us", "speedup", "source",
    ]);
    for l in a.batches.iter().flat_map(|b| &b.layers) {
        let layer = if l.sparse_blocks < a.blocks {
            format!(
                "{} (2:4 in {}/{} blocks)",
                l.layer, l.sparse_blocks, a.blocks
            )
        } else {
            l.layer.clone()
        };
        t.row(vec![
            layer,
            format!("{}x{}", l.n, l.k),
            l.m.to_string(),
            format!("{:.2}", l.dense_us),
            format!("{:.2}", l.sparse_us),
            format!("{:.2}x", l.speedup),
            tag(l.source).into(),
        ]);
    }
    out += &format!("{t}\n");
    let mut t = Table::new(&[
        "batch",
        "decode ms/step",
        "tokens/s",
        "prefill ms",
        "GPUs",
        "$/M tokens",
        "$/month",
        "source",
    ]);
    let pair = |d: f64, s: f64, digits: usize| format!("{d:.digits$} -> {s:.digits$}");
    for b in &a.batches {
        t.row(vec![
            b.batch.to_string(),
            pair(b.decode_ms_per_step_dense, b.decode_ms_per_step_sparse, 3),
            pair(b.tokens_per_s_dense, b.tokens_per_s_sparse, 0),
            pair(b.prefill_ms_dense, b.prefill_ms_sparse, 2),
            b.gpus_dense
                .zip(b.gpus_sparse)
                .map(|(d, s)| format!("{d} -> {s}"))
                .unwrap_or_else(|| "-".into()),
            pair(
                b.usd_per_million_tokens_dense,
                b.usd_per_million_tokens_sparse,
                3,
            ),
            b.usd_per_month_dense
                .zip(b.usd_per_month_sparse)
                .map(|(d, s)| pair(d, s, 0))
                .unwrap_or_else(|| "-".into()),
            format!(
                "decode {}, prefill {}",
                tag(b.decode_source),
                tag(b.prefill_source)
            ),
        ]);
    }
    out += &format!("whole model (dense -> 2:4):\n{t}\n");
    for l in &a.losses {
        out += &format!("2:4 loses: {l}\n");
    }
    for n in &a.notes {
        out += &format!("note: {n}\n");
    }
    out
}

/// Bars of decode tokens/s, dense and 2:4, per batch size.
fn chart(a: &Audit, path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let max = a
            .batches
            .iter()
            .map(|b| b.tokens_per_s_sparse.max(b.tokens_per_s_dense))
            .fold(1.0, f64::max);
        let n = a.batches.len();
        let mut c = ChartBuilder::on(&root)
            .caption(
                format!("{} on {}: decode tokens/s", a.model, a.gpu.name),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..n as f64, 0.0..max * 1.1)?;
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| {
                a.batches
                    .get(*x as usize)
                    .map(|b| format!("batch {}", b.batch))
                    .unwrap_or_default()
            })
            .y_desc("tokens/s")
            .draw()?;
        for (i, b) in a.batches.iter().enumerate() {
            let x = i as f64;
            c.draw_series([
                Rectangle::new(
                    [(x + 0.1, 0.0), (x + 0.45, b.tokens_per_s_dense)],
                    BLUE.mix(0.6).filled(),
                ),
                Rectangle::new(
                    [(x + 0.55, 0.0), (x + 0.9, b.tokens_per_s_sparse)],
                    RED.mix(0.6).filled(),
                ),
            ])?;
        }
        c.draw_series([Rectangle::new(
            [(0.0, 0.0), (0.0, 0.0)],
            BLUE.mix(0.6).filled(),
        )])?
        .label("dense")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], BLUE.mix(0.6).filled()));
        c.draw_series([Rectangle::new(
            [(0.0, 0.0), (0.0, 0.0)],
            RED.mix(0.6).filled(),
        )])?
        .label("2:4 (SparseFlow)")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], RED.mix(0.6).filled()));
        c.configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow::anyhow!("--svg {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(model: &str) -> Args {
        Args::parse_from([
            "audit",
            "--model",
            model,
            "--gpu",
            "h100",
            "--batch",
            "1",
            "--prompt-tokens",
            "1000",
            "--tokens-per-day",
            "1e9",
        ])
    }

    /// Hand-computed: H100 (3.35 TB/s, 989.4 / 1978.9 TFLOPS), N = K = 4096.
    #[test]
    fn roofline_matches_hand_computation() {
        let h100 = &GPUS[0];
        // M = 1: bytes dense = 4096*4096*2 + (4096 + 4096)*2 = 33_570_816 → / 3.35e12 s.
        let d = roofline_s(h100, 4096, 4096, 1, false);
        assert!((d - 33_570_816.0 / 3.35e12).abs() < 1e-15);
        // 2:4: weight 0.5625 x 33_554_432 = 18_874_368, plus 16_384 → 18_890_752 bytes.
        let s = roofline_s(h100, 4096, 4096, 1, true);
        assert!((s - 18_890_752.0 / 3.35e12).abs() < 1e-15);
        // M = 4096: compute-bound: 2 * 4096^3 = 137_438_953_472 FLOP.
        assert!(
            (roofline_s(h100, 4096, 4096, 4096, false) - 137_438_953_472.0 / 989.4e12).abs()
                < 1e-15
        );
        assert!(
            (roofline_s(h100, 4096, 4096, 4096, true) - 137_438_953_472.0 / 1978.9e12).abs()
                < 1e-15
        );
    }

    #[test]
    fn whole_model_figures_follow_the_formulas() {
        let a = audit(&args("llama3-8b")).unwrap();
        let b = &a.batches[0];
        let h100 = &GPUS[0];
        let cfg = block_config("llama3-8b").unwrap();
        let sum = |m: usize, sparse: bool| -> f64 {
            block_layers(&cfg)
                .iter()
                .map(|l| roofline_s(h100, l.n, l.k, m, sparse))
                .sum::<f64>()
                * 32.0
                + roofline_s(h100, 128_256, 4096, m, false)
        };
        assert!((b.decode_ms_per_step_sparse - sum(1, true) * 1e3).abs() < 1e-9);
        assert!((b.decode_ms_per_step_dense - sum(1, false) * 1e3).abs() < 1e-9);
        assert!((b.prefill_ms_sparse - sum(1000, true) * 1e3).abs() < 1e-9);
        assert!((b.tokens_per_s_sparse - 1.0 / sum(1, true)).abs() < 1e-6);
        assert!(
            (b.usd_per_million_tokens_dense - 2.5 / (b.tokens_per_s_dense * 3600.0) * 1e6).abs()
                < 1e-9
        );
        let want_gpus = (1e9 / 86_400.0 / b.tokens_per_s_sparse).ceil() as u64;
        assert_eq!(b.gpus_sparse, Some(want_gpus.max(1)));
        assert_eq!(
            (b.decode_source, b.prefill_source),
            (Source::Estimated, Source::Estimated)
        );
        // 7 block linears x 32 blocks, dense bf16: 6.98 G params → 13.96 GB, plus 2 x 1.05 GB embeddings/head.
        assert!(
            (a.weight_gb_dense - 16.06).abs() < 0.01,
            "{}",
            a.weight_gb_dense
        );
        assert!(a.weight_gb_sparse < a.weight_gb_dense * 0.65);
    }

    /// A SparseFlow model that keeps some block linears dense (down_proj everywhere, block 1's
    /// q_proj) is audited as stored: those layers count dense in time and memory.
    #[test]
    fn sparseflow_model_layers_left_dense_are_audited_dense() {
        use sparseflow_model::convert::{convert, Options, Silent};
        let dir = std::env::temp_dir().join(format!(
            "sf-audit-model-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let (hf, out) = (dir.join("hf"), dir.join("sf"));
        sparseflow_model::testing::tiny_llama(&hf, 2, 32, 64, false);
        let opts = Options {
            exclude: vec![
                "*.mlp.down_proj.weight".into(),
                "model.layers.1.self_attn.q_proj.weight".into(),
            ],
            ..Options::default()
        };
        convert(&hf, &out, &opts, &mut Silent).unwrap();
        let a = audit(&args(out.to_str().unwrap())).unwrap();
        let h100 = &GPUS[0];
        let cfg = model_shape(out.to_str().unwrap()).unwrap().0;
        let block = block_layers(&cfg);
        let sparse_in = |name: &str| match name {
            "down_proj" => 0,
            "q_proj" => 1,
            _ => 2,
        };
        let step = |m: usize| -> f64 {
            block
                .iter()
                .map(|l| {
                    let c = sparse_in(&l.name) as f64;
                    c * roofline_s(h100, l.n, l.k, m, true)
                        + (2.0 - c) * roofline_s(h100, l.n, l.k, m, false)
                })
                .sum::<f64>()
                + roofline_s(h100, 64, 32, m, false)
        };
        let b = &a.batches[0];
        assert!((b.decode_ms_per_step_sparse - step(1) * 1e3).abs() < 1e-12);
        assert!((b.prefill_ms_sparse - step(1000) * 1e3).abs() < 1e-12);
        let bytes: f64 = block
            .iter()
            .map(|l| {
                let c = sparse_in(&l.name) as f64;
                (l.n * l.k) as f64 * 2.0 * (c * 0.5625 + (2.0 - c))
            })
            .sum::<f64>()
            + 2.0 * (64 * 32) as f64 * 2.0;
        assert!((a.weight_gb_sparse - bytes / 1e9).abs() < 1e-15);
        let down = b.layers.iter().find(|l| l.layer == "down_proj").unwrap();
        assert_eq!(down.sparse_blocks, 0);
        assert!(render(&a).contains("down_proj (2:4 in 0/2 blocks)"));
        assert!(
            a.notes
                .iter()
                .any(|n| n.contains("11 of 14 block linears are 2:4")),
            "{:?}",
            a.notes
        );
        // A preset or a plain config still assumes every block linear is 2:4.
        let plain = audit(&args("llama3-8b")).unwrap();
        assert!(plain.batches[0]
            .layers
            .iter()
            .all(|l| l.sparse_blocks == 32));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn auto_recognises_gpus_by_name_and_needs_one() {
        assert_eq!(gpu_key_for_name("NVIDIA H200"), Some("h200"));
        assert_eq!(gpu_key_for_name("NVIDIA H100 80GB HBM3"), Some("h100"));
        assert_eq!(gpu_key_for_name("NVIDIA A100-SXM4-80GB"), Some("a100"));
        assert_eq!(gpu_key_for_name("NVIDIA L40S"), Some("l40s"));
        assert_eq!(gpu_key_for_name("NVIDIA GeForce RTX 4090"), Some("rtx4090"));
        assert_eq!(gpu_key_for_name("Tesla T4"), None);
        // Without a GPU (CI), auto is a clear error that says what to do instead.
        if crate::bench::gpu::Gpu::open().is_err() {
            let mut a = args("llama3-8b");
            a.gpu = "auto".into();
            let err = format!("{:#}", audit(&a).unwrap_err());
            assert!(
                err.contains("--gpu auto needs a GPU; or name one with --gpu"),
                "{err}"
            );
        }
    }

    #[test]
    fn measured_rows_replace_estimates_and_losses_are_reported() {
        let dir = std::env::temp_dir().join(format!("sf-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bench = dir.join("bench.json");
        let row = |n: usize, k: usize, m: usize, s: f64, d: f64| {
            serde_json::json!({"layer": "x", "n": n, "k": k, "m": m,
            "measurements": [{"contender": "sparseflow", "time": {"median_us": s}}, {"contender": "cublas", "time": {"median_us": d}}, {"contender": "cublas_gemmex", "time": {"median_us": d * 0.9}}]})
        };
        let cfg = block_config("llama3-8b").unwrap();
        let rows: Vec<Value> = block_layers(&cfg)
            .iter()
            .map(|l| row(l.n, l.k, 1, 10.0, 20.0))
            .chain([row(4096, 4096, 1000, 50.0, 40.0)])
            .collect();
        std::fs::write(&bench, serde_json::json!({"rows": rows}).to_string()).unwrap();
        let mut a = args("llama3-8b");
        a.bench = vec![bench];
        let a = audit(&a).unwrap();
        let q = &a.batches[0].layers[0];
        assert_eq!(
            (q.source, q.sparse_us, q.dense_us),
            (Source::Measured, 10.0, 18.0)
        );
        assert_eq!(a.batches[0].decode_source, Source::Measured);
        assert!(
            a.losses
                .iter()
                .any(|l| l.contains("M=1000") && l.contains("Measured")),
            "{:?}",
            a.losses
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
