//! `sparseflow demo`: the whole CPU pipeline on a built-in Llama-style layer set.
//!
//! For every layer: seeded random weight → magnitude prune → validate → compress → diff report
//! (with an activation sample) → sparse reference GEMM (compressed form) vs dense reference GEMM
//! vs the float64 oracle. No GPU, no download; it runs in seconds.
//!
//! The times are those of the CPU reference implementations (exact, not tuned), so the demo
//! makes no speed claim: `sparseflow benchmark` on a GPU measures speed.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use half::{bf16, f16};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use sparseflow_core::{
    dense_gemm, diff_report, oracle_gemm_f64, prune_magnitude, sparse_gemm, validate, DType,
    DiffReport, Element, EpilogueKind, Sparse24,
};

use super::table::Table;

#[derive(clap::Args)]
pub struct Args {
    /// Divide Llama-3-8B's layer shapes (hidden 4096, intermediate 14336, kv 1024) by this.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    scale: u32,
    /// Tokens per forward pass (M).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    tokens: u32,
    /// Weight and activation dtype.
    #[arg(long, default_value = "f16", value_parser = ["f16", "bf16", "f32"])]
    dtype: String,
    /// Seed of the random weights and activations.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print JSON (one object with per-layer rows and totals) instead of the table.
    #[arg(long)]
    json: bool,
}

/// One Llama decoder layer's linears: (name, N = out_features, K = in_features, epilogue).
/// `gate_proj` carries the MLP's SiLU as a fused epilogue, as the compiler would fuse it.
fn layer_set(scale: usize) -> Vec<(&'static str, usize, usize, EpilogueKind)> {
    let (hidden, inter, kv) = (4096 / scale, 14336 / scale, 1024 / scale);
    let (h, i, kv) = (hidden.max(4), inter.max(4), kv.max(4));
    vec![
        ("q_proj", h, h, EpilogueKind::None),
        ("k_proj", kv, h, EpilogueKind::None),
        ("v_proj", kv, h, EpilogueKind::None),
        ("o_proj", h, h, EpilogueKind::None),
        ("gate_proj", i, h, EpilogueKind::Silu),
        ("up_proj", i, h, EpilogueKind::None),
        ("down_proj", h, i, EpilogueKind::None),
    ]
}

#[derive(Serialize)]
struct LayerRow {
    layer: &'static str,
    n: usize,
    k: usize,
    epilogue: &'static str,
    /// The same diff report (same keys) as `SparseLinear.from_dense(..., return_diff=True)`,
    /// with the output error measured on the demo's activation sample.
    #[serde(flatten)]
    diff: DiffReport,
    /// Max |sparse reference − float64 oracle| over the output: the kernel-level error.
    max_error_vs_oracle: f64,
    prune_ms: f64,
    compress_ms: f64,
    /// CPU reference loops (exact, untuned), not a speed comparison.
    dense_reference_ms: f64,
    sparse_reference_ms: f64,
}

