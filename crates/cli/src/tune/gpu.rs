//! Measuring one case on the GPU: every candidate configuration on the same weight and inputs,
//! each checked once against the float64 CPU reference and timed the way `sparseflow benchmark`
//! times SparseFlow (`bench::gpu::sweep::measure`: CUDA events or graph replays, weight copies
//! rotated past L2, median of samples). A configuration runs through the runtime like any
//! layer call, with `SparseGemm::use_config` in place of the plan.

use anyhow::{Context as _, Result};
use cudarc::driver::CudaSlice;
use indicatif::ProgressBar;
use rayon::prelude::*;
use sparseflow_codegen::{Compiler, Registry};
use sparseflow_ir::tuning::{ConfigRecord, Measurement, STATUS_OK};
use sparseflow_ir::{Target, TileChoice};
use sparseflow_runtime::{Context, SparseGemm};

use super::{is_unfinished, Case, InFlight, Watchdog, STATUS_UNFINISHED};
use crate::bench::gpu::check::rel_err_rows;
use crate::bench::gpu::problem::{check_rows, oracle_rows, random, sample_rows, HostLayer};
use crate::bench::gpu::sparseflow::{upload, SfGemm};
use crate::bench::gpu::sweep::{measure, poison, read_rows};
use crate::bench::gpu::{copies_for, dptr, Gpu, GpuElement, TimeCfg};
use crate::bench::output::write_atomic;
use crate::bench::report::SPARSEFLOW;

/// What every measurement of a run shares.
pub struct Bench<'a> {
    pub gpu: &'a Gpu,
    pub ctx: &'a Context,
    pub target: &'a Target,
    pub time: TimeCfg,
    pub seed: u64,
    /// Where the configuration being measured is named before it runs (`super::inflight_path`).
    pub marker: std::path::PathBuf,
    /// The configuration an earlier run left unfinished, not to be run again.
    pub unfinished: Option<InFlight>,
    /// Ends the process when one configuration never finishes.
    pub watchdog: &'a Watchdog,
}

/// One layer's random 2:4 weight (as `sparseflow benchmark` makes it) on the host and, in
/// copies rotated past L2, on the device; shared by the layer's M buckets.
pub struct Weights<T> {
    host: HostLayer<T>,
    gemms: Vec<SparseGemm>,
}

impl<T: GpuElement> Weights<T> {
    pub fn new(b: &Bench, case: &Case) -> Result<Self> {
        let (n, k) = (case.layer.n, case.layer.k);
        let host = HostLayer::<T>::new(n, k, case.epilogue, b.seed ^ (n as u64) << 32 ^ k as u64)?;
        let bytes = n * k / 2 * std::mem::size_of::<T>() + n * k / 8;
        let copies = copies_for(bytes, 2 * b.gpu.l2_bytes, false);
        let gemms = upload(
            b.ctx,
            &host.sparse,
            host.bias.as_deref(),
            case.epilogue,
            copies,
        )?;
        Ok(Weights { host, gemms })
    }
}

/// Compiles the candidates' kernels into the disk cache in parallel, so the measurements load
/// them instead of compiling one after another. A kernel that fails here fails again, recorded,
/// when it is measured.
pub fn precompile(compiler: &Compiler, case: &Case, target: &Target, candidates: &[TileChoice]) {
    let registry = Registry::builtin();
    candidates.par_iter().for_each(|c| {
        let kernel = registry
            .kernel_for(&case.problem(), target, c.config)
            .ok()
            .and_then(|spec| registry.generate(&spec).ok());
        if let Some(kernel) = kernel {
            let _ = compiler.compile(&kernel);
        }
    });
}

/// The inputs of one case and where its output goes.
struct Inputs<T> {
    x: CudaSlice<T>,
    y: CudaSlice<T>,
    /// Rows read back, and where the oracle's rows sit among them.
    rows: Vec<usize>,
    oracle_at: Vec<usize>,
    oracle: Vec<Vec<f64>>,
}

