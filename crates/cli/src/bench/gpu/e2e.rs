//! `--e2e`: the linear layers of a Llama-style decoder stack (q, k, v, o, gate, up, down per
//! layer, real shapes, random 2:4 weights, a distinct weight copy per layer) run token by token
//! at batch 1 and 16: SparseFlow vs the fastest
//! dense path per linear (cublas.rs). Linears only: attention, norms and the
//! activation are left out, so this is the part of a decode step that 2:4 changes. Each linear
//! reads a fixed random input of its width (no chaining, so values stay finite). Tokens/s are
//! for the model's full depth: measured over `layers` distinct layers (each far larger than
//! L2, so per-layer time does not depend on depth) and scaled.

use std::rc::Rc;

use anyhow::Result;
use cudarc::driver::CudaSlice;
use indicatif::ProgressBar;
use sparseflow_core::EpilogueKind;
use sparseflow_runtime::SparseGemm;

use super::cublas::{Cublas, DensePlan};
use super::problem::{random, HostLayer};
use super::sparseflow as sf;
use super::{dptr, time_gemm, Gemm, Gpu, GpuElement, TimeCfg};
use crate::bench::report::E2eRow;
use crate::bench::shapes::{block_layers, BlockConfig};

enum Step<'a> {
    Dense(Vec<(&'a DensePlan, &'a CudaSlice<u8>, u64, u64)>),
    Sparse(
        Vec<(&'a SparseGemm, u64, u64, usize)>,
        *mut std::ffi::c_void,
    ),
}

impl Gemm for Step<'_> {
    fn copies(&self) -> usize {
        1
    }
    fn launch(&mut self, _copy: usize) -> Result<()> {
        match self {
            Step::Dense(v) => v
                .iter()
                .try_for_each(|(p, w, x, y)| p.run(dptr(w, &p_stream(p)), *x, *y)),
            Step::Sparse(v, s) => v.iter().try_for_each(|(g, x, y, m)| {
                // SAFETY: x/y are device buffers of m·k / m·n elements allocated below for
                // this layer's shape; the stream outlives the launch.
                unsafe { g.forward_raw(*x as *const _, *y as *mut _, *m, Some(*s)) }
                    .map_err(|e| anyhow::anyhow!("SparseFlow: {e}"))
            }),
        }
    }
}

fn p_stream(p: &DensePlan) -> std::sync::Arc<cudarc::driver::CudaStream> {
    p.stream()
}

