//! `sparseflow compile`: fill the on-disk kernel cache ahead of time.
//!
//! For every (layer shape, M, dtype, epilogue) it asks the compiler which kernel it would run
//! (`Registry::plan`, the runtime's own planning function: M at its bucket, fuse-epilogue +
//! select-tiles over the registered families for the target, a tuning table's measured winner
//! before the cost model; the table's "chosen by" column says which), generates that kernel and
//! compiles it with NVRTC into `$SPARSEFLOW_CACHE_DIR`, so a deployment's first request does
//! not pay for compilation. Shapes that map to the same kernel are compiled once.
//!
//! Kernels compile in parallel (rayon; one NVRTC program per kernel, and NVRTC is safe to
//! call from several threads on distinct programs) with a progress bar on stderr (hidden
//! with `--quiet` or when stderr is not a terminal). N, K and M beyond the kernels' 32-bit
//! limit are refused before anything is planned.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;
use serde::Serialize;
use sparseflow_codegen::{Compiler, GeneratedKernel, Registry};
use sparseflow_core::{DType, EpilogueKind};
use sparseflow_ir::{check_dim, target, LayerProblem};

use super::table::Table;
use crate::bench::shapes::{
    block_config, block_layers, parse_m_list, parse_shape, unique_layers, Layer,
};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  sparseflow compile --target sm_90a --model llama3-8b --m 1,16,256,4096\n  \
    sparseflow compile --target sm_80 --shape 4096,4096 --m 1,2048 --dtype bf16 --epilogue bias_gelu"
)]
pub struct Args {
    /// GPU target preset: sm_80, sm_86, sm_89, sm_90a (H100) or h200 (`sparseflow opt
    /// --list-targets`). Plans with its numbers and compiles for its architecture.
    #[arg(long)]
    target: String,
    /// Model preset whose linear layers to compile for (llama3-8b, llama2-7b, mistral-7b,
    /// llama3-70b-tp8, bert-base).
    #[arg(long)]
    model: Option<String>,
    /// Extra layer shape N,K (out_features,in_features); repeatable.
    #[arg(long = "shape")]
    shapes: Vec<String>,
    /// Token counts (M) to prepare, comma separated. Each is planned at its M bucket (the next
    /// power of two), as the runtime plans it, so `--m 3` compiles exactly the kernel a
    /// 3-token call runs.
    #[arg(long, default_value = "1,2,4,8,16,32,64,128,256,512,1024,2048,4096")]
    m: String,
    /// Dtype(s): fp16, bf16 or both.
    #[arg(long, default_value = "fp16", value_parser = ["fp16", "bf16", "both"])]
    dtype: String,
    /// Epilogue(s), comma separated, or `all`.
    #[arg(long, default_value = "none")]
    epilogue: String,
    /// Print a JSON report instead of the table.
    #[arg(long)]
    json: bool,
    /// No progress bar and no summary on stderr.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Serialize)]
struct KernelRow {
    kernel: String,
    family: String,
    dtype: DType,
    epilogue: &'static str,
    tiles: String,
    /// Layer shapes and M values served by this kernel.
    used_by: Vec<String>,
    /// Which source chose it for them: `tuned` (a tuning table's measurement) and/or `cost
    /// model`.
    chosen_by: Vec<&'static str>,
    from_cache: bool,
    compile_ms: f64,
}

fn dtypes(arg: &str) -> Vec<DType> {
    match arg {
        "fp16" => vec![DType::F16],
        "bf16" => vec![DType::BF16],
        _ => vec![DType::F16, DType::BF16],
    }
}

fn epilogues(arg: &str) -> Result<Vec<EpilogueKind>> {
    if arg == "all" {
        return Ok(EpilogueKind::all().collect());
    }
    arg.split(',')
        .map(|name| EpilogueKind::from_name(name.trim()).map_err(Into::into))
        .collect()
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut layers = Vec::new();
    if let Some(model) = &args.model {
        layers.extend(unique_layers(&block_layers(&block_config(model)?)));
    }
    for s in &args.shapes {
        layers.push(parse_shape(s)?);
    }
    if layers.is_empty() {
        bail!("nothing to compile: give --model PRESET and/or --shape N,K");
    }
    let ms = parse_m_list(&args.m)?;
    check_dims(&layers, &ms)?;
    let epilogues = epilogues(&args.epilogue)?;
    let target = target(&args.target)?;
    let registry = Registry::builtin();

    // Plan every combination; identical kernels are compiled once.
    let mut kernels: BTreeMap<String, (GeneratedKernel, Vec<String>, Vec<&'static str>)> =
        BTreeMap::new();
    for dtype in dtypes(&args.dtype) {
        for &epilogue in &epilogues {
            for layer in &layers {
                for &m in &ms {
                    let problem = LayerProblem {
                        m: m as u64,
                        n: layer.n as u64,
                        k: layer.k as u64,
                        dtype,
                        epilogue,
                    };
                    let planned = registry
                        .plan(&problem, target)
                        .with_context(|| format!("planning {} at M={m}", layer.name))?;
                    let kernel = registry.generate(&planned.spec)?;
                    let use_site = format!("{} {}×{} M={m}", layer.name, layer.n, layer.k);
                    let source = planned.plan.source.label();
                    let (_, used_by, chosen_by) = kernels
                        .entry(kernel.name.clone())
                        .or_insert_with(|| (kernel, Vec::new(), Vec::new()));
                    used_by.push(use_site);
                    if !chosen_by.contains(&source) {
                        chosen_by.push(source);
                    }
                }
            }
        }
    }

    // The error says what is missing and how to install it; no second copy of the hint here.
    let compiler = Compiler::new().context("cannot compile kernels")?;
    let threads = rayon::current_num_threads();
    let progress = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        // Draws only when stderr is a terminal; the summary line below is printed either way.
        indicatif::ProgressBar::new(kernels.len() as u64).with_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} kernels [{elapsed_precise}, ETA {eta}] {wide_msg}",
            )
            .map_err(|e| anyhow!("progress bar template: {e}"))?,
        )
    };
    progress.enable_steady_tick(Duration::from_millis(200));
    if !args.quiet {
        // A first line even where the bar is hidden (not a terminal: CI logs, pipes).
        eprintln!(
            "compiling {} kernels for {} on {threads} threads",
            kernels.len(),
            args.target
        );
    }
    let start = Instant::now();
    let kernels: Vec<_> = kernels.into_values().collect();
    // Ordered like the map (by name), whatever order the threads finish in.
    let rows = kernels
        .into_par_iter()
        .map(|(kernel, used_by, chosen_by)| {
            let compiled = compiler.compile(&kernel)?;
            progress.set_message(kernel.name.clone());
            progress.inc(1);
            let (spec, c) = (&kernel.spec, &kernel.spec.config);
            Ok(KernelRow {
                family: c.family.to_string(),
                dtype: spec.dtype,
                epilogue: spec.epilogue.name(),
                tiles: format!(
                    "{}x{}x{} w{} s{} sk{}",
                    c.tile_m, c.tile_n, c.tile_k, c.warps, c.stages, c.split_k
                ),
                kernel: kernel.name,
                used_by,
                chosen_by,
                from_cache: compiled.from_cache,
                compile_ms: compiled.compile_ms,
            })
        })
        .collect::<Result<Vec<KernelRow>>>();
    progress.finish_and_clear();
    let rows = rows?;
    let wall_s = start.elapsed().as_secs_f64();
    let compiled = rows.iter().filter(|r| !r.from_cache).count();
    let summary = format!(
        "{} kernels for {}: {compiled} compiled ({:.1} s of NVRTC time, {wall_s:.1} s wall on {threads} threads), {} already cached; cache: {}",
        rows.len(),
        args.target,
        rows.iter().map(|r| r.compile_ms).sum::<f64>() / 1e3,
        rows.len() - compiled,
        compiler.cache_dir().display()
    );
    if !args.quiet {
        eprintln!("{summary}");
    }

    if args.json {
        let report = serde_json::json!({
            "target": args.target,
            "cache_dir": compiler.cache_dir(),
            "threads": threads,
            "wall_s": wall_s,
            "kernels": rows,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&[
        "kernel",
        "family",
        "tiles (m×n×k, warps, stages, split-k)",
        "uses",
        "chosen by",
        "source",
        "ms",
    ]);
    for r in &rows {
        t.row(vec![
            r.kernel.clone(),
            r.family.clone(),
            r.tiles.clone(),
            r.used_by.len().to_string(),
            r.chosen_by.join(", "),
            if r.from_cache { "cache" } else { "nvrtc" }.into(),
            format!("{:.0}", r.compile_ms),
        ]);
    }
    print!("{t}");
    Ok(ExitCode::SUCCESS)
}

/// Refuses N, K or M the kernels cannot index (32-bit), naming the layer and the limit.
fn check_dims(layers: &[Layer], ms: &[usize]) -> Result<()> {
    for layer in layers {
        for (name, value) in [("N", layer.n), ("K", layer.k)] {
            check_dim(name, value as u64).map_err(|why| {
                anyhow!(
                    "layer {} ({}×{}): {why}; the runtime refuses it",
                    layer.name,
                    layer.n,
                    layer.k
                )
            })?;
        }
    }
    for &m in ms {
        check_dim("M", m as u64)
            .map_err(|why| anyhow!("--m: {why}; the runtime refuses it (split the batch)"))?;
    }
    Ok(())
}
