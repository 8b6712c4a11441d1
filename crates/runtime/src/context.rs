//! `Context`: which device serves the API (CPU backend or one CUDA GPU), its default stream,
//! and the caches shared by every layer on it (loaded kernels, split-K workspaces).
//!
//! A GPU context uses the device's *primary* context (the one PyTorch and the CUDA runtime
//! use), so pointers and streams created by other libraries in the process work here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cudarc::driver::{sys, CudaContext, CudaStream};
use sparseflow_ir::{DeviceFacts, Target};

use crate::error::{Result, RuntimeError};
use crate::kernels::KernelCache;
use crate::launch;
use crate::workspace::WorkspacePool;

/// Where a [`Context`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    /// The CPU backend: rayon, the exact reference semantics of `sparseflow_core`.
    Cpu,
    /// CUDA device with this ordinal (as `cuda:i` in PyTorch; honours `CUDA_VISIBLE_DEVICES`).
    Cuda(usize),
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// What the device is. For the CPU backend: name "cpu", target "cpu", zeros elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub device: Device,
    pub name: String,
    /// (major, minor), e.g. (9, 0) for H100.
    pub compute_capability: (u32, u32),
    /// The code generator's target for this device: `sm_80`, `sm_86`, `sm_89`, `sm_90a`, ...
    pub target: String,
    pub sm_count: u32,
    /// Driver API version as "major.minor" (e.g. "13.0"); empty on the CPU backend.
    pub driver_version: String,
    pub total_memory_bytes: usize,
    /// Largest dynamic shared memory a block may opt into.
    pub max_smem_per_block: u32,
    pub l2_bytes: u32,
}

/// What a GPU context holds on the device beyond the layers' weights, for memory reports
/// (`Context::runtime_memory`; all zero on the CPU backend).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuntimeMemory {
    /// Split-K workspaces, live and retired, all streams (`cuMemAlloc`).
    pub workspace_bytes: usize,
    /// Kernels loaded into the context (one module each, only the M buckets used).
    pub loaded_kernels: usize,
    /// Their code (cubin) bytes: about what the driver keeps on the device for the modules.
    pub kernel_code_bytes: usize,
    /// The largest local memory per thread of a loaded kernel; non-zero means the driver
    /// reserves that much for every thread the GPU can hold.
    pub max_kernel_local_bytes: usize,
    /// The context's per-thread stack limit now (`CU_LIMIT_STACK_SIZE`). The primary context
    /// is shared with PyTorch and every other library in the process, so a rise may come from
    /// any of them; compare it before and after.
    pub stack_limit_bytes: usize,
}

/// Maps a compute capability to the code generator's target name (`sparseflow_ir`'s
/// `arch_for`, the one mapping).
pub use sparseflow_ir::targets::arch_for as target_for;

pub(crate) struct GpuState {
    pub(crate) ctx: Arc<CudaContext>,
    pub(crate) stream: Arc<CudaStream>,
    pub(crate) info: DeviceInfo,
    /// What planning knows of this GPU (`Target::for_device`): its own SM count, L2, shared
    /// memory and registers, bandwidth from the matching preset.
    pub(crate) target: Target,
    pub(crate) kernels: KernelCache,
    pub(crate) workspaces: WorkspacePool,
    /// Private non-blocking stream for weight and bias uploads.
    pub(crate) aux: launch::OwnedStream,
    /// Launch kernels with programmatic stream serialization (see
    /// [`Context::set_programmatic_launch`]); off unless asked for, and only ever on for sm_90+.
    pub(crate) programmatic_launch: AtomicBool,
}

enum Backend {
    Cpu,
    Gpu(Box<GpuState>),
}

struct Inner {
    backend: Backend,
    info: DeviceInfo,
    fallback_reason: Option<String>,
}

/// A device plus its caches. Cheap to clone (`Arc`), `Send + Sync`: share one per device.
#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("device", &self.inner.info.device)
            .field("name", &self.inner.info.name)
            .field("target", &self.inner.info.target)
            .field("fallback_reason", &self.inner.fallback_reason)
            .finish()
    }
}

fn cpu_info() -> DeviceInfo {
    DeviceInfo {
        device: Device::Cpu,
        name: "cpu".into(),
        compute_capability: (0, 0),
        target: "cpu".into(),
        sm_count: 0,
        driver_version: String::new(),
        total_memory_bytes: 0,
        max_smem_per_block: 0,
        l2_bytes: 0,
    }
}