#[allow(clippy::too_many_arguments)]
pub fn run<T: GpuElement>(
    gpu: &Gpu,
    model: &str,
    cfg: &BlockConfig,
    layers: usize,
    sf_ctx: &std::result::Result<sparseflow_runtime::Context, String>,
    cublas: &std::result::Result<Rc<Cublas>, String>,
    time: TimeCfg,
    seed: u64,
    pb: &ProgressBar,
) -> Result<Vec<E2eRow>> {
    let es = std::mem::size_of::<T>();
    let none = EpilogueKind::from_name("none")?;
    let block = block_layers(cfg);
    pb.set_message(format!("e2e {model}: preparing {layers} layers"));
    let hosts: Vec<HostLayer<T>> = block
        .iter()
        .enumerate()
        .map(|(i, l)| HostLayer::new(l.n, l.k, none, seed + 100 + i as u64))
        .collect::<Result<_>>()?;
    // Dense: one device copy per (layer, linear), as bytes.
    let mut dense: Vec<CudaSlice<u8>> = Vec::new();
    if cublas.is_ok() {
        for h in &hosts {
            // SAFETY: reinterpreting fp16/bf16 as bytes for an untyped device copy.
            let bytes = unsafe {
                std::slice::from_raw_parts(h.dense.as_ptr() as *const u8, h.dense.len() * es)
            };
            let first = gpu.stream.clone_htod(bytes)?;
            for _ in 1..layers {
                dense.push(gpu.stream.clone_dtod(&first)?);
            }
            dense.push(first);
        }
    }
    let mut sparse: Vec<SparseGemm> = Vec::new();
    let mut sf_note = String::new();
    if let Ok(ctx) = sf_ctx {
        match hosts
            .iter()
            .map(|h| sf::upload(ctx, &h.sparse, None, none, layers))
            .collect::<Result<Vec<_>>>()
        {
            Ok(v) => sparse = v.into_iter().flatten().collect(),
            Err(e) => sf_note = format!("SparseFlow: {e:#}"),
        }
    } else if let Err(e) = sf_ctx {
        sf_note = format!("SparseFlow n/a: {e}");
    }
    let mut rows = Vec::new();
    for batch in [1usize, 16] {
        pb.set_message(format!("e2e {model} batch {batch}"));
        let xs: Vec<CudaSlice<T>> = block
            .iter()
            .enumerate()
            .map(|(i, l)| {
                gpu.stream.clone_htod(&random::<T>(
                    batch * l.k,
                    seed ^ (i as u64) << 8 ^ batch as u64,
                ))
            })
            .collect::<std::result::Result<_, _>>()?;
        let ys: Vec<CudaSlice<T>> = block
            .iter()
            .map(|l| gpu.stream.alloc_zeros::<T>(batch * l.n))
            .collect::<std::result::Result<_, _>>()?;
        let io = |i: usize| (dptr(&xs[i], &gpu.stream), dptr(&ys[i], &gpu.stream));
        let mut notes = vec![];
        let dense_us = match cublas {
            Ok(h) => {
                // The fastest dense path of each linear's shape, ranked on its first copy.
                let plans = block
                    .iter()
                    .enumerate()
                    .map(|(i, l)| {
                        let (x, y) = io(i);
                        let w = dptr(&dense[i * layers], &gpu.stream);
                        DensePlan::fastest::<T>(h, gpu, batch, l.n, l.k, w, x, y)
                    })
                    .collect::<Result<Vec<_>>>()?;
                let mut steps = Vec::new();
                for layer in 0..layers {
                    for (i, plan) in plans.iter().enumerate() {
                        let (x, y) = io(i);
                        steps.push((plan, &dense[i * layers + layer], x, y));
                    }
                }
                time_gemm(gpu, &mut Step::Dense(steps), time)
                    .map(|(s, _)| s.median_us)
                    .map_err(|e| notes.push(format!("cuBLAS: {e:#}")))
                    .ok()
            }
            Err(e) => {
                notes.push(format!("cuBLAS n/a: {e}"));
                None
            }
        };
        let sparse_us = if sparse.is_empty() {
            None
        } else {
            let prep = sparse
                .iter()
                .try_for_each(|g| g.prepare(batch).map_err(|e| anyhow::anyhow!("{e}")));
            match prep {
                Ok(()) => {
                    let mut steps = Vec::new();
                    for layer in 0..layers {
                        for i in 0..block.len() {
                            let (x, y) = io(i);
                            steps.push((&sparse[i * layers + layer], x, y, batch));
                        }
                    }
                    time_gemm(
                        gpu,
                        &mut Step::Sparse(steps, gpu.cu_stream() as *mut _),
                        time,
                    )
                    .map(|(s, _)| s.median_us)
                    .map_err(|e| notes.push(format!("SparseFlow: {e:#}")))
                    .ok()
                }
                Err(e) => {
                    notes.push(format!("SparseFlow prepare: {e:#}"));
                    None
                }
            }
        };
        if !sf_note.is_empty() {
            notes.push(sf_note.clone());
        }
        gpu.sync()?;
        // Scale the measured `layers` to the model's depth.
        let scale = cfg.layers as f64 / layers as f64;
        let tps = |us: Option<f64>| us.map(|u| batch as f64 / (u * scale * 1e-6));
        rows.push(E2eRow {
            model: model.into(),
            batch,
            layers: cfg.layers,
            sparseflow_us_per_token_step: sparse_us.map(|u| u * scale),
            cublas_us_per_token_step: dense_us.map(|u| u * scale),
            sparseflow_tokens_per_s: tps(sparse_us),
            cublas_tokens_per_s: tps(dense_us),
            speedup: sparse_us.zip(dense_us).map(|(s, d)| d / s),
            note: format!(
                "linears only, {} launches, measured over {layers} distinct layers and scaled to {}{}{}",
                if time.graph { "CUDA-graph" } else { "eager" },
                cfg.layers,
                if notes.is_empty() { "" } else { "; " },
                notes.join("; ")
            ),
        });
        pb.inc(1);
    }
    Ok(rows)
}
