//! `sparseflow compile`: fill the on-disk kernel cache ahead of time.
//!
//! For every (layer shape, M, dtype, epilogue) it asks the compiler which kernel it would run
//! (`plan_layer`: fuse-epilogue + select-tiles for the target), generates that kernel and
//! compiles it with NVRTC into `$SPARSEFLOW_CACHE_DIR`, so a deployment's first request does
//! not pay for compilation. Shapes that map to the same kernel are compiled once.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use sparseflow_codegen::{generate, Compiler, KernelSpec};
use sparseflow_core::{DType, EpilogueKind};
use sparseflow_ir::plan_layer;

use super::table::Table;
use crate::bench::shapes::{block_config, block_layers, parse_m_list, parse_shape, unique_layers};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  sparseflow compile --target sm_90a --model llama3-8b --m 1,16,256,4096\n  \
    sparseflow compile --target sm_80 --shape 4096,4096 --m 1,2048 --dtype bf16 --epilogue bias_gelu"
)]
pub struct Args {
    /// GPU target: sm_80, sm_86, sm_89 or sm_90a.
    #[arg(long)]
    target: String,
    /// Model preset whose linear layers to compile for (llama3-8b, llama2-7b, mistral-7b,
    /// llama3-70b-tp8, bert-base).
    #[arg(long)]
    model: Option<String>,
    /// Extra layer shape N,K (out_features,in_features); repeatable.
    #[arg(long = "shape")]
    shapes: Vec<String>,
    /// Token counts (M) to plan for, comma separated. The runtime plans per M bucket
    /// (1, 2, 4, 8, 16, then powers of two), so list the buckets you serve.
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
    let epilogues = epilogues(&args.epilogue)?;

    // Plan every combination; identical kernels are compiled once.
    let mut kernels: BTreeMap<String, (KernelSpec, Vec<String>)> = BTreeMap::new();
    for dtype in dtypes(&args.dtype) {
        for &epilogue in &epilogues {
            for layer in &layers {
                for &m in &ms {
                    let plan = plan_layer(m, layer.n, layer.k, dtype, epilogue, &args.target)
                        .with_context(|| format!("planning {} at M={m}", layer.name))?;
                    let spec = KernelSpec::from_plan(&plan, dtype, &args.target)?;
                    let name = generate(&spec)?.name;
                    let use_site = format!("{} {}×{} M={m}", layer.name, layer.n, layer.k);
                    kernels
                        .entry(name)
                        .or_insert_with(|| (spec, Vec::new()))
                        .1
                        .push(use_site);
                }
            }
        }
    }

    let compiler = Compiler::new().context(
        "NVRTC is needed to compile kernels (install CUDA 13, or `pip install nvidia-cuda-nvrtc==13.0.*` and put its lib/ on LD_LIBRARY_PATH)",
    )?;
    let progress = indicatif::ProgressBar::new(kernels.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} kernels {msg}")
            .expect("static template"),
    );
    let mut rows = Vec::new();
    for (name, (spec, used_by)) in kernels {
        progress.set_message(name.clone());
        let compiled = compiler.compile(&generate(&spec)?)?;
        progress.inc(1);
        rows.push(KernelRow {
            kernel: name,
            family: spec.family.name().to_string(),
            dtype: spec.dtype,
            epilogue: spec.epilogue.name(),
            tiles: format!(
                "{}x{}x{} w{} s{} sk{}",
                spec.tile_m, spec.tile_n, spec.tile_k, spec.warps, spec.stages, spec.split_k
            ),
            used_by,
            from_cache: compiled.from_cache,
            compile_ms: compiled.compile_ms,
        });
    }
    progress.finish_and_clear();

    if args.json {
        let report = serde_json::json!({
            "target": args.target,
            "cache_dir": compiler.cache_dir(),
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
        "source",
        "ms",
    ]);
    for r in &rows {
        t.row(vec![
            r.kernel.clone(),
            r.family.clone(),
            r.tiles.clone(),
            r.used_by.len().to_string(),
            if r.from_cache { "cache" } else { "nvrtc" }.into(),
            format!("{:.0}", r.compile_ms),
        ]);
    }
    print!("{t}");
    let compiled = rows.iter().filter(|r| !r.from_cache).count();
    println!(
        "\n{} kernels for {}: {compiled} compiled ({:.1} s), {} already cached; cache: {}",
        rows.len(),
        args.target,
        rows.iter().map(|r| r.compile_ms).sum::<f64>() / 1e3,
        rows.len() - compiled,
        compiler.cache_dir().display()
    );
    Ok(ExitCode::SUCCESS)
}
