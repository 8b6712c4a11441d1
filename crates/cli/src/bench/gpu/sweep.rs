//! The main sweep: every layer shape × every M, all contenders on the same inputs, each
//! output checked before it is timed.

use std::rc::Rc;

use anyhow::Result;
use cudarc::driver::CudaSlice;
use indicatif::ProgressBar;
use sparseflow_core::EpilogueKind;
use sparseflow_runtime::Context;

use super::check::{rel_err, rel_err_rows, untranspose_rows, TOLERANCE};
use super::cublas::{Cublas, CublasGemm, DensePlan};
use super::cusparselt::{padded_m, Lt, LtGemm, LtWeight};
use super::problem::{check_rows, oracle_rows, random, sample_rows, HostLayer};
use super::sparseflow::{self as sf, SfGemm};
use super::{
    copies_for, dptr, nvml, time_gemm, time_gemm_with_clocks, Gemm, Gpu, GpuElement, TimeCfg,
};
use crate::bench::report::{is_dense, Measurement, Row, CUBLAS, CUSPARSELT, SPARSEFLOW};
use crate::bench::shapes::Layer;

/// What the sweep runs with; unavailable contenders carry the reason.
pub struct Contenders {
    pub sparseflow: std::result::Result<Context, String>,
    pub cublas: std::result::Result<Rc<Cublas>, String>,
    pub cusparselt: std::result::Result<Rc<Lt>, String>,
}

pub struct SweepCfg {
    pub epilogue: EpilogueKind,
    pub time: TimeCfg,
    pub rotation_bytes: usize,
    pub hot: bool,
    pub seed: u64,
    pub copy_tbps: f64,
    pub dense_tflops: f64,
    /// cuBLASLt heuristic algorithms timed per case (the dense baseline is the fastest of
    /// them and `cublasGemmEx`).
    pub lt_algos: usize,
}

fn na(contender: &str, m_run: usize, note: impl Into<String>) -> Measurement {
    Measurement {
        contender: contender.into(),
        m_run,
        time: None,
        tbps: None,
        tflops: None,
        pct_of_limit: None,
        bound: None,
        rel_err_oracle: None,
        rel_err_cross: None,
        weight_copies: 0,
        launches_per_sample: 0,
        note: note.into(),
        clocks: None,
    }
}

/// Poisons `y` with NaN (0xFFFF is NaN in fp16 and bf16) so unwritten outputs fail the check.
pub fn poison<T>(gpu: &Gpu, y: &CudaSlice<T>) -> Result<()> {
    // SAFETY: y is a live device allocation of exactly this many bytes, used on this stream.
    unsafe {
        cudarc::driver::result::memset_d8_async(
            dptr(y, &gpu.stream),
            0xFF,
            std::mem::size_of::<T>() * y.len(),
            gpu.cu_stream(),
        )?;
    }
    Ok(())
}

/// Rows `rows` of a row-major `[.., n]` output, as f64 (`rows.len() × n`).
pub fn read_rows<T: GpuElement>(
    gpu: &Gpu,
    y: &CudaSlice<T>,
    n: usize,
    rows: &[usize],
) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(rows.len() * n);
    for &r in rows {
        let row = gpu.stream.clone_dtoh(&y.slice(r * n..(r + 1) * n))?;
        out.extend(row.iter().map(|v| v.to_f64()));
    }
    Ok(out)
}

fn read<T: GpuElement>(gpu: &Gpu, y: &CudaSlice<T>) -> Result<Vec<f64>> {
    Ok(gpu
        .stream
        .clone_dtoh(y)?
        .iter()
        .map(|v| v.to_f64())
        .collect())
}