impl Context {
    /// A context on `device`. For `Device::Cuda(i)`: errors when no driver is installed, the
    /// device does not exist, or it is older than sm_80.
    pub fn new(device: Device) -> Result<Context> {
        match device {
            Device::Cpu => Ok(Context::cpu()),
            Device::Cuda(index) => Ok(Context::wrap(
                Backend::Gpu(Box::new(open_gpu(index)?)),
                None,
            )),
        }
    }

    /// The CPU backend.
    pub fn cpu() -> Context {
        Context::wrap(Backend::Cpu, None)
    }

    /// The first GPU if it is usable, else the CPU backend; [`Context::fallback_reason`] says why.
    pub fn auto() -> Context {
        match open_gpu(0) {
            Ok(gpu) => Context::wrap(Backend::Gpu(Box::new(gpu)), None),
            Err(e) => Context::wrap(Backend::Cpu, Some(e.to_string())),
        }
    }

    fn wrap(backend: Backend, fallback_reason: Option<String>) -> Context {
        let info = match &backend {
            Backend::Cpu => cpu_info(),
            Backend::Gpu(g) => g.info.clone(),
        };
        Context {
            inner: Arc::new(Inner {
                backend,
                info,
                fallback_reason,
            }),
        }
    }

    /// Why [`Context::auto`] fell back to the CPU (None when it did not).
    pub fn fallback_reason(&self) -> Option<String> {
        self.inner.fallback_reason.clone()
    }

    pub fn device(&self) -> Device {
        self.inner.info.device
    }

    pub fn is_gpu(&self) -> bool {
        matches!(self.inner.backend, Backend::Gpu(_))
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.inner.info
    }

    /// The cudarc context (the device's primary context) for crates that need raw CUDA.
    pub fn cuda_context(&self) -> Option<Arc<CudaContext>> {
        self.gpu().map(|g| g.ctx.clone())
    }

    /// The context's default stream (the legacy NULL stream, as PyTorch's default stream).
    pub fn default_stream(&self) -> Option<Arc<CudaStream>> {
        self.gpu().map(|g| g.stream.clone())
    }

    /// Waits for all work on the device (no-op on the CPU backend).
    pub fn synchronize(&self) -> Result<()> {
        match self.gpu() {
            Some(g) => g
                .ctx
                .synchronize()
                .map_err(|e| RuntimeError::cuda("cuCtxSynchronize", e)),
            None => Ok(()),
        }
    }

    /// Number of kernels loaded into this context so far (compiled or read from the disk cache).
    pub fn loaded_kernel_count(&self) -> usize {
        self.gpu().map_or(0, |g| g.kernels.len())
    }

    /// Device bytes held by split-K workspaces (all streams, all layers).
    pub fn workspace_bytes(&self) -> usize {
        self.gpu().map_or(0, |g| g.workspaces.bytes())
    }

    /// What this context holds on the device besides the layers' weights (see
    /// [`RuntimeMemory`]); all zero on the CPU backend.
    pub fn runtime_memory(&self) -> Result<RuntimeMemory> {
        let Some(g) = self.gpu() else {
            return Ok(RuntimeMemory::default());
        };
        let (kernel_code_bytes, max_kernel_local_bytes) = g.kernels.footprint();
        Ok(RuntimeMemory {
            workspace_bytes: g.workspaces.bytes(),
            loaded_kernels: g.kernels.len(),
            kernel_code_bytes,
            max_kernel_local_bytes,
            stack_limit_bytes: launch::stack_limit(&g.ctx)?,
        })
    }

    /// Whether kernels are launched with programmatic dependent launch (PDL), an sm_90+ opt-in
    /// (see [`Context::set_programmatic_launch`]). A kernel's launch and CTA setup then overlap
    /// the end of the previous kernel on the stream; it waits for that kernel
    /// (`griddepcontrol.wait`) before its first memory access, so results are the same either
    /// way. It never triggers its successor early: the overlap is the same whatever kernel comes
    /// before.
    pub fn programmatic_launch(&self) -> bool {
        self.gpu()
            .is_some_and(|g| g.programmatic_launch.load(Ordering::Relaxed))
    }

