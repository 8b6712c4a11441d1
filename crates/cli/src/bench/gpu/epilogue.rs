//! `--epilogue-overhead`: SparseFlow with the epilogue fused vs the plain GEMM vs the plain
//! GEMM followed by a separate elementwise kernel (and cuBLAS plain / + separate for context).

use std::rc::Rc;

use anyhow::Result;
use indicatif::ProgressBar;
use sparseflow_core::EpilogueKind;

use super::check::{rel_err_rows, TOLERANCE};
use super::cublas::{Cublas, CublasGemm, DensePlan};
use super::elementwise::Elementwise;
use super::problem::{check_rows, oracle_rows, random, HostLayer};
use super::sparseflow::{self as sf, SfGemm};
use super::{copies_for, dptr, time_gemm, Gemm, Gpu, GpuElement, TimeCfg};
use crate::bench::report::EpilogueRow;
use crate::bench::shapes::Layer;

/// A GEMM followed by the separate epilogue kernel, timed as one unit.
struct Then<'a, G> {
    gemm: G,
    ew: &'a Elementwise,
    gpu: &'a Gpu,
    y: u64,
    b: u64,
    total: usize,
    n: usize,
}

impl<G: Gemm> Gemm for Then<'_, G> {
    fn copies(&self) -> usize {
        self.gemm.copies()
    }
    fn launch(&mut self, copy: usize) -> Result<()> {
        self.gemm.launch(copy)?;
        self.ew.launch(self.gpu, self.y, self.b, self.total, self.n)
    }
}