/// Checks one launch's output, then times it; fills a measurement (`sparseflow tune` times
/// its candidates with it too).
#[allow(clippy::too_many_arguments)]
pub fn measure(
    gpu: &Gpu,
    g: &mut dyn Gemm,
    name: &str,
    m_run: usize,
    time: TimeCfg,
    out: impl FnOnce() -> Result<Vec<f64>>,
    judge: impl FnOnce(&[f64]) -> (f64, Option<f64>),
    note: String,
) -> (Measurement, Option<Vec<f64>>) {
    let run = || -> Result<(Vec<f64>, f64, Option<f64>)> {
        g.launch(0)?;
        gpu.sync()?;
        let y = out()?;
        let (e, x) = judge(&y);
        Ok((y, e, x))
    };
    let (y, err, cross) = match run() {
        Ok(v) => v,
        Err(e) => return (na(name, m_run, format!("failed: {e:#}")), None),
    };
    let bad = |e: Option<f64>| e.is_some_and(|e| e.is_nan() || e > TOLERANCE);
    if bad(Some(err)) || bad(cross) {
        let mut m = na(name, m_run, format!("wrong result: rel err vs oracle {err:.2e}, vs reference contender {cross:?} (tolerance {TOLERANCE:.0e}); not timed"));
        m.rel_err_oracle = Some(err);
        m.rel_err_cross = cross;
        return (m, None);
    }
    match time_gemm_with_clocks(gpu, g, time) {
        Ok((t, launches, readings)) => {
            let mut m = na(name, m_run, note);
            m.time = Some(t);
            m.clocks = nvml::summarize_readings(&readings);
            m.rel_err_oracle = Some(err);
            m.rel_err_cross = cross;
            m.weight_copies = g.copies();
            m.launches_per_sample = launches;
            (m, Some(y))
        }
        Err(e) => (na(name, m_run, format!("timing failed: {e:#}")), None),
    }
}

/// Adds TB/s, TFLOP/s and % of the limit to a timed measurement.
pub fn derive(
    m: &mut Measurement,
    rows: usize,
    n: usize,
    k: usize,
    sparse: bool,
    es: usize,
    cfg: &SweepCfg,
) {
    let Some(t) = m.time else { return };
    let secs = t.median_us * 1e-6;
    let w = if sparse {
        n * k / 2 * es + n * k / 8
    } else {
        n * k * es
    };
    let bytes = (w + rows * k * es + rows * n * es) as f64;
    let flops = 2.0 * (rows * n * k) as f64;
    m.tbps = Some(bytes / secs / 1e12);
    m.tflops = Some(flops / secs / 1e12);
    let t_bw = bytes / (cfg.copy_tbps * 1e12);
    let t_tc = flops * if sparse { 0.5 } else { 1.0 } / (cfg.dense_tflops * 1e12);
    m.pct_of_limit = Some(100.0 * t_bw.max(t_tc) / secs);
    m.bound = Some(if t_bw >= t_tc { "bandwidth" } else { "compute" }.into());
}

