//! `sparseflow tune`: measures, on the GPU at hand, the cost model's best few configurations of
//! every kernel family for each (shape, M bucket, dtype, epilogue class) and writes the winners
//! to a tuning table that planning consults before its cost model (`sparseflow_ir::tuning`).
//! Resumable: cases the table already holds for this GPU are skipped, and the table is
//! rewritten (atomically) after every case. The logic is `crate::tune`'s; this file is
//! arguments and orchestration.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use cudarc::driver::sys;
use half::{bf16, f16};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sparseflow_codegen::Compiler;
use sparseflow_core::{DType, EpilogueKind};
use sparseflow_ir::tuning::{ConfigRecord, TuningEntry};
use sparseflow_ir::{check_dim, Target, TuningTable};
use sparseflow_runtime::Context;

use super::table::Table;
use crate::bench::gpu::{self, Gpu, GpuElement, TimeCfg};
use crate::bench::output;
use crate::bench::shapes::{
    block_config, block_layers, parse_m_list, parse_shape, unique_layers, Layer,
};
use crate::bench::timing::TimingArgs;
use crate::tune::gpu::{measure_case, precompile, Bench, Weights};
use crate::tune::{
    candidates, cases, cost_model_pick, entry, families as tune_families, inflight_path,
    merge_faster, pending, read_inflight, with_sibling_winner, Case, Watchdog,
};

const AFTER_HELP: &str = "\
Each case is one layer shape at one M bucket (M is rounded up to the next power of two, the
bucket planning uses), one dtype and one epilogue class (plain: no epilogue; fused: any other,
measured with the one --epilogue names). Its candidates are the cost model's best --top-k
configurations of every registered family that can run that M on this GPU, whatever the cost
model thinks of the family there, plus each family's best of every token-tile height its top
--top-k lacks (the estimate ranks token tiles by compute; at a few dozen tokens the weight
stream decides). Each is compiled (NVRTC, disk cache), run once and checked
against a float64 CPU reference (a wrong or failing configuration is recorded, never a
winner), then timed as `sparseflow benchmark` times SparseFlow: CUDA events around many
launches (or graph replays with --graph), weight copies rotated past L2, median of --samples.
The fastest correct configuration is the case's winner.

--out is extended, never truncated: cases it holds for this GPU are skipped, and it is
rewritten atomically after each case, so an interrupted or over-budget run resumes where it
stopped. Use the table with SPARSEFLOW_TUNING=FILE, or check it in as crates/ir/tuning/<gpu>.json
(docs/TOOLS.md, \"sparseflow tune\").

Example:
  sparseflow tune --model llama3-8b --m 16,32,64,128,256,512,1024,2048,4096,8192 \\
      --dtype fp16,bf16 --budget-s 240 --out h200.json";

#[derive(clap::Args, Debug)]
#[command(after_long_help = AFTER_HELP)]
pub struct Args {
    /// Layer shapes of a model preset: llama3-8b, llama2-7b, mistral-7b, llama3-70b-tp8,
    /// bert-base.
    #[arg(long)]
    pub model: Option<String>,
    /// Layer shapes NxK (out_features x in_features), comma-separated, e.g. 4096x4096,1024x4096.
    #[arg(long, value_name = "LIST")]
    pub shapes: Option<String>,
    /// Token counts, comma-separated; each is measured at its M bucket (next power of two).
    #[arg(long, value_name = "LIST", required_unless_present = "merge")]
    pub m: Option<String>,
    /// Dtypes, comma-separated: fp16, bf16.
    #[arg(long, value_name = "LIST", default_value = "fp16")]
    pub dtype: String,
    /// Epilogues, comma-separated, at most one per class: `none` (plain) and one fused epilogue
    /// (e.g. bias_silu) that stands for every fused one. Both classes by default: a table without
    /// the fused class leaves every fused epilogue to the cost model.
    #[arg(long, value_name = "LIST", default_value = "none,silu")]
    pub epilogue: String,
    /// Configurations measured per family: the cost model's best first.
    #[arg(long, default_value_t = 8, value_name = "K")]
    pub top_k: usize,
    /// Only these families' configurations (comma-separated, e.g. sm90,sm90a); default all.
    #[arg(long, value_name = "LIST")]
    pub families: Option<String>,
    /// Start no new case after this many seconds; the case in progress finishes and is saved.
    #[arg(long, default_value_t = 300.0, value_name = "SECONDS")]
    pub budget_s: f64,
    /// The tuning table to extend (created if missing).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Time CUDA-graph replays of each sample's launches instead of eager launches.
    #[arg(long)]
    pub graph: bool,
    #[command(flatten)]
    pub timing: TimingArgs,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compile every case's candidates for this target preset (e.g. h200) into the kernel disk
    /// cache and exit, without a GPU: a build machine fills SPARSEFLOW_CACHE_DIR ahead so the
    /// GPU's time goes to timing, not NVRTC. --out is only validated.
    #[arg(long, value_name = "TARGET")]
    pub precompile_for: Option<String>,
    /// Merge these tables (comma-separated files) into --out and exit, without a GPU: per case
    /// the entry whose winner measured faster stays, e.g. to combine the runs of several visits.
    #[arg(long, value_name = "FILES", conflicts_with_all = ["m", "precompile_for"])]
    pub merge: Option<String>,
}

fn layers(args: &Args) -> Result<Vec<Layer>> {
    let mut layers = match &args.model {
        Some(m) => unique_layers(&block_layers(&block_config(m)?)),
        None => Vec::new(),
    };
    for s in args.shapes.iter().flat_map(|s| s.split(',')).map(str::trim) {
        if !s.is_empty() {
            layers
                .push(parse_shape(s).with_context(|| "--shapes takes NxK items, comma-separated")?);
        }
    }
    if layers.is_empty() {
        bail!("nothing to tune: give --model PRESET and/or --shapes NxK,...");
    }
    for l in &layers {
        for (name, v) in [("N", l.n), ("K", l.k)] {
            check_dim(name, v as u64).map_err(|why| anyhow!("layer {}: {why}", l.name))?;
        }
    }
    Ok(layers)
}

fn dtypes(arg: &str) -> Result<Vec<DType>> {
    let mut out = Vec::new();
    for d in arg.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let dtype = match d {
            "fp16" | "f16" => DType::F16,
            "bf16" => DType::BF16,
            other => bail!("--dtype: `{other}` (valid: fp16, bf16)"),
        };
        if !out.contains(&dtype) {
            out.push(dtype);
        }
    }
    if out.is_empty() {
        bail!("--dtype: give fp16 and/or bf16");
    }
    Ok(out)
}

