//! `sparseflow convert`: a Hugging Face checkpoint → a SparseFlow model directory.
//!
//! The engine (selection, 2:4 detection, chunked pruning, streaming writes, safe output) is
//! `sparseflow_model::convert`; this file is the command line: arguments, the progress bar,
//! the report table and `--json`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use sparseflow_core::{DType, PruneMethod};
use sparseflow_model::convert::{self, Method, Options, OutputFormat, Progress, Report};
use sparseflow_model::{tp, MANIFEST};

use super::table::Table;

#[derive(Parser)]
#[command(after_long_help = MEMORY_NOTE)]
pub struct Args {
    /// A Hugging Face model directory (config.json + model.safetensors, or shards with
    /// model.safetensors.index.json) or one .safetensors file. Never modified.
    pub input: PathBuf,
    /// Output directory (created; an existing one needs --force).
    #[arg(short, long)]
    pub output: PathBuf,
    /// What to write: a SparseFlow model, plain dense safetensors of the pruned weights, or
    /// compressed-tensors sparse-24-bitmask (values + packed mask per layer).
    #[arg(long, value_enum, default_value_t = FormatArg::Sparseflow)]
    pub format: FormatArg,
    /// How weights that are not 2:4 yet are pruned: magnitude, or an activation-aware method
    /// (wanda, sparsegpt, sparsegpt-refine; see docs/ACCURACY.md) that needs --calibration.
    #[arg(long, value_enum, default_value_t = MethodArg::Magnitude)]
    pub method: MethodArg,
    /// Calibration file for --method wanda|sparsegpt|sparsegpt-refine: the per-layer
    /// ACTIVATIONS form (one float tensor [tokens, in_features] per pruned layer, named by its
    /// module path, e.g. model.layers.0.mlp.down_proj). Token ids are not read here (that
    /// would mean running the model): turn texts or token ids into activations first with
    /// python's sparseflow.calibration_file.write_calibration_from_model(path, model, ...).
    #[arg(long, value_name = "FILE")]
    pub calibration: Option<PathBuf>,
    /// Sparsify only tensors matching one of these globs (`*` crosses dots), instead of the
    /// default: the `.weight` matrices of numbered transformer blocks.
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Keep tensors matching these globs dense.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Output dtype; required for fp32 or mixed-dtype checkpoints (fp16/bf16 keep theirs).
    #[arg(long, value_enum)]
    pub dtype: Option<DTypeArg>,
    /// Also prune weights that are almost 2:4 (a few violating groups); otherwise they are
    /// reported and kept dense.
    #[arg(long)]
    pub prune: bool,
    /// Replace an existing output, only if it is a SparseFlow model directory.
    #[arg(long)]
    pub force: bool,
    /// Tensor-parallel output for N ranks: each rank's slices of the Llama-style layers
    /// (q/k/v, gate/up split along N; o, down along K on multiples of 8) in a file of its own,
    /// the split recorded in sparseflow.json (docs/FORMAT.md). The input may also be an
    /// unsharded SparseFlow model, which is then only sharded.
    #[arg(long, value_name = "N")]
    pub tp: Option<usize>,
    /// No progress bar and no table.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the report as JSON on stdout (the table goes away).
    #[arg(long)]
    pub json: bool,
}

const MEMORY_NOTE: &str = "Memory: tensors are memory-mapped and converted in row chunks of at most 32 MB, \
so peak anonymous memory (RssAnon, not counting the page cache of the mapped files) stays far below \
the bound 2 x largest tensor + 256 MB: measured 82 MB for a 32 MB largest tensor (the test \
convert_memory_is_bounded prints the figure; the --json report carries peak_rss_anon_bytes).";