pub fn run<T: GpuElement>(
    gpu: &Gpu,
    c: &Contenders,
    layers: &[Layer],
    ms: &[usize],
    cfg: &SweepCfg,
    pb: &ProgressBar,
    on_row: &mut dyn FnMut(&[Row]) -> Result<()>,
) -> Result<Vec<Row>> {
    let es = std::mem::size_of::<T>();
    let epi = cfg.epilogue;
    let plain = EpilogueKind::from_name("none")?;
    let mut rows = Vec::new();
    for (li, layer) in layers.iter().enumerate() {
        let (n, k) = (layer.n, layer.k);
        pb.set_message(format!("{} {n}×{k}: preparing weights", layer.name));
        let host = HostLayer::<T>::new(n, k, epi, cfg.seed + li as u64)?;
        let dense_bytes = n * k * es;
        let sparse_bytes = n * k / 2 * es + n * k / 8;
        let dense0 = gpu.stream.clone_htod(&host.dense)?;
        let dense: Vec<CudaSlice<T>> = match &c.cublas {
            Ok(_) => {
                let mut v = vec![];
                for _ in 1..copies_for(dense_bytes, cfg.rotation_bytes, cfg.hot) {
                    v.push(gpu.stream.clone_dtod(&dense0)?);
                }
                v.insert(0, gpu.stream.clone_dtod(&dense0)?);
                v
            }
            Err(_) => vec![],
        };
        let ltw = match &c.cusparselt {
            Ok(lt) => LtWeight::new(
                lt,
                &gpu.stream,
                &dense0,
                n,
                k,
                copies_for(sparse_bytes, cfg.rotation_bytes, cfg.hot),
            )
            .map_err(|e| format!("{e:#}")),
            Err(e) => Err(e.clone()),
        };
        drop(dense0);
        let sfw = match &c.sparseflow {
            Ok(ctx) => sf::upload(
                ctx,
                &host.sparse,
                host.bias.as_deref(),
                epi,
                copies_for(sparse_bytes, cfg.rotation_bytes, cfg.hot),
            )
            .map_err(|e| format!("{e:#}")),
            Err(e) => Err(e.clone()),
        };
        for &m in ms {
            pb.set_message(format!("{} {n}×{k} M={m}", layer.name));
            let m_pad = padded_m(m);
            let x_host: Vec<T> = random(m_pad * k, cfg.seed ^ (m as u64) << 20 ^ li as u64);
            let x = gpu.stream.clone_htod(&x_host)?;
            let xp = dptr(&x, &gpu.stream);
            let crow = check_rows(m);
            // Outputs are read back at `srows` only; the oracle rows sit at `cpos` in them.
            let srows = sample_rows(m);
            let cpos: Vec<usize> = crow
                .iter()
                .map(|r| {
                    srows
                        .binary_search(r)
                        .expect("sample_rows holds check_rows")
                })
                .collect();
            let oracle = oracle_rows(&x_host, &host, epi, &crow);
            let oracle_plain = if epi == plain {
                oracle.clone()
            } else {
                oracle_rows(&x_host, &host, plain, &crow)
            };
            let mut meas = Vec::new();

            // SparseFlow first: its output is the cross-check reference.
            let y_sf = gpu.stream.alloc_zeros::<T>(m * n)?;
            poison(gpu, &y_sf)?;
            let (m_sf, sf_out) = match &sfw {
                Ok(gemms) => match sf::prepare(gemms, m) {
                    Ok(plan) => {
                        let mut g = SfGemm {
                            gemms,
                            x: xp,
                            y: dptr(&y_sf, &gpu.stream),
                            m,
                            stream: gpu.cu_stream() as *mut _,
                        };
                        measure(
                            gpu,
                            &mut g,
                            SPARSEFLOW,
                            m,
                            cfg.time,
                            || read_rows(gpu, &y_sf, n, &srows),
                            |y| (rel_err_rows(y, n, &cpos, &oracle), None),
                            plan,
                        )
                    }
                    Err(e) => (na(SPARSEFLOW, m, format!("{e:#}")), None),
                },
                Err(e) => (na(SPARSEFLOW, m, e.clone()), None),
            };
            meas.push(m_sf);
            pb.inc(1);
            // The cross reference for the baselines: SparseFlow's output when it is plain GEMM.
            let sf_ref = sf_out.filter(|_| epi == plain);

            // Dense: every path a user has (cublas.rs), each checked and timed; the fastest is
            // the baseline.
            let y_cb = gpu.stream.alloc_zeros::<T>(m * n)?;
            let mut cb_out = None;
            let plans = match &c.cublas {
                Ok(h) => DensePlan::candidates::<T>(h, &gpu.stream, m, n, k, cfg.lt_algos)
                    .map_err(|e| format!("{e:#}")),
                Err(e) => Err(e.clone()),
            };
            match plans {
                Ok(plans) => {
                    for plan in &plans {
                        poison(gpu, &y_cb)?;
                        let name = plan.name.clone();
                        let mut note = plan.detail.clone();
                        if epi != plain {
                            note.push_str("; plain GEMM (no epilogue)");
                        }
                        let mut g = CublasGemm {
                            plan,
                            weights: &dense,
                            x: xp,
                            y: dptr(&y_cb, &gpu.stream),
                        };
                        let (mm, out) = measure(
                            gpu,
                            &mut g,
                            &name,
                            m,
                            cfg.time,
                            || read_rows(gpu, &y_cb, n, &srows),
                            |y| {
                                (
                                    rel_err_rows(y, n, &cpos, &oracle_plain),
                                    sf_ref.as_ref().map(|r| rel_err(y, r)),
                                )
                            },
                            note,
                        );
                        cb_out = cb_out.or(out);
                        meas.push(mm);
                    }
                }
                Err(e) => meas.push(na(CUBLAS, m, e)),
            }
            pb.inc(1);
            let cross_ref = sf_ref.or(cb_out);

            let y_lt = gpu.stream.alloc_zeros::<T>(n * m_pad)?;
            poison(gpu, &y_lt)?;
            let m_lt = match &ltw {
                Ok(w) => {
                    match LtGemm::new::<T>(
                        w,
                        &gpu.stream,
                        m_pad,
                        n,
                        k,
                        xp,
                        dptr(&y_lt, &gpu.stream),
                    ) {
                        Ok(mut g) => {
                            let mut note = format!("alg {} ", g.alg_id);
                            if m_pad != m {
                                note.push_str(&format!("M padded {m}→{m_pad} (cuSPARSELt needs M a multiple of 8, ≥ 8); "));
                            }
                            note.push_str("output Yᵀ row-major");
                            let (ms_, _) = measure(
                                gpu,
                                &mut g,
                                CUSPARSELT,
                                m_pad,
                                cfg.time,
                                || Ok(untranspose_rows(&read(gpu, &y_lt)?, n, m_pad, &srows)),
                                |y| {
                                    (
                                        rel_err_rows(y, n, &cpos, &oracle_plain),
                                        cross_ref.as_ref().map(|r| rel_err(y, r)),
                                    )
                                },
                                note,
                            );
                            ms_
                        }
                        Err(e) => na(CUSPARSELT, m_pad, format!("{e:#}")),
                    }
                }
                Err(e) => na(CUSPARSELT, m_pad, e.clone()),
            };
            meas.push(m_lt);
            pb.inc(1);
            gpu.sync()?;

            for mm in &mut meas {
                let sparse = !is_dense(&mm.contender);
                derive(mm, mm.m_run, n, k, sparse, es, cfg);
            }
            rows.push(Row::new(layer.name.clone(), n, k, m, SPARSEFLOW, meas));
            on_row(&rows)?;
        }
    }
    Ok(rows)
}

