//! `sparseflow`: the command line face of SparseFlow.
//!
//! One subcommand per file under `cmd/`; this file only parses arguments and
//! turns errors into a message on stderr plus a non-zero exit code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod cmd;
mod tune;

/// SparseFlow: fast 2:4 structured sparsity for transformer inference on NVIDIA tensor cores.
#[derive(Parser)]
#[command(name = "sparseflow", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole pipeline (prune → validate → compress → reference GEMM) on a built-in
    /// Llama-style layer set. Needs no GPU and no download.
    Demo(cmd::demo::Args),
    /// Parse, verify and transform SparseFlow IR, like `mlir-opt`.
    Opt(cmd::opt::Args),
    /// Compile kernels ahead of time into the on-disk kernel cache.
    Compile(cmd::compile::Args),
    /// Time SparseFlow against cuBLAS dense and cuSPARSELt on the same shapes.
    Benchmark(cmd::benchmark::Args),
    /// Measure the cost model's best configurations of every kernel family on this GPU and
    /// write the winners to a tuning table that planning consults first.
    Tune(cmd::tune::Args),
    /// Convert a Hugging Face checkpoint into a 2:4 SparseFlow model directory, with a
    /// per-layer report.
    Convert(cmd::convert::Args),
    /// Estimate (or, with benchmark JSON, measure) what 2:4 buys a model on a GPU: memory,
    /// decode and prefill time, tokens/s, GPUs needed, cost.
    Audit(cmd::audit::Args),
}

/// `sparseflow-convert ARGS` / `sparseflow-audit ARGS` (a link or copy of this binary under
/// that name) are `sparseflow convert ARGS` / `sparseflow audit ARGS`.
fn args() -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let name = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("");
    if let Some(sub) = name
        .strip_prefix("sparseflow-")
        .filter(|s| matches!(*s, "convert" | "audit"))
    {
        let sub = sub.into();
        args[0] = "sparseflow".into();
        args.insert(1, sub);
    }
    args
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(args());
    let result = match cli.command {
        Command::Demo(args) => cmd::demo::run(args),
        Command::Opt(args) => cmd::opt::run(args),
        Command::Compile(args) => cmd::compile::run(args),
        Command::Benchmark(args) => cmd::benchmark::run(args),
        Command::Tune(args) => cmd::tune::run(args),
        Command::Convert(args) => cmd::convert::run(args),
        Command::Audit(args) => cmd::audit::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
