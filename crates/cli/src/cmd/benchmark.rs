//! `sparseflow benchmark`: SparseFlow vs the best dense path (cuBLASLt algorithms, cublasGemmEx)
//! vs cuSPARSELt, one process, same inputs.
//! The work lives in `crate::bench`; this file is arguments and orchestration.

use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;

use anyhow::{bail, Context as _, Result};
use half::{bf16, f16};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sparseflow_core::EpilogueKind;

use crate::bench::gpu::{self, cublas::Cublas, cusparselt::Lt, sweep, Gpu, TimeCfg};
use crate::bench::report::{self, Report, RunConfig};
use crate::bench::shapes::{self, Layer};
use crate::bench::timing::TimingArgs;
use crate::bench::{cpu, now_utc, output, plot};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum DTypeArg {
    Fp16,
    Bf16,
}

#[derive(clap::Args, Debug)]
#[command(after_long_help = crate::bench::METHOD)]
pub struct Args {
    /// Layer shapes of a model preset: llama3-8b, llama2-7b, mistral-7b, llama3-70b-tp8, bert-base.
    #[arg(long)]
    pub model: Option<String>,
    /// A custom layer shape N,K (out_features,in_features); repeatable.
    #[arg(long = "shape", value_name = "N,K")]
    pub shapes: Vec<String>,
    /// Token counts M, comma-separated [default: 1,16,64,256,1024,4096,16384; --cpu: 1,16].
    #[arg(long, value_name = "LIST")]
    pub m: Option<String>,
    #[arg(long, value_enum, default_value = "fp16")]
    pub dtype: DTypeArg,
    /// Epilogue SparseFlow fuses (baselines run the plain GEMM).
    #[arg(long, default_value = "none")]
    pub epilogue: String,
    #[command(flatten)]
    pub timing: TimingArgs,
    /// Do not rotate weight copies (L2-resident weights when they fit).
    #[arg(long)]
    pub hot: bool,
    /// Time CUDA-graph replays of each sample's launches (no host launch gaps) instead of
    /// eager back-to-back launches.
    #[arg(long)]
    pub graph: bool,
    /// Launch SparseFlow kernels with programmatic dependent launch (sm_90+; the runtime's
    /// opt-in `Context::set_programmatic_launch`): each kernel's launch overlaps the end of the
    /// previous one on the stream, which it waits for before its first memory access.
    #[arg(long)]
    pub pdl: bool,
    /// Write the full results as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the table as Markdown.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Draw speedup vs M per shape as SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Exit with code 3 when the geomean speedup over the best dense path (CPU dense with --cpu)
    /// is below X.
    #[arg(long, value_name = "X")]
    pub min_speedup: Option<f64>,
    /// Also time fused epilogue vs plain GEMM vs plain GEMM + separate kernel (default epilogue bias_silu).
    #[arg(long)]
    pub epilogue_overhead: bool,
    /// Also time the model's decoder-layer linears token by token at batch 1 and 16 (needs --model).
    #[arg(long)]
    pub e2e: bool,
    /// Distinct layers measured for --e2e (scaled to the model's depth).
    #[arg(long, default_value_t = 4)]
    pub e2e_layers: usize,
    /// Time the CPU sparse vs dense reference instead (no GPU needed).
    #[arg(long)]
    pub cpu: bool,
    /// Path to libcusparseLt.so.0 (or its directory).
    #[arg(long, value_name = "PATH")]
    pub cusparselt: Option<PathBuf>,
    /// cuBLASLt heuristic algorithms to time per case; the dense baseline is the fastest of
    /// them and cublasGemmEx.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub lt_algos: usize,
    /// Contenders to leave out: sparseflow, cusparselt (comma-separated).
    #[arg(long, value_name = "LIST", default_value = "")]
    pub skip: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

fn layers(args: &Args) -> Result<(Vec<Layer>, Option<String>)> {
    let mut v: Vec<Layer> = args
        .shapes
        .iter()
        .map(|s| shapes::parse_shape(s))
        .collect::<Result<_>>()?;
    let model = match (&args.model, v.is_empty()) {
        (Some(m), _) => Some(m.clone()),
        (None, true) => Some("llama3-8b".to_string()),
        (None, false) => None,
    };
    if let Some(m) = &model {
        let cfg = shapes::block_config(m)?;
        let mut u = shapes::unique_layers(&shapes::block_layers(&cfg));
        u.append(&mut v);
        v = u;
    }
    Ok((v, model))
}

/// Validated arguments: layers, model preset, M list, epilogue.
type Plan = (Vec<Layer>, Option<String>, Vec<usize>, EpilogueKind);

fn validate(args: &Args) -> Result<Plan> {
    let epi =
        EpilogueKind::from_name(&args.epilogue).map_err(|e| anyhow::anyhow!("--epilogue: {e}"))?;
    if !(1..=32).contains(&args.lt_algos) {
        bail!("--lt-algos must be between 1 and 32, got {}", args.lt_algos);
    }
    args.timing.check()?;
    for (flag, path) in [
        ("--json", &args.json),
        ("--markdown", &args.markdown),
        ("--plot", &args.plot),
    ] {
        if let Some(p) = path {
            output::check_writable(p).with_context(|| format!("{flag} {}", p.display()))?;
        }
    }
    if let Some(x) = args.min_speedup {
        if !(x > 0.0 && x.is_finite()) {
            bail!("--min-speedup must be a positive number, got {x}");
        }
    }
    if args.pdl && args.skip.split(',').any(|s| s.trim() == "sparseflow") {
        bail!("--pdl sets how SparseFlow's kernels launch, but --skip leaves SparseFlow out");
    }
    for s in args
        .skip
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if !["sparseflow", "cusparselt"].contains(&s) {
            bail!("--skip: unknown contender `{s}` (valid: sparseflow, cusparselt)");
        }
    }
    let (layers, model) = layers(args)?;
    if args.cpu && (args.e2e || args.epilogue_overhead || args.graph || args.pdl) {
        bail!("--e2e, --epilogue-overhead, --graph and --pdl time GPU kernels; leave them out with --cpu");
    }
    if args.e2e && args.model.is_none() {
        bail!("--e2e needs --model (a decoder block's shapes)");
    }
    if args.e2e && args.e2e_layers == 0 {
        bail!("--e2e-layers must be at least 1");
    }
    let ms = match &args.m {
        Some(s) => shapes::parse_m_list(s)?,
        None if args.cpu => vec![1, 16],
        None => shapes::DEFAULT_M.to_vec(),
    };
    check_host_memory(&layers, &ms)?;
    Ok((layers, model, ms, epi))
}