    /// Turns programmatic dependent launch on or off for later launches. Off by default: on the
    /// H100 it makes chains of decode kernels 3–5% faster (`sparseflow benchmark --pdl`), but
    /// in end-to-end A/B runs of a transformers Llama under PyTorch's CUDA graphs it gained
    /// nothing at batch 1 and cost 7–9% at batch 16 (docs/PERFORMANCE.md). Devices before sm_90
    /// do not have it: turning it on there is an error.
    pub fn set_programmatic_launch(&self, on: bool) -> Result<()> {
        match self.gpu() {
            Some(g) if !on || supports_programmatic_launch(&g.info) => {
                g.programmatic_launch.store(on, Ordering::Relaxed);
                Ok(())
            }
            None if !on => Ok(()),
            None => Err(RuntimeError::NeedsGpu("programmatic dependent launch")),
            Some(_) => Err(RuntimeError::Unsupported(format!(
                "programmatic dependent launch needs an sm_90+ GPU; this context is {}",
                self.inner.info.target
            ))),
        }
    }

    /// The planning target of this GPU (None on the CPU backend).
    pub fn target(&self) -> Option<&Target> {
        self.gpu().map(|g| &g.target)
    }

    pub(crate) fn gpu(&self) -> Option<&GpuState> {
        match &self.inner.backend {
            Backend::Gpu(g) => Some(g),
            Backend::Cpu => None,
        }
    }
}

/// Programmatic dependent launch (and `griddepcontrol` in the kernels) exists from sm_90 on.
fn supports_programmatic_launch(info: &DeviceInfo) -> bool {
    info.compute_capability.0 >= 9
}

/// `$SPARSEFLOW_TARGET` names a preset to plan with instead of the device's own numbers (an
/// A/B of the cost model's inputs, e.g. `sm_90a` = H100 on an H200); it must have the
/// device's architecture, since kernels are compiled for it.
fn planning_target(device: Target) -> Result<Target> {
    let Some(name) = std::env::var("SPARSEFLOW_TARGET")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        return Ok(device);
    };
    let preset = sparseflow_ir::target(&name)?;
    if preset.arch != device.arch {
        return Err(RuntimeError::Unsupported(format!(
            "SPARSEFLOW_TARGET={name} is an {} target, this GPU is {}",
            preset.arch, device.arch
        )));
    }
    Ok(preset.clone())
}

fn open_gpu(index: usize) -> Result<GpuState> {
    launch::ensure_driver()?;
    let count =
        CudaContext::device_count().map_err(|e| RuntimeError::cuda("cuDeviceGetCount", e))?;
    let count = usize::try_from(count).unwrap_or(0);
    if count == 0 {
        return Err(RuntimeError::NoDriver(
            "the driver reports no CUDA device".into(),
        ));
    }
    if index >= count {
        return Err(RuntimeError::NoSuchDevice { index, count });
    }
    let ctx =
        CudaContext::new(index).map_err(|e| RuntimeError::cuda("cuDevicePrimaryCtxRetain", e))?;
    let attr = |a: sys::CUdevice_attribute| -> Result<u32> {
        ctx.attribute(a)
            .map(|v| v.max(0) as u32)
            .map_err(|e| RuntimeError::cuda("cuDeviceGetAttribute", e))
    };
    use sys::CUdevice_attribute::*;
    let major = attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
    let minor = attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
    let name = ctx
        .name()
        .map_err(|e| RuntimeError::cuda("cuDeviceGetName", e))?;
    if major < 8 {
        return Err(RuntimeError::ArchTooOld { major, minor, name });
    }
    let device_target = Target::for_device(&DeviceFacts {
        name: name.clone(),
        compute_capability: (major, minor),
        sm_count: attr(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?,
        smem_per_sm: attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR)?,
        max_smem_per_block: attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?,
        regs_per_sm: attr(CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR)?,
        max_threads_per_sm: attr(CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR)?,
        max_blocks_per_sm: attr(CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR)?,
        l2_bytes: u64::from(attr(CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)?),
    });
    let target = planning_target(device_target)?;
    let info = DeviceInfo {
        device: Device::Cuda(index),
        name,
        compute_capability: (major, minor),
        target: target.arch.to_string(),
        sm_count: target.sm_count,
        driver_version: launch::driver_version()?,
        total_memory_bytes: ctx
            .total_mem()
            .map_err(|e| RuntimeError::cuda("cuDeviceTotalMem", e))?,
        max_smem_per_block: target.max_smem_per_block,
        l2_bytes: target.l2_bytes as u32,
    };
    let stream = ctx.default_stream();
    let aux = launch::OwnedStream::new(&ctx)?;
    Ok(GpuState {
        programmatic_launch: AtomicBool::new(false),
        aux,
        kernels: KernelCache::default(),
        workspaces: WorkspacePool::new(ctx.clone()),
        ctx,
        stream,
        info,
        target,
    })
}