/// Measures every candidate of `case` on `w`. `Err` only when the device is no longer usable
/// (a failed kernel left a sticky error): the case must not be recorded then.
pub fn measure_case<T: GpuElement>(
    b: &Bench,
    w: &Weights<T>,
    case: &Case,
    candidates: &[TileChoice],
    pb: &ProgressBar,
) -> Result<Vec<Measurement>> {
    let (m, k) = (case.m, case.layer.k);
    let x_host: Vec<T> = random(m * k, b.seed ^ (m as u64) << 20);
    let check = check_rows(m);
    let rows = sample_rows(m);
    let oracle_at = check
        .iter()
        .map(|r| rows.binary_search(r).expect("sample_rows holds check_rows"))
        .collect();
    let inputs = Inputs {
        x: b.gpu.stream.clone_htod(&x_host)?,
        y: b.gpu.stream.alloc_zeros::<T>(m * case.layer.n)?,
        oracle: oracle_rows(&x_host, &w.host, case.epilogue, &check),
        rows,
        oracle_at,
    };
    let mut out = Vec::with_capacity(candidates.len());
    for c in candidates {
        let config = ConfigRecord::from(&c.config);
        if is_unfinished(b.unfinished.as_ref(), case, &config) {
            out.push(unmeasured(c, STATUS_UNFINISHED));
            pb.inc(1);
            continue;
        }
        let marker = InFlight {
            case: case.label(),
            config,
        };
        write_atomic(&b.marker, &serde_json::to_string(&marker)?)
            .with_context(|| format!("writing {}", b.marker.display()))?;
        pb.set_message(format!(
            "{}: {} {}",
            case.label(),
            c.config.family,
            c.config.describe_tiles()
        ));
        b.watchdog.arm();
        let measured = measure_one(b, w, case, c, &inputs);
        b.watchdog.disarm();
        if !measured.ok() {
            b.gpu.sync().with_context(|| {
                format!(
                    "the GPU is unusable after {} failed ({}); {} is not recorded, rerun to resume",
                    measured.config,
                    measured.status,
                    case.label()
                )
            })?;
        }
        out.push(measured);
        pb.inc(1);
    }
    Ok(out)
}

fn measure_one<T: GpuElement>(
    b: &Bench,
    w: &Weights<T>,
    case: &Case,
    c: &TileChoice,
    io: &Inputs<T>,
) -> Measurement {
    let mut record = unmeasured(c, "");
    let (gpu, m, n) = (b.gpu, case.m, case.layer.n);
    let ready = w
        .gemms
        .iter()
        .try_for_each(|g| g.use_config(m, c.config))
        .map_err(anyhow::Error::from)
        .and_then(|()| poison(gpu, &io.y));
    if let Err(e) = ready {
        record.status = format!("failed: {e:#}");
        return record;
    }
    let mut g = SfGemm {
        gemms: &w.gemms,
        x: dptr(&io.x, &gpu.stream),
        y: dptr(&io.y, &gpu.stream),
        m,
        stream: gpu.cu_stream() as *mut _,
    };
    let (measured, _) = measure(
        gpu,
        &mut g,
        SPARSEFLOW,
        m,
        b.time,
        || read_rows(gpu, &io.y, n, &io.rows),
        |y| (rel_err_rows(y, n, &io.oracle_at, &io.oracle), None),
        String::new(),
    );
    record.rel_err = measured.rel_err_oracle;
    match measured.time {
        Some(t) => {
            record.median_us = Some(t.median_us);
            record.p10_us = Some(t.p10_us);
            record.p90_us = Some(t.p90_us);
            record.samples = t.samples;
            record.status = STATUS_OK.into();
        }
        None => record.status = measured.note,
    }
    record
}

/// `c` with no timing, and why.
fn unmeasured(c: &TileChoice, status: &str) -> Measurement {
    Measurement {
        config: ConfigRecord::from(&c.config),
        est_us: Some(c.est_us),
        median_us: None,
        p10_us: None,
        p90_us: None,
        samples: 0,
        rel_err: None,
        status: status.into(),
    }
}