fn epilogues(arg: &str) -> Result<Vec<EpilogueKind>> {
    arg.split(',')
        .map(|e| EpilogueKind::from_name(e.trim()).map_err(|e| anyhow!("--epilogue: {e}")))
        .collect()
}

/// Everything checked before the GPU is touched: the cases and the table to extend.
fn validate(args: &Args) -> Result<(Vec<Case>, TuningTable, TimeCfg)> {
    if args.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    if !(args.budget_s > 0.0 && args.budget_s.is_finite()) {
        bail!(
            "--budget-s must be a positive number of seconds, got {}",
            args.budget_s
        );
    }
    args.timing.check()?;
    let ms = parse_m_list(args.m.as_deref().unwrap_or_default())?;
    let cases = cases(
        &layers(args)?,
        &ms,
        &dtypes(&args.dtype)?,
        &epilogues(&args.epilogue)?,
    )?;
    output::check_writable(&args.out).with_context(|| format!("--out {}", args.out.display()))?;
    // A file that is not a table of this version is refused, never overwritten.
    let table = TuningTable::load_or_empty(&args.out)
        .with_context(|| format!("--out {}", args.out.display()))?;
    let time = TimeCfg {
        samples: args.timing.samples,
        sample_ms: args.timing.sample_ms,
        warmup_ms: args.timing.warmup_ms,
        graph: args.graph,
    };
    Ok((cases, table, time))
}

/// The GPU, the runtime on it, and the name its table entries are keyed by.
fn open_gpu() -> Result<(Gpu, Context, Target)> {
    // SAFETY: only probes whether libcuda can be loaded; no CUDA call is made.
    if !unsafe { sys::is_culib_present() } {
        bail!("sparseflow tune measures kernels on a GPU, and no CUDA driver was found (libcuda.so could not be loaded): run it on the GPU the table is for");
    }
    let g = Gpu::open().context("sparseflow tune measures kernels on a GPU")?;
    let ctx = gpu::sparseflow::open()?;
    let target = ctx
        .target()
        .cloned()
        .ok_or_else(|| anyhow!("the runtime opened no GPU"))?;
    if target.name != ctx.info().name {
        bail!(
            "planning targets the preset {} instead of this GPU ({}): unset SPARSEFLOW_TARGET, the table is keyed by the GPU",
            target.name,
            ctx.info().name
        );
    }
    Ok((g, ctx, target))
}

fn progress(total: u64) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} configs {wide_msg}")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

/// A run in progress: the table it extends, its budget, what it measured.
struct Run<'a> {
    b: Bench<'a>,
    compiler: Compiler,
    top_k: usize,
    families: Vec<&'static str>,
    out: PathBuf,
    table: TuningTable,
    method: String,
    deadline: Instant,
    pb: ProgressBar,
    measured: Vec<Case>,
}