/// The dense tensor-core ceiling: the fastest dense path on a large square GEMM (TFLOP/s,
/// median of samples).
pub fn measure_dense_tflops<T: GpuElement>(gpu: &Gpu, cb: &Rc<Cublas>) -> Result<f64> {
    let s = 8192;
    let w = gpu.stream.clone_htod(&random::<T>(s * s, 7))?;
    let x = gpu.stream.clone_htod(&random::<T>(s * s, 8))?;
    let y = gpu.stream.alloc_zeros::<T>(s * s)?;
    let (wp, xp, yp) = (
        dptr(&w, &gpu.stream),
        dptr(&x, &gpu.stream),
        dptr(&y, &gpu.stream),
    );
    let plan = DensePlan::fastest::<T>(cb, gpu, s, s, s, wp, xp, yp)?;
    let weights = [w];
    let mut g = CublasGemm {
        plan: &plan,
        weights: &weights,
        x: xp,
        y: yp,
    };
    let cfg = TimeCfg {
        samples: 5,
        sample_ms: 20.0,
        warmup_ms: 50.0,
        graph: false,
    };
    let (t, _) = time_gemm(gpu, &mut g, cfg)?;
    Ok(2.0 * (s * s * s) as f64 / (t.median_us * 1e-6) / 1e12)
}