/// Host bytes one case holds at most, generously: the weight three times (random, pruned,
/// compressed), activations as f32 blocks and outputs read back as f64, three of each.
fn host_bytes(layer: &Layer, m: usize) -> Option<usize> {
    let w = layer.n.checked_mul(layer.k)?.checked_mul(3 * 2)?;
    let x = m.checked_mul(layer.k)?.checked_mul(3 * 4)?;
    let y = m.checked_mul(layer.n)?.checked_mul(3 * 8)?;
    w.checked_add(x)?.checked_add(y)
}

/// Refuses, before any work, a run whose largest case cannot fit in the host memory available
/// now (an allocation the system refuses would abort the process halfway through).
fn check_host_memory(layers: &[Layer], ms: &[usize]) -> Result<()> {
    let Some(available) = output::available_host_memory() else {
        return Ok(()); // not Linux: nothing to check against
    };
    let gib = |b: usize| b as f64 / (1u64 << 30) as f64;
    for l in layers {
        for &m in ms {
            match host_bytes(l, m) {
                Some(need) if need <= available => {}
                need => bail!(
                    "{} {}×{} at M = {m} needs about {} of host memory, {:.1} GiB are available: use smaller shapes or fewer tokens",
                    l.name,
                    l.n,
                    l.k,
                    need.map_or("more than the address space".into(), |b| format!("{:.1} GiB", gib(b))),
                    gib(available)
                ),
            }
        }
    }
    Ok(())
}

fn progress(total: u64) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

pub fn run(args: Args) -> Result<ExitCode> {
    let (layers, model, ms, epi) = validate(&args)?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let dtype = match args.dtype {
        DTypeArg::Fp16 => "f16",
        DTypeArg::Bf16 => "bf16",
    };
    let mut rep = Report {
        schema: report::SCHEMA.into(),
        date_utc: now_utc(),
        command,
        mode: if args.cpu { "cpu" } else { "gpu" }.into(),
        device: Default::default(),
        config: RunConfig {
            dtype: dtype.into(),
            epilogue: epi.name().into(),
            hot: args.hot,
            graph: args.graph,
            programmatic_launch: false,
            samples: args.timing.samples,
            sample_ms: args.timing.sample_ms,
            warmup_ms: args.timing.warmup_ms,
            rotation_bytes: 0,
            seed: args.seed,
        },
        contenders: vec![],
        rows: vec![],
        summary: report::summarize_rows(&[]),
        epilogue_overhead: None,
        e2e: None,
    };
    if args.cpu {
        run_cpu(&args, &layers, &ms, epi, &mut rep)?;
    } else {
        run_gpu(&args, &layers, model.as_deref(), &ms, epi, &mut rep)?;
    }
    finish(&args, &rep)
}