impl Run<'_> {
    fn over_budget(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// The cases of one layer (one weight upload), until the budget runs out.
    fn group<T: GpuElement>(&mut self, cases: &[&Case]) -> Result<()> {
        let gpu_name = self.b.ctx.info().name.clone();
        let weights = Weights::<T>::new(&self.b, cases[0])
            .with_context(|| format!("uploading {}", cases[0].layer.name))?;
        for &case in cases {
            if self.over_budget() {
                return Ok(());
            }
            let cands = with_sibling_winner(
                candidates(case, self.b.target, self.top_k, &self.families),
                case,
                &self.table,
                &gpu_name,
                self.b.target,
                &self.families,
            );
            self.pb.set_message(format!(
                "{}: compiling {} kernels",
                case.label(),
                cands.len()
            ));
            precompile(&self.compiler, case, self.b.target, &cands);
            let measurements = measure_case(&self.b, &weights, case, &cands, &self.pb)?;
            let pick = cost_model_pick(case, self.b.target);
            let e = entry(case, &gpu_name, pick.as_ref(), measurements, &self.method);
            let line = summary_line(case, &e);
            // Printed even where the bar is hidden (stderr not a terminal: device logs).
            self.pb.suspend(|| eprintln!("{line}"));
            self.table.insert(e);
            self.table
                .save(&self.out)
                .with_context(|| format!("saving {} after {}", self.out.display(), case.label()))?;
            // The case is saved: nothing of it is in flight any more (the marker is this
            // command's own file).
            match std::fs::remove_file(&self.b.marker) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(anyhow!("removing {}: {e}", self.b.marker.display())),
            }
            self.b.unfinished = None;
            self.measured.push(case.clone());
        }
        Ok(())
    }
}

/// The median of `config` in `e`, when it was measured correct.
fn median(e: &TuningEntry, config: Option<&ConfigRecord>) -> Option<f64> {
    e.measured(config?).and_then(|m| m.median_us)
}

fn summary_line(case: &Case, e: &TuningEntry) -> String {
    let failed = e.measurements.iter().filter(|m| !m.ok()).count();
    let winner = median(e, e.winner.as_ref());
    let text = match (&e.winner, winner) {
        (Some(w), Some(t)) => format!("{w}: {t:.1} us"),
        _ => "no configuration ran correctly".into(),
    };
    let vs = match (winner, median(e, e.cost_model.as_ref())) {
        (Some(w), Some(c)) => format!(", {:.2}x the cost model's pick", c / w),
        _ => String::new(),
    };
    format!(
        "{}: {text}{vs} ({} measured, {failed} failed)",
        case.label(),
        e.measurements.len()
    )
}

/// `--precompile-for`: every case's candidates for the preset `target`, compiled into the disk
/// cache (the cache key is the kernel source and NVRTC version, so a GPU with the same NVRTC
/// finds them). Every case, not only those --out lacks: the table is keyed by the GPU's own
/// name, which a preset does not know.
fn precompile_only(
    target: &str,
    cases: &[Case],
    families: &[&str],
    top_k: usize,
) -> Result<ExitCode> {
    let target = sparseflow_ir::target(target).map_err(|e| anyhow!("--precompile-for: {e}"))?;
    let compiler = Compiler::new().context("--precompile-for compiles with NVRTC")?;
    let pb = progress(cases.len() as u64);
    let mut kernels = 0;
    for case in cases {
        let cands = candidates(case, target, top_k, families);
        pb.set_message(format!("{}: {} kernels", case.label(), cands.len()));
        precompile(&compiler, case, target, &cands);
        kernels += cands.len();
        pb.inc(1);
    }
    pb.finish_and_clear();
    eprintln!(
        "compiled the candidates of {} cases ({kernels} configurations) for {} into the kernel cache",
        cases.len(),
        target.name
    );
    Ok(ExitCode::SUCCESS)
}

/// `--merge`: the tables named, merged into --out (created if missing) case by case.
fn merge(files: &str, out: &std::path::Path) -> Result<ExitCode> {
    output::check_writable(out).with_context(|| format!("--out {}", out.display()))?;
    let mut table =
        TuningTable::load_or_empty(out).with_context(|| format!("--out {}", out.display()))?;
    for f in files.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let from =
            TuningTable::load(std::path::Path::new(f)).with_context(|| format!("--merge {f}"))?;
        let (added, replaced) = merge_faster(&mut table, from);
        eprintln!("{f}: {added} cases added, {replaced} replaced by a faster winner");
    }
    table
        .save(out)
        .with_context(|| format!("saving {}", out.display()))?;
    eprintln!("{} cases in {}", table.entries.len(), out.display());
    Ok(ExitCode::SUCCESS)
}

