//! `--cpu`: the CPU sparse reference (`sparse_gemm` on the compressed weight) vs the CPU dense
//! reference (`dense_gemm`, same algorithm) of sparseflow-core. Runs anywhere, no GPU.

use std::time::Instant;

use anyhow::Result;
use indicatif::ProgressBar;
use sparseflow_core::{dense_gemm, sparse_gemm, Element, EpilogueKind};

use super::gpu::problem::{random, HostLayer};
use super::report::{Measurement, Row, CPU_DENSE, CPU_SPARSE};
use super::shapes::Layer;
use super::stats::summarize;

pub struct CpuCfg {
    pub samples: usize,
    pub sample_ms: f64,
    pub warmup_ms: f64,
    pub seed: u64,
    pub epilogue: EpilogueKind,
}

fn time(cfg: &CpuCfg, mut f: impl FnMut() -> Result<()>) -> Result<(super::stats::Summary, usize)> {
    // Warm-up, which also estimates one call's time.
    let t0 = Instant::now();
    let mut calls = 0usize;
    while calls == 0 || t0.elapsed().as_secs_f64() * 1e3 < cfg.warmup_ms {
        f()?;
        calls += 1;
    }
    let per_call_ms = t0.elapsed().as_secs_f64() * 1e3 / calls as f64;
    let reps = ((cfg.sample_ms / per_call_ms).ceil() as usize).clamp(1, 100_000);
    let mut samples = Vec::with_capacity(cfg.samples);
    for _ in 0..cfg.samples {
        let t = Instant::now();
        for _ in 0..reps {
            f()?;
        }
        samples.push(t.elapsed().as_secs_f64() * 1e6 / reps as f64);
    }
    Ok((
        summarize(&samples).ok_or_else(|| anyhow::anyhow!("no samples"))?,
        reps,
    ))
}

fn measurement(
    name: &str,
    m: usize,
    s: super::stats::Summary,
    reps: usize,
    bytes: usize,
    flops: f64,
) -> Measurement {
    let secs = s.median_us * 1e-6;
    Measurement {
        contender: name.into(),
        m_run: m,
        time: Some(s),
        tbps: Some(bytes as f64 / secs / 1e12),
        tflops: Some(flops / secs / 1e12),
        pct_of_limit: None,
        bound: None,
        rel_err_oracle: None,
        rel_err_cross: None,
        weight_copies: 1,
        launches_per_sample: reps,
        note: String::new(),
        clocks: None,
    }
}

pub fn run<T: Element>(
    layers: &[Layer],
    ms: &[usize],
    cfg: &CpuCfg,
    pb: &ProgressBar,
) -> Result<Vec<Row>> {
    let es = std::mem::size_of::<T>();
    let mut rows = Vec::new();
    for (li, l) in layers.iter().enumerate() {
        let host = HostLayer::<T>::new(l.n, l.k, cfg.epilogue, cfg.seed + li as u64)?;
        for &m in ms {
            pb.set_message(format!("cpu {} {}×{} M={m}", l.name, l.n, l.k));
            let x: Vec<T> = random(m * l.k, cfg.seed ^ m as u64);
            let bias = host.bias.as_deref();
            // Check once: sparse and dense agree.
            let ys = sparse_gemm(&x, m, &host.sparse, bias, cfg.epilogue)?;
            let yd = dense_gemm(&x, m, &host.dense, l.n, l.k, bias, cfg.epilogue)?;
            let a: Vec<f64> = ys.iter().map(|v| v.to_f64()).collect();
            let b: Vec<f64> = yd.iter().map(|v| v.to_f64()).collect();
            let err = super::gpu::check::rel_err(&a, &b);
            let io = (m * l.k + m * l.n) * es;
            let flops = 2.0 * (m * l.n * l.k) as f64;
            let (ts, rs) = time(cfg, || {
                sparse_gemm(&x, m, &host.sparse, bias, cfg.epilogue)
                    .map(drop)
                    .map_err(Into::into)
            })?;
            pb.inc(1);
            let (td, rd) = time(cfg, || {
                dense_gemm(&x, m, &host.dense, l.n, l.k, bias, cfg.epilogue)
                    .map(drop)
                    .map_err(Into::into)
            })?;
            pb.inc(1);
            let mut sm = measurement(
                CPU_SPARSE,
                m,
                ts,
                rs,
                l.n * l.k / 2 * es + l.n * l.k / 8 + io,
                flops,
            );
            sm.rel_err_cross = Some(err);
            let dm = measurement(CPU_DENSE, m, td, rd, l.n * l.k * es + io, flops);
            rows.push(Row::new(
                l.name.clone(),
                l.n,
                l.k,
                m,
                CPU_SPARSE,
                vec![sm, dm],
            ));
        }
    }
    Ok(rows)
}