fn run_cpu(
    args: &Args,
    layers: &[Layer],
    ms: &[usize],
    epi: EpilogueKind,
    rep: &mut Report,
) -> Result<()> {
    rep.device.name = "CPU".into();
    rep.device.cpu_threads = Some(rayon::current_num_threads());
    let pb = progress((layers.len() * ms.len() * 2) as u64);
    let cfg = cpu::CpuCfg {
        samples: args.timing.samples,
        sample_ms: args.timing.sample_ms,
        warmup_ms: args.timing.warmup_ms,
        seed: args.seed,
        epilogue: epi,
    };
    rep.rows = match args.dtype {
        DTypeArg::Fp16 => cpu::run::<f16>(layers, ms, &cfg, &pb)?,
        DTypeArg::Bf16 => cpu::run::<bf16>(layers, ms, &cfg, &pb)?,
    };
    pb.finish_and_clear();
    for name in [report::CPU_SPARSE, report::CPU_DENSE] {
        rep.contenders.push(report::ContenderStatus {
            name: name.into(),
            available: true,
            detail: "sparseflow-core CPU reference (rayon)".into(),
        });
    }
    rep.summary = report::summarize_rows(&rep.rows);
    Ok(())
}

fn run_gpu(
    args: &Args,
    layers: &[Layer],
    model: Option<&str>,
    ms: &[usize],
    epi: EpilogueKind,
    rep: &mut Report,
) -> Result<()> {
    let g = Gpu::open()?;
    let skip = |s: &str| args.skip.split(',').any(|x| x.trim() == s);
    let sf_ctx = if skip("sparseflow") {
        Err("skipped (--skip)".to_string())
    } else {
        gpu::sparseflow::open().map_err(|e| format!("{e:#}"))
    };
    if let (true, Ok(c)) = (args.pdl, &sf_ctx) {
        c.set_programmatic_launch(true).context("--pdl")?;
    }
    let cb = Cublas::new().map(Rc::new).map_err(|e| format!("{e:#}"));
    let lt = if skip("cusparselt") {
        Err("skipped (--skip)".to_string())
    } else {
        Lt::new(args.cusparselt.as_deref())
            .map(Rc::new)
            .map_err(|e| format!("{e:#}"))
    };
    rep.config.programmatic_launch = sf_ctx.as_ref().is_ok_and(|c| c.programmatic_launch());
    rep.device = g.info.clone();
    rep.device.cublaslt_version = cb.as_ref().ok().map(|c| c.version.clone());
    rep.device.cusparselt_version = lt.as_ref().ok().map(|l| l.version.clone());
    rep.device.copy_tbps = Some(g.measure_copy_tbps().context("measuring copy bandwidth")?);
    if let Ok(c) = &cb {
        rep.device.dense_tflops = match args.dtype {
            DTypeArg::Fp16 => sweep::measure_dense_tflops::<f16>(&g, c).ok(),
            DTypeArg::Bf16 => sweep::measure_dense_tflops::<bf16>(&g, c).ok(),
        };
    }
    let status = |name: &str, r: std::result::Result<String, String>| match r {
        Ok(d) => report::ContenderStatus {
            name: name.into(),
            available: true,
            detail: d,
        },
        Err(e) => report::ContenderStatus {
            name: name.into(),
            available: false,
            detail: e,
        },
    };
    rep.contenders = vec![
        status(
            report::SPARSEFLOW,
            sf_ctx
                .as_ref()
                .map(|c| {
                    format!(
                        "sparseflow-runtime on {}, programmatic dependent launch {}",
                        c.info().name,
                        if c.programmatic_launch() { "on" } else { "off" }
                    )
                })
                .map_err(Clone::clone),
        ),
        status(
            report::CUBLAS,
            cb.as_ref()
                .map(|c| {
                    format!(
                        "dense = fastest of cuBLASLt {} (top {} heuristic algorithms) and cublasGemmEx ({})",
                        c.version,
                        args.lt_algos,
                        c.gemmex_unavailable().unwrap_or("default algorithm")
                    )
                })
                .map_err(Clone::clone),
        ),
        status(
            report::CUSPARSELT,
            lt.as_ref()
                .map(|l| format!("cuSPARSELt {}", l.version))
                .map_err(Clone::clone),
        ),
    ];
    for c in &rep.contenders {
        eprintln!(
            "{:<11} {}: {}",
            c.name,
            if c.available { "ok " } else { "n/a" },
            c.detail
        );
    }
    let rotation = 2 * g.l2_bytes;
    rep.config.rotation_bytes = if args.hot { 0 } else { rotation as u64 };
    let time = TimeCfg {
        samples: args.timing.samples,
        sample_ms: args.timing.sample_ms,
        warmup_ms: args.timing.warmup_ms,
        graph: args.graph,
    };
    let cfg = sweep::SweepCfg {
        epilogue: epi,
        time,
        rotation_bytes: rotation,
        hot: args.hot,
        seed: args.seed,
        copy_tbps: rep.device.copy_tbps.unwrap_or(3.0),
        dense_tflops: rep.device.dense_tflops.unwrap_or(700.0),
        lt_algos: args.lt_algos,
    };
    let contenders = sweep::Contenders {
        sparseflow: sf_ctx,
        cublas: cb,
        cusparselt: lt,
    };
    let extra = if args.epilogue_overhead {
        layers.len() * ms.len()
    } else {
        0
    } + if args.e2e { 2 } else { 0 };
    let pb = progress((layers.len() * ms.len() * 3 + extra) as u64);
    // A long GPU run writes its JSON after every case, so a later failure loses nothing.
    let mut partial = rep.clone();
    let mut on_row = |rows: &[report::Row]| -> Result<()> {
        let Some(path) = &args.json else {
            return Ok(());
        };
        partial.rows = rows.to_vec();
        partial.summary = report::summarize_rows(rows);
        output::write_atomic(path, &(serde_json::to_string_pretty(&partial)? + "\n"))
            .with_context(|| format!("writing partial results to {}", path.display()))
    };
    rep.rows = match args.dtype {
        DTypeArg::Fp16 => sweep::run::<f16>(&g, &contenders, layers, ms, &cfg, &pb, &mut on_row)?,
        DTypeArg::Bf16 => sweep::run::<bf16>(&g, &contenders, layers, ms, &cfg, &pb, &mut on_row)?,
    };
    if args.epilogue_overhead {
        let e = if epi.name() == "none" {
            EpilogueKind::from_name("bias_silu")?
        } else {
            epi
        };
        let (sfc, cbc) = (&contenders.sparseflow, &contenders.cublas);
        rep.epilogue_overhead = Some(match args.dtype {
            DTypeArg::Fp16 => gpu::epilogue::run::<f16>(
                &g, sfc, cbc, layers, ms, e, time, rotation, args.hot, args.seed, &pb,
            )?,
            DTypeArg::Bf16 => gpu::epilogue::run::<bf16>(
                &g, sfc, cbc, layers, ms, e, time, rotation, args.hot, args.seed, &pb,
            )?,
        });
    }
    if let (true, Some(model)) = (args.e2e, model) {
        let bc = shapes::block_config(model)?;
        let (sfc, cbc) = (&contenders.sparseflow, &contenders.cublas);
        let n = args.e2e_layers.min(bc.layers);
        rep.e2e = Some(match args.dtype {
            DTypeArg::Fp16 => {
                gpu::e2e::run::<f16>(&g, model, &bc, n, sfc, cbc, time, args.seed, &pb)?
            }
            DTypeArg::Bf16 => {
                gpu::e2e::run::<bf16>(&g, model, &bc, n, sfc, cbc, time, args.seed, &pb)?
            }
        });
    }
    pb.finish_and_clear();
    rep.summary = report::summarize_rows(&rep.rows);
    Ok(())
}

fn finish(args: &Args, rep: &Report) -> Result<ExitCode> {
    let mut text = crate::bench::table::table(rep);
    text.push_str(&crate::bench::table::extras(rep));
    print!("{text}");
    if let Some(p) = &args.markdown {
        output::write_atomic(p, &text).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.json {
        let s = serde_json::to_string_pretty(rep)?;
        output::write_atomic(p, &(s + "\n")).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.plot {
        // The JSON and table are written by now; a plot that fails is still a failed command.
        plot::draw(rep, p).with_context(|| format!("--plot {}", p.display()))?;
    }
    if let Some(x) = args.min_speedup {
        match rep.summary.geomean_vs_dense {
            Some(g) if g >= x => eprintln!("min-speedup: geomean {g:.3}× ≥ {x}: pass"),
            Some(g) => {
                eprintln!("min-speedup: geomean {g:.3}× < {x}: FAIL");
                return Ok(ExitCode::from(3));
            }
            None => {
                eprintln!("min-speedup: no speedup was measured (subject n/a): FAIL");
                return Ok(ExitCode::from(3));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