pub fn run(args: Args) -> Result<ExitCode> {
    if let Some(files) = &args.merge {
        return merge(files, &args.out);
    }
    let start = Instant::now();
    let (cases, table, time) = validate(&args)?;
    let families = tune_families(args.families.as_deref())?;
    if let Some(t) = &args.precompile_for {
        return precompile_only(t, &cases, &families, args.top_k);
    }
    let (g, ctx, target) = open_gpu()?;
    let gpu_name = ctx.info().name.clone();
    let todo = pending(&table, &cases, &gpu_name);
    eprintln!(
        "{} cases on {gpu_name}: {} already in {}, {} to measure (top {} per family, budget {} s)",
        cases.len(),
        cases.len() - todo.len(),
        args.out.display(),
        todo.len(),
        args.top_k,
        args.budget_s
    );
    let compiler = Compiler::new().context("sparseflow tune compiles the candidates")?;
    let total: usize = todo
        .iter()
        .map(|c| {
            let cands = candidates(c, &target, args.top_k, &families);
            with_sibling_winner(cands, c, &table, &gpu_name, &target, &families).len()
        })
        .sum();
    let method = format!(
        "sparseflow benchmark's timing: {} of back-to-back launches, {} samples of {} ms after {} ms warm-up, median; weight copies rotated past 2x L2; output checked against a float64 CPU reference (first, middle, last row; rel. error <= 1e-2) before timing; top {} per family",
        if args.graph { "CUDA graph replays" } else { "CUDA events around" },
        args.timing.samples,
        args.timing.sample_ms,
        args.timing.warmup_ms,
        args.top_k
    );
    let marker = inflight_path(&args.out);
    let unfinished = read_inflight(&marker)?;
    if let Some(m) = &unfinished {
        eprintln!(
            "an earlier run did not finish {} on {}: it is recorded as failed, not run again",
            m.config, m.case
        );
    }
    // Far above any one configuration's compile check and timing (seconds), far below a visit.
    let watchdog = Watchdog::start(Duration::from_secs(90));
    let mut run = Run {
        b: Bench {
            gpu: &g,
            ctx: &ctx,
            target: &target,
            time,
            seed: args.seed,
            marker,
            unfinished,
            watchdog: &watchdog,
        },
        compiler,
        top_k: args.top_k,
        families: families.clone(),
        out: args.out.clone(),
        table,
        method,
        deadline: start + Duration::from_secs_f64(args.budget_s),
        pb: progress(total as u64),
        measured: Vec::new(),
    };
    let same_layer =
        |a: &&Case, b: &&Case| a.dtype == b.dtype && a.epilogue == b.epilogue && a.layer == b.layer;
    for group in todo.chunk_by(same_layer) {
        if run.over_budget() {
            break;
        }
        match group[0].dtype {
            DType::F16 => run.group::<f16>(group)?,
            DType::BF16 => run.group::<bf16>(group)?,
            other => bail!("dtype {other}: sparse kernels take f16 or bf16"),
        }
    }
    run.pb.finish_and_clear();
    print!("{}", report(&run.table, &run.measured, &gpu_name));
    let left = todo.len() - run.measured.len();
    eprintln!(
        "{} cases measured in {:.0} s, written to {}",
        run.measured.len(),
        start.elapsed().as_secs_f64(),
        args.out.display()
    );
    if left > 0 {
        eprintln!(
            "{left} cases remain (--budget-s {} reached): rerun the same command to measure them",
            args.budget_s
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The measured cases as a table: winner, its time, and the cost model's pick for comparison.
fn report(table: &TuningTable, measured: &[Case], gpu: &str) -> String {
    let mut t = Table::new(&[
        "case",
        "winner",
        "us",
        "cost model's pick",
        "us",
        "configs",
        "failed",
    ]);
    for case in measured {
        let Some(e) = table.get(&case.key(gpu)) else {
            continue;
        };
        let time =
            |c: Option<&ConfigRecord>| median(e, c).map_or("-".into(), |t| format!("{t:.1}"));
        let name = |c: Option<&ConfigRecord>| c.map_or("none".into(), ToString::to_string);
        t.row(vec![
            case.label(),
            name(e.winner.as_ref()),
            time(e.winner.as_ref()),
            name(e.cost_model.as_ref()),
            time(e.cost_model.as_ref()),
            e.measurements.len().to_string(),
            e.measurements
                .iter()
                .filter(|m| !m.ok())
                .count()
                .to_string(),
        ]);
    }
    t.to_string()
}
