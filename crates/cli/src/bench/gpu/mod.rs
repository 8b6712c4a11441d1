//! The GPU side of `sparseflow benchmark`: device, timing harness, contenders.

pub mod check;
pub mod cublas;
pub mod cusparselt;
pub mod e2e;
pub mod elementwise;
pub mod epilogue;
pub mod lt_ffi;
pub mod nvml;
pub mod problem;
pub mod sparseflow;
pub mod sweep;

use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use cudarc::driver::{sys, CudaContext, CudaSlice, CudaStream, DevicePtr, DeviceRepr};

use super::report::DeviceInfo;
use super::stats::{summarize, Summary};

/// The device and the one stream every contender launches on.
pub struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub info: DeviceInfo,
    pub l2_bytes: usize,
    /// Clock and power readings while timing; `None` without NVML.
    pub nvml: Option<nvml::Nvml>,
}

impl Gpu {
    /// Opens device 0. Without a driver or a GPU, a clear error that suggests `--cpu`.
    pub fn open() -> Result<Gpu> {
        // SAFETY: only probes whether libcuda can be loaded; no CUDA call is made.
        if !unsafe { sys::is_culib_present() } {
            bail!("no CUDA driver found (libcuda.so could not be loaded): this machine has no NVIDIA GPU or driver. Run `sparseflow benchmark --cpu` to time the CPU sparse vs dense reference instead");
        }
        let ctx = CudaContext::new(0).map_err(|e| {
            anyhow::anyhow!("could not open CUDA device 0 ({e}); is an NVIDIA GPU visible? Run with --cpu to benchmark the CPU backend instead")
        })?;
        // SAFETY: every buffer is used on the single benchmark stream, in order, so cudarc's
        // cross-stream event tracking is not needed (and would add events to timed regions).
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().context("creating the benchmark stream")?;
        let attr = |a| ctx.attribute(a).ok();
        let l2 =
            attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE).unwrap_or(50 << 20);
        let nvml = nvml::Nvml::open(0);
        let (sm_clock, sm_clock_max, driver) = nvml.as_ref().map_or((None, None, None), |n| {
            (n.sm_clock(), n.max_sm_clock(), n.driver_version())
        });
        let mut cuda_ver = 0i32;
        // SAFETY: plain out-parameter query.
        let cuda_driver_api = (unsafe { sys::cuDriverGetVersion(&mut cuda_ver) }
            == sys::CUresult::CUDA_SUCCESS)
            .then(|| format!("{}.{}", cuda_ver / 1000, (cuda_ver % 1000) / 10));
        let info = DeviceInfo {
            name: ctx.name().unwrap_or_else(|_| "unknown".into()),
            compute_capability: ctx
                .compute_capability()
                .ok()
                .map(|(a, b)| format!("{a}.{b}")),
            sm_count: attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
                .map(|v| v as u32),
            l2_bytes: Some(l2 as u64),
            memory_bytes: ctx.total_mem().ok().map(|v| v as u64),
            sm_clock_mhz: sm_clock,
            sm_clock_max_mhz: sm_clock_max.or_else(|| {
                attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_CLOCK_RATE)
                    .map(|khz| khz as u32 / 1000)
            }),
            driver_version: driver,
            cuda_driver_api,
            ..DeviceInfo::default()
        };
        Ok(Gpu {
            ctx,
            stream,
            info,
            l2_bytes: l2 as usize,
            nvml,
        })
    }

    pub fn sync(&self) -> Result<()> {
        self.stream
            .synchronize()
            .context("stream synchronize (a kernel failed?)")
    }

    /// Raw stream handle for libraries.
    pub fn cu_stream(&self) -> sys::CUstream {
        self.stream.cu_stream()
    }

    /// Mean time of one call of `f` (which enqueues work on the benchmark stream) over `iters`
    /// back-to-back calls after one warm-up call, in ms: a quick ranking, not a measurement.
    pub fn time_ms(&self, iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
        let ev = || {
            self.ctx
                .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
        };
        let (start, end) = (ev()?, ev()?);
        f()?;
        start.record(&self.stream)?;
        for _ in 0..iters.max(1) {
            f()?;
        }
        end.record(&self.stream)?;
        end.synchronize().context("kernel failed while ranking")?;
        Ok(start.elapsed_ms(&end)? as f64 / iters.max(1) as f64)
    }

    /// Measured device-to-device copy bandwidth, counting read + write bytes (TB/s).
    pub fn measure_copy_tbps(&self) -> Result<f64> {
        let len = 256 << 20; // 512 MB each way in u16
        let src = self.stream.alloc_zeros::<u16>(len)?;
        let mut dst = self.stream.alloc_zeros::<u16>(len)?;
        let mut best = f64::INFINITY;
        let start = self
            .ctx
            .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))?;
        let end = self
            .ctx
            .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))?;
        for _ in 0..6 {
            start.record(&self.stream)?;
            self.stream.memcpy_dtod(&src, &mut dst)?;
            end.record(&self.stream)?;
            end.synchronize()?;
            best = best.min(start.elapsed_ms(&end)? as f64);
        }
        Ok(2.0 * (len * 2) as f64 / (best * 1e-3) / 1e12)
    }
}

/// The raw device address of a buffer (event tracking is off, so nothing is recorded).
pub fn dptr<T>(s: &CudaSlice<T>, stream: &CudaStream) -> u64 {
    let (p, _sync) = s.device_ptr(stream);
    p
}