#[derive(Serialize)]
struct Report {
    dtype: DType,
    tokens: usize,
    seed: u64,
    threads: usize,
    layers: Vec<LayerRow>,
    total_bytes_dense: usize,
    total_bytes_sparse: usize,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let report = match args.dtype.as_str() {
        "f16" => build_report::<f16>(&args)?,
        "bf16" => build_report::<bf16>(&args)?,
        _ => build_report::<f32>(&args)?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn build_report<T: Element>(args: &Args) -> Result<Report> {
    let m = args.tokens as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let set = layer_set(args.scale as usize);
    // On stderr, and hidden when it is not a terminal (so --json output stays clean).
    let pb = ProgressBar::new(set.len() as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    let mut layers = Vec::new();
    for (name, n, k, epilogue) in set {
        pb.set_message(format!("{name} {n}×{k}: prune, compress, GEMMs"));
        layers.push(run_layer::<T>(&mut rng, name, n, k, m, epilogue).with_context(|| name)?);
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(Report {
        dtype: T::DTYPE,
        tokens: m,
        seed: args.seed,
        threads: rayon::current_num_threads(),
        total_bytes_dense: layers.iter().map(|l| l.diff.bytes_dense).sum(),
        total_bytes_sparse: layers.iter().map(|l| l.diff.bytes_sparse).sum(),
        layers,
    })
}

/// Seeded values with the spread of a Kaiming-initialised linear layer.
fn random<T: Element>(rng: &mut ChaCha8Rng, len: usize, scale: f32) -> Vec<T> {
    (0..len)
        .map(|_| T::from_f32(rng.random_range(-scale..scale)))
        .collect()
}

fn timed<R>(f: impl FnOnce() -> R) -> (R, f64) {
    let start = Instant::now();
    let r = f();
    (r, start.elapsed().as_secs_f64() * 1e3)
}

fn run_layer<T: Element>(
    rng: &mut ChaCha8Rng,
    layer: &'static str,
    n: usize,
    k: usize,
    m: usize,
    epilogue: EpilogueKind,
) -> Result<LayerRow> {
    let w = random::<T>(rng, n * k, 1.0 / (k as f32).sqrt());
    let x = random::<T>(rng, m * k, 1.0);
    let (pruned, prune_ms) = timed(|| prune_magnitude(&w, n, k));
    let pruned = pruned?;
    validate(&pruned, n, k)?;
    let (sparse, compress_ms) = timed(|| Sparse24::compress(&pruned, n, k));
    let sparse = sparse?;
    let diff = diff_report(&w, &sparse, Some((&x, m)))?;
    let (dense_y, dense_reference_ms) = timed(|| dense_gemm(&x, m, &pruned, n, k, None, epilogue));
    dense_y?;
    let (sparse_y, sparse_reference_ms) = timed(|| sparse_gemm(&x, m, &sparse, None, epilogue));
    let sparse_y = sparse_y?;
    let oracle = oracle_gemm_f64(&x, m, &pruned, n, k, None, epilogue)?;
    let max_error_vs_oracle = sparse_y
        .iter()
        .zip(&oracle)
        .map(|(a, b)| (a.to_f64() - b).abs())
        .fold(0.0, f64::max);
    Ok(LayerRow {
        layer,
        n,
        k,
        epilogue: epilogue.name(),
        diff,
        max_error_vs_oracle,
        prune_ms,
        compress_ms,
        dense_reference_ms,
        sparse_reference_ms,
    })
}

fn print_table(r: &Report) {
    println!(
        "SparseFlow demo — Llama-style layer set, {} tokens, {}, CPU reference ({} threads)\n",
        r.tokens, r.dtype, r.threads
    );
    let mut t = Table::new(&[
        "layer",
        "N×K",
        "epilogue",
        "sparsity",
        "kept |W|",
        "W rel err",
        "Y rel err",
        "Y err vs f64",
        "dense KiB",
        "2:4 KiB",
        "prune ms",
        "compress ms",
    ]);
    for l in &r.layers {
        t.row(vec![
            l.layer.to_string(),
            format!("{}×{}", l.n, l.k),
            l.epilogue.to_string(),
            format!("{:.1}%", 100.0 * l.diff.sparsity),
            format!("{:.1}%", 100.0 * l.diff.kept_magnitude),
            format!("{:.3}", l.diff.rel_fro_error),
            format!("{:.3}", l.diff.output_rel_error.unwrap_or(f64::NAN)),
            format!("{:.1e}", l.max_error_vs_oracle),
            format!("{:.0}", l.diff.bytes_dense as f64 / 1024.0),
            format!("{:.0}", l.diff.bytes_sparse as f64 / 1024.0),
            format!("{:.2}", l.prune_ms),
            format!("{:.2}", l.compress_ms),
        ]);
    }
    t.row(vec![
        "total".into(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        format!("{:.0}", r.total_bytes_dense as f64 / 1024.0),
        format!("{:.0}", r.total_bytes_sparse as f64 / 1024.0),
        String::new(),
        String::new(),
    ]);
    print!("{t}");
    println!(
        "\nWeights: {:.1}% of dense bytes. Errors: W/Y rel err = ‖dense − 2:4‖/‖dense‖ (what pruning \
         costs); 'Y err vs f64' = max |CPU 2:4 GEMM − float64 oracle| (what the kernel adds).",
        100.0 * r.total_bytes_sparse as f64 / r.total_bytes_dense as f64
    );
    println!(
        "Speed is not measured here: the CPU reference GEMMs are exact, untuned loops. \
         `sparseflow benchmark` on a GPU compares SparseFlow's kernels with the best dense path \
         and cuSPARSELt."
    );
}