#[allow(clippy::too_many_arguments)]
pub fn run<T: GpuElement>(
    gpu: &Gpu,
    sf_ctx: &std::result::Result<sparseflow_runtime::Context, String>,
    cublas: &std::result::Result<Rc<Cublas>, String>,
    layers: &[Layer],
    ms: &[usize],
    epi: EpilogueKind,
    time: TimeCfg,
    rotation: usize,
    hot: bool,
    seed: u64,
    pb: &ProgressBar,
) -> Result<Vec<EpilogueRow>> {
    let es = std::mem::size_of::<T>();
    let none = EpilogueKind::from_name("none")?;
    let ew = Elementwise::new(
        gpu,
        epi,
        es == 2 && T::DTYPE == sparseflow_core::DType::BF16,
    );
    let mut out = Vec::new();
    for (li, layer) in layers.iter().enumerate() {
        let (n, k) = (layer.n, layer.k);
        let host = HostLayer::<T>::new(n, k, epi, seed + li as u64)?;
        let bias = match &host.bias {
            Some(b) => Some(gpu.stream.clone_htod(b)?),
            None => None,
        };
        let bp = bias.as_ref().map_or(0, |b| dptr(b, &gpu.stream));
        let copies = copies_for(n * k / 2 * es + n * k / 8, rotation, hot);
        // Uploaded once per shape, shared by every M.
        let uploads = sf_ctx
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e}"))
            .and_then(|ctx| {
                Ok((
                    sf::upload(ctx, &host.sparse, None, none, copies)?,
                    sf::upload(ctx, &host.sparse, host.bias.as_deref(), epi, copies)?,
                ))
            });
        let mut ws = vec![];
        if cublas.is_ok() {
            let w0 = gpu.stream.clone_htod(&host.dense)?;
            for _ in 0..copies_for(n * k * es, rotation, hot) {
                ws.push(gpu.stream.clone_dtod(&w0)?);
            }
        }
        for &m in ms {
            pb.set_message(format!("epilogue {} {n}×{k} M={m}", epi.name()));
            let x_host = random::<T>(m * k, seed ^ m as u64);
            let x = gpu.stream.clone_htod(&x_host)?;
            let y = gpu.stream.alloc_zeros::<T>(m * n)?;
            let (xp, yp) = (dptr(&x, &gpu.stream), dptr(&y, &gpu.stream));
            let mut row = EpilogueRow {
                layer: layer.name.clone(),
                n,
                k,
                m,
                epilogue: epi.name().into(),
                plain_us: None,
                fused_us: None,
                plain_plus_separate_us: None,
                fused_overhead_pct: None,
                cublas_plain_us: None,
                cublas_plus_separate_us: None,
                note: String::new(),
            };
            let notes = std::cell::RefCell::new(Vec::new());
            let stream = gpu.cu_stream() as *mut std::ffi::c_void;
            let t = |g: &mut dyn Gemm| -> Option<f64> {
                match time_gemm(gpu, g, time) {
                    Ok((s, _)) => Some(s.median_us),
                    Err(e) => {
                        notes.borrow_mut().push(format!("{e:#}"));
                        None
                    }
                }
            };
            match &uploads {
                Ok((p, f)) => {
                    let ready = sf::prepare(p, m)
                        .and_then(|_| sf::prepare(f, m))
                        .and_then(|_| check_fused(gpu, f, xp, &y, m, &x_host, &host, epi));
                    match ready {
                        Ok(()) => {
                            row.plain_us = t(&mut SfGemm {
                                gemms: p,
                                x: xp,
                                y: yp,
                                m,
                                stream,
                            });
                            row.fused_us = t(&mut SfGemm {
                                gemms: f,
                                x: xp,
                                y: yp,
                                m,
                                stream,
                            });
                            if let Ok(ew) = &ew {
                                row.plain_plus_separate_us = t(&mut Then {
                                    gemm: SfGemm {
                                        gemms: p,
                                        x: xp,
                                        y: yp,
                                        m,
                                        stream,
                                    },
                                    ew,
                                    gpu,
                                    y: yp,
                                    b: bp,
                                    total: m * n,
                                    n,
                                });
                            }
                        }
                        Err(e) => notes.borrow_mut().push(format!("SparseFlow: {e:#}")),
                    }
                }
                Err(e) => notes.borrow_mut().push(format!("SparseFlow n/a: {e:#}")),
            }
            if let Ok(h) = cublas {
                let w0 = dptr(&ws[0], &gpu.stream);
                let plan = DensePlan::fastest::<T>(h, gpu, m, n, k, w0, xp, yp);
                if let Ok(plan) = &plan {
                    row.cublas_plain_us = t(&mut CublasGemm {
                        plan,
                        weights: &ws,
                        x: xp,
                        y: yp,
                    });
                }
                if let (Ok(plan), Ok(ew)) = (&plan, &ew) {
                    row.cublas_plus_separate_us = t(&mut Then {
                        gemm: CublasGemm {
                            plan,
                            weights: &ws,
                            x: xp,
                            y: yp,
                        },
                        ew,
                        gpu,
                        y: yp,
                        b: bp,
                        total: m * n,
                        n,
                    });
                }
            }
            if let Err(e) = &ew {
                notes
                    .borrow_mut()
                    .push(format!("elementwise kernel: {e:#}"));
            }
            row.fused_overhead_pct = row
                .fused_us
                .zip(row.plain_us)
                .map(|(f, p)| 100.0 * (f / p - 1.0));
            row.note = notes.borrow().join("; ");
            gpu.sync()?;
            out.push(row);
            pb.inc(1);
        }
    }
    Ok(out)
}

/// The fused kernel's output must match the float64 oracle (with the epilogue) before timing.
#[allow(clippy::too_many_arguments)]
fn check_fused<T: GpuElement>(
    gpu: &Gpu,
    fused: &[sparseflow_runtime::SparseGemm],
    xp: u64,
    y: &cudarc::driver::CudaSlice<T>,
    m: usize,
    x_host: &[T],
    host: &HostLayer<T>,
    epi: EpilogueKind,
) -> Result<()> {
    let mut g = SfGemm {
        gemms: fused,
        x: xp,
        y: dptr(y, &gpu.stream),
        m,
        stream: gpu.cu_stream() as *mut _,
    };
    g.launch(0)?;
    gpu.sync()?;
    let out: Vec<f64> = gpu
        .stream
        .clone_dtoh(y)?
        .iter()
        .map(|v| v.to_f64())
        .collect();
    let rows = check_rows(m);
    let err = rel_err_rows(&out, host.n, &rows, &oracle_rows(x_host, host, epi, &rows));
    if err.is_nan() || err > TOLERANCE {
        anyhow::bail!(
            "fused {} output wrong (rel err {err:.2e}); not timed",
            epi.name()
        );
    }
    Ok(())
}