/// Copies of a weight of `bytes` so that rotating through them spans `rotation_bytes`.
pub fn copies_for(bytes: usize, rotation_bytes: usize, hot: bool) -> usize {
    if hot || bytes == 0 {
        1
    } else {
        // At least two copies: consecutive launches never reuse the same weight.
        rotation_bytes.div_ceil(bytes).clamp(2, 512)
    }
}

/// Something the harness can launch: one GEMM per call, rotating through weight copies.
pub trait Gemm {
    fn copies(&self) -> usize;
    /// Enqueues one launch using weight copy `copy` on the benchmark stream.
    fn launch(&mut self, copy: usize) -> Result<()>;
}

/// Timing knobs (see `--help`).
#[derive(Debug, Clone, Copy)]
pub struct TimeCfg {
    pub samples: usize,
    pub sample_ms: f64,
    pub warmup_ms: f64,
    /// Capture each sample's launches in a CUDA graph and time its replay (no host launch gaps).
    pub graph: bool,
}

/// Times `g`: warm-up, then `samples` samples of many back-to-back launches each, between
/// two CUDA events; a sample's value is its mean per-launch time. Returns the statistics
/// over samples and the launches per sample.
pub fn time_gemm(gpu: &Gpu, g: &mut dyn Gemm, cfg: TimeCfg) -> Result<(Summary, usize)> {
    time_gemm_with_clocks(gpu, g, cfg).map(|(t, launches, _)| (t, launches))
}

/// [`time_gemm`], plus an NVML reading after each sample (SM clock, power, clock-event
/// reasons): the clock the samples ran at. The reading is taken outside the timed region.
pub fn time_gemm_with_clocks(
    gpu: &Gpu,
    g: &mut dyn Gemm,
    cfg: TimeCfg,
) -> Result<(Summary, usize, Vec<nvml::Reading>)> {
    let mut readings = Vec::with_capacity(cfg.samples);
    let mut read = || {
        if let Some(n) = &gpu.nvml {
            readings.push(n.reading());
        }
    };
    let start = gpu
        .ctx
        .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))?;
    let end = gpu
        .ctx
        .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))?;
    let copies = g.copies().max(1);
    let mut copy = 0usize;
    let mut run = |g: &mut dyn Gemm, n: usize| -> Result<f64> {
        start.record(&gpu.stream)?;
        for _ in 0..n {
            g.launch(copy)?;
            copy = (copy + 1) % copies;
        }
        end.record(&gpu.stream)?;
        end.synchronize().context("kernel failed while timing")?;
        Ok(start.elapsed_ms(&end)? as f64)
    };
    // Warm-up: grow the batch until it lasts warmup_ms; this also estimates the launch time.
    let mut n = 1usize;
    let mut per_launch_ms;
    loop {
        let ms = run(g, n)?;
        per_launch_ms = ms / n as f64;
        if ms >= cfg.warmup_ms || n >= 1 << 14 {
            break;
        }
        n *= 4;
    }
    let launches =
        ((cfg.sample_ms / per_launch_ms.max(1e-6)).ceil() as usize).clamp(copies.min(64), 20_000);
    let mut samples = Vec::with_capacity(cfg.samples);
    if cfg.graph {
        let launches = launches.min(2000);
        let graph = capture(gpu, g, launches, copies)?;
        graph.upload()?;
        for _ in 0..=cfg.samples {
            start.record(&gpu.stream)?;
            graph.launch()?;
            end.record(&gpu.stream)?;
            end.synchronize()
                .context("kernel failed while timing (graph)")?;
            samples.push(start.elapsed_ms(&end)? as f64 * 1e3 / launches as f64);
            read();
        }
        samples.remove(0); // the first replay is a warm-up
        let summary = summarize(&samples).context("timing produced no finite samples")?;
        return Ok((summary, launches, readings));
    }
    for _ in 0..cfg.samples {
        samples.push(run(g, launches)? * 1e3 / launches as f64);
        read();
    }
    let summary = summarize(&samples).context("timing produced no finite samples")?;
    Ok((summary, launches, readings))
}

/// Captures `launches` launches (rotating copies) into a CUDA graph.
fn capture(
    gpu: &Gpu,
    g: &mut dyn Gemm,
    launches: usize,
    copies: usize,
) -> Result<cudarc::driver::CudaGraph> {
    gpu.stream
        .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
        .context("begin graph capture")?;
    let mut launched = Ok(());
    for i in 0..launches {
        launched = g.launch(i % copies);
        if launched.is_err() {
            break;
        }
    }
    let graph = gpu
        .stream
        .end_capture(sys::CUgraphInstantiate_flags(0))
        .context("end graph capture");
    launched.context("launch during graph capture")?;
    graph?.context("graph capture produced no graph")
}

/// Element types the GPU path runs: fp16 and bf16.
pub trait GpuElement:
    sparseflow_core::Element + DeviceRepr + cudarc::driver::ValidAsZeroBits
{
    /// cudaDataType value.
    const CUDA_TYPE: i32;
}
impl GpuElement for half::f16 {
    const CUDA_TYPE: i32 = lt_ffi::CUDA_R_16F;
}
impl GpuElement for half::bf16 {
    const CUDA_TYPE: i32 = lt_ffi::CUDA_R_16BF;
}