#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Sparseflow,
    Dense,
    /// compressed-tensors sparse-24-bitmask, for tools that read that format.
    #[value(name = "sparse-24-bitmask")]
    Sparse24Bitmask,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum MethodArg {
    Magnitude,
    Wanda,
    #[value(name = "sparsegpt")]
    SparseGpt,
    #[value(name = "sparsegpt-refine")]
    SparseGptRefine,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DTypeArg {
    Fp16,
    Bf16,
}

/// An indicatif bar over input bytes, with bytes/s and ETA.
struct Bar(Option<ProgressBar>);

impl Progress for Bar {
    fn phase(&mut self, name: &str, total: u64) {
        if let Some(old) = self.0.take() {
            old.finish_and_clear();
        }
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(name.to_string());
        self.0 = Some(bar);
    }

    fn advance(&mut self, bytes: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(bytes);
        }
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    if let Some(size) = args.tp {
        if !matches!(args.format, FormatArg::Sparseflow) {
            anyhow::bail!(
                "--tp writes a SparseFlow model: drop --format or use --format sparseflow"
            );
        }
        if args.input.join(MANIFEST).is_file() {
            // Already a SparseFlow model: only shard it.
            let done = tp::shard_model(&args.input, &args.output, size, args.force)
                .with_context(|| format!("shard {}", args.input.display()))?;
            if !args.quiet {
                println!(
                    "wrote {} (tensor-parallel, {size} ranks)",
                    done.path.display()
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
    }
    let opts = Options {
        method: match args.method {
            MethodArg::Magnitude => Method::Magnitude,
            MethodArg::Wanda => Method::Calibrated(PruneMethod::Wanda),
            MethodArg::SparseGpt => Method::Calibrated(PruneMethod::SparseGpt),
            MethodArg::SparseGptRefine => Method::Calibrated(PruneMethod::SparseGptRefine),
        },
        calibration: args.calibration,
        format: match args.format {
            FormatArg::Sparseflow => OutputFormat::Sparseflow,
            FormatArg::Dense => OutputFormat::Dense,
            FormatArg::Sparse24Bitmask => OutputFormat::Bitmask24,
        },
        include: args.include,
        exclude: args.exclude,
        dtype: args.dtype.map(|d| match d {
            DTypeArg::Fp16 => DType::F16,
            DTypeArg::Bf16 => DType::BF16,
        }),
        prune: args.prune,
        force: args.force,
    };
    let mut bar = Bar(None);
    let mut silent = convert::Silent;
    let progress: &mut dyn Progress = if args.quiet || args.json {
        &mut silent
    } else {
        &mut bar
    };
    let report = match args.tp {
        None => convert::convert(&args.input, &args.output, &opts, progress)
            .with_context(|| format!("convert {}", args.input.display()))?,
        Some(size) => {
            // Convert beside the output, shard from there, and remove the unsharded copy
            // whatever happens (the output itself appears complete or not at all).
            let name = args
                .output
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            let unsharded = args.output.with_file_name(format!(
                ".{}.unsharded-{}",
                name.unwrap_or_else(|| "model".into()),
                std::process::id()
            ));
            let result = convert::convert(&args.input, &unsharded, &opts, progress)
                .with_context(|| format!("convert {}", args.input.display()))
                .and_then(|report| {
                    tp::shard_model(&unsharded, &args.output, size, args.force)
                        .with_context(|| {
                            format!("shard {} over {size} ranks", args.input.display())
                        })
                        .map(|done| (report, done))
                });
            let _ = std::fs::remove_dir_all(&unsharded);
            let (mut report, done) = result?;
            report.output = done.path.display().to_string();
            report.notes.push(format!(
                "tensor-parallel over {size} ranks: q/k/v, gate/up split along N, o, down along K; one file per rank (docs/FORMAT.md)"
            ));
            report
        }
    };
    if let Some(b) = bar.0.take() {
        b.finish_and_clear();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !args.quiet {
        print!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

fn mb(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / 1e6)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

/// The per-tensor table, totals and notes.
pub fn render(r: &Report) -> String {
    let mut t = Table::new(&[
        "tensor",
        "shape",
        "dtype",
        "status",
        "sparsity",
        "rel err",
        "kept |w|",
        "MB before",
        "MB after",
        "ms",
        "reason",
    ]);
    for row in &r.rows {
        t.row(vec![
            row.name.clone(),
            format!("{:?}", row.shape),
            row.dtype.clone(),
            row.status.label().into(),
            opt(row.sparsity, 3),
            opt(row.rel_error, 4),
            opt(row.kept_magnitude, 3),
            mb(row.bytes_before),
            mb(row.bytes_after),
            format!("{:.1}", row.seconds * 1e3),
            row.reason.clone(),
        ]);
    }
    let s = &r.totals;
    let mut out = format!("{t}\n");
    out += &format!(
        "{} tensors: {} sparse ({} pruned, {} already 2:4, {} imported), {} almost 2:4 kept dense, {} dense\n",
        s.tensors, s.sparse_layers, s.pruned, s.already_24, s.imported, s.almost_kept_dense, s.dense
    );
    out += &format!(
        "bytes: {} MB -> {} MB ({:.3}x); sparse layers {} MB -> {} MB\n",
        mb(s.bytes_before),
        mb(s.bytes_after),
        s.ratio,
        mb(s.sparse_bytes_before),
        mb(s.sparse_bytes_after)
    );
    if let Some(peak) = r.peak_rss_anon_bytes {
        out += &format!(
            "peak RssAnon {} MB (largest tensor {} MB); {:.2} s\n",
            mb(peak),
            mb(r.largest_tensor_bytes),
            r.seconds
        );
    }
    for note in &r.notes {
        out += &format!("note: {note}\n");
    }
    out += &format!("wrote {} ({} format, {})\n", r.output, r.format, r.dtype);
    out
}
