//! The GPU side of a `SparseGemm`: the weight on the device (once per layout the registered
//! families read), the per-M-bucket plan cache (plan → loaded kernel), pointer checks and the
//! launch with the parameters the kernel's family builds.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sparseflow_codegen::{
    upload_layout, CodegenError, KernelSpec, LaunchInputs, UploadLayout, WeightLayout,
};
use sparseflow_core::{Element, EpilogueKind, Sparse24};
use sparseflow_ir::KernelConfig;

use crate::context::{Context, Device, GpuState};
use crate::device_weights::{no_layout_for, DeviceBytes, DeviceWeights};
use crate::error::{Result, RuntimeError};
use crate::kernels::{LoadedKernel, OnceMap};
use crate::launch::{self, DeviceAlloc, PointerKind, RawStream};
use crate::plan::{bucket, plan, registry, LayerDesc};
use crate::report::{KernelInfo, UploadReport, WeightUpload};

/// Kernels load 16 bytes at a time from x and store vectors to y.
const PTR_ALIGN: usize = 16;

type LayoutFn = Arc<dyn Fn(WeightLayout) -> Result<UploadLayout, CodegenError> + Send + Sync>;

#[derive(Default)]
struct Uploads {
    by_layout: HashMap<WeightLayout, Arc<DeviceWeights>>,
    report: Vec<WeightUpload>,
}

/// Everything one M bucket launches with.
pub(crate) struct Planned {
    kernel: Arc<LoadedKernel>,
    weights: Arc<DeviceWeights>,
}

pub(crate) struct GpuLayer {
    desc: LayerDesc,
    bias: Option<DeviceBytes>,
    /// Lays the host weight out; dropped once every layout a family reads is on the device
    /// (`None` from the start for an adopted weight).
    layout: Mutex<Option<LayoutFn>>,
    uploads: Mutex<Uploads>,
    plans: OnceMap<usize, Planned>,
}

impl GpuLayer {
    pub(crate) fn new<T: Element>(
        g: &GpuState,
        weight: &Sparse24<T>,
        bias: Option<&[T]>,
        epilogue: EpilogueKind,
    ) -> Result<Self> {
        let bias = match bias {
            Some(b) => Some(
                DeviceAlloc::from_host(&g.ctx, launch::as_bytes(b), "bias", g.aux.raw())?.into(),
            ),
            None => None,
        };
        let w = Arc::new(weight.clone());
        let layout: LayoutFn = Arc::new(move |l| upload_layout(l, &w));
        Ok(GpuLayer {
            desc: LayerDesc {
                n: weight.n,
                k: weight.k,
                dtype: T::DTYPE,
                epilogue,
            },
            bias,
            layout: Mutex::new(Some(layout)),
            uploads: Mutex::default(),
            plans: OnceMap::default(),
        })
    }

    /// A layer on a weight already on the device in the fragment layout (weights.rs).
    pub(crate) fn adopt(
        desc: LayerDesc,
        weights: DeviceWeights,
        bias: Option<DeviceBytes>,
    ) -> Self {
        let uploads = Uploads {
            by_layout: HashMap::from([(WeightLayout::Fragment, Arc::new(weights))]),
            report: Vec::new(),
        };
        GpuLayer {
            desc,
            bias,
            layout: Mutex::new(None),
            uploads: Mutex::new(uploads),
            plans: OnceMap::default(),
        }
    }

    pub(crate) fn upload_report(&self) -> UploadReport {
        let u = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        UploadReport {
            weights: u.report.clone(),
            bias_bytes: self
                .bias
                .as_ref()
                .filter(|b| b.is_owned())
                .map_or(0, |b| b.bytes()),
        }
    }

    /// The weight in `layout` on the device, uploaded on first use.
    fn weights(
        &self,
        g: &GpuState,
        layout: WeightLayout,
        family: &str,
    ) -> Result<Arc<DeviceWeights>> {
        let mut u = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = u.by_layout.get(&layout) {
            return Ok(w.clone());
        }
        let layout_fn = self
            .layout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| no_layout_for(family))?;
        let t = Instant::now();
        let lay = layout_fn(layout)?;
        let layout_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let upload = |bytes: &[u8], what| DeviceAlloc::from_host(&g.ctx, bytes, what, g.aux.raw());
        let weights = Arc::new(DeviceWeights {
            values: upload(&lay.values, "weight values")?.into(),
            meta: upload(&lay.meta, "weight metadata")?.into(),
        });
        u.report.push(WeightUpload {
            layout: format!("{layout:?}"),
            first_family: family.into(),
            values_bytes: lay.values.len(),
            meta_bytes: lay.meta.len(),
            k_padded: lay.k_padded,
            layout_ms,
            copy_ms: t.elapsed().as_secs_f64() * 1e3,
        });
        u.by_layout.insert(layout, weights.clone());
        let all_uploaded = registry()
            .families()
            .iter()
            .all(|f| u.by_layout.contains_key(&f.weight_layout()));
        if all_uploaded {
            *self.layout.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        Ok(weights)
    }

    /// Plan, kernel and weights for `m` tokens (cached per bucket; built once under races).
    pub(crate) fn prepare(&self, ctx: &Context, m: usize) -> Result<Arc<Planned>> {
        let g = ctx.gpu().expect("GpuLayer lives on a GPU context");
        self.plans.get_or_try_init(&bucket(m)?, || {
            let planned = plan(g, m, &self.desc)?;
            self.load(g, &planned.spec)
        })
    }

    /// Runs `config` for `m`'s bucket from now on instead of the planned kernel.
    pub(crate) fn use_config(&self, ctx: &Context, m: usize, config: KernelConfig) -> Result<()> {
        let g = ctx.gpu().expect("GpuLayer lives on a GPU context");
        let b = bucket(m)?;
        let spec = registry().kernel_for(&self.desc.problem(m), &g.target, config)?;
        self.plans.set(&b, self.load(g, &spec)?);
        Ok(())
    }

    /// The kernel of `spec` (compiled and loaded once per context) and the weight in its
    /// family's layout.
    fn load(&self, g: &GpuState, spec: &KernelSpec) -> Result<Planned> {
        let kernel = g
            .kernels
            .get(&g.ctx, registry(), spec, g.info.max_smem_per_block)?;
        let family = kernel.generated.family;
        let weights = self.weights(g, family.weight_layout(), family.name())?;
        Ok(Planned { kernel, weights })
    }

    pub(crate) fn kernel_info(&self, ctx: &Context, m: usize) -> Result<KernelInfo> {
        let g = ctx.gpu().expect("GpuLayer lives on a GPU context");
        let p = self.prepare(ctx, m)?;
        let k = &p.kernel;
        let gen = &k.generated;
        let (m32, n32, k32) = self.dims(m);
        let geometry = k.geometry(m32, n32, k32, &g.target);
        Ok(KernelInfo {
            name: gen.name.clone(),
            config: gen.spec.config,
            target: gen.spec.target.clone(),
            grid: geometry.grid,
            block_threads: geometry.block,
            smem_bytes: geometry.dynamic_smem,
            workspace_bytes: gen.workspace_bytes(m32, n32, k32, &g.target),
            from_disk_cache: k.from_disk_cache,
            compile_ms: k.compile_ms,
            load_ms: k.load_ms,
        })
    }

    /// (M, N, K) as the kernels' 32-bit sizes (M by `bucket`, N and K by `SparseGemm::new`
    /// are at most `i32::MAX`).
    fn dims(&self, m: usize) -> (u32, u32, u32) {
        (m as u32, self.desc.n as u32, self.desc.k as u32)
    }

    /// Host in, host out: copies through per-thread-stream device buffers.
    pub(crate) fn forward_host(
        &self,
        ctx: &Context,
        x: &[u8],
        y: &mut [u8],
        m: usize,
    ) -> Result<()> {
        let g = ctx.gpu().expect("GpuLayer lives on a GPU context");
        let s = RawStream::per_thread();
        let xd = DeviceAlloc::new(&g.ctx, x.len(), "x (forward_host)")?;
        let yd = DeviceAlloc::new(&g.ctx, y.len(), "y (forward_host)")?;
        xd.copy_from_host(x, s)?;
        let xp = xd.ptr() as usize as *const c_void;
        let yp = yd.ptr() as usize as *mut c_void;
        self.forward_device_ptrs(ctx, xp, yp, m, Some(s))?;
        yd.copy_to_host(y, s)
    }

    /// Checks `x`/`y` and queues the kernel on `stream` (None = the context's NULL stream).
    /// Callers have checked m, dtype, null pointers and overlap.
    pub(crate) fn forward_device_ptrs(
        &self,
        ctx: &Context,
        x: *const c_void,
        y: *mut c_void,
        m: usize,
        stream: Option<RawStream>,
    ) -> Result<()> {
        let g = ctx.gpu().expect("GpuLayer lives on a GPU context");
        let ordinal = match ctx.device() {
            Device::Cuda(i) => i,
            Device::Cpu => unreachable!("GPU layer on a CPU context"),
        };
        check_device_ptr("x", x, ordinal)?;
        check_device_ptr("y", y, ordinal)?;
        let planned = self.prepare(ctx, m)?;
        // SAFETY: the NULL stream is always valid.
        let stream = stream.unwrap_or_else(|| unsafe { RawStream::from_raw(std::ptr::null_mut()) });
        let gen = &planned.kernel.generated;
        let (m32, n32, k32) = self.dims(m);
        let workspace = g
            .workspaces
            .get(stream, gen.workspace_bytes(m32, n32, k32, &g.target))?;
        let inputs = LaunchInputs {
            x: x as usize as u64,
            wvals: planned.weights.values.ptr(),
            wmeta: planned.weights.meta.ptr(),
            bias: self.bias.as_ref().map_or(0, |b| b.ptr()),
            y: y as usize as u64,
            workspace,
            m: m32,
            n: n32,
            k: k32,
        };
        let mut params = gen.launch_params(&inputs, &g.target)?;
        let programmatic = g.programmatic_launch.load(Ordering::Relaxed);
        launch::launch_kernel(
            &g.ctx,
            &planned.kernel.func,
            &planned.kernel.geometry(m32, n32, k32, &g.target),
            stream,
            &mut params,
            programmatic,
        )
    }
}

/// Alignment and, where the driver can tell, "is this memory of our device".
pub(crate) fn check_device_ptr(what: &'static str, p: *const c_void, ordinal: usize) -> Result<()> {
    let addr = p as usize;
    if !addr.is_multiple_of(PTR_ALIGN) {
        return Err(RuntimeError::Misaligned {
            what,
            addr,
            align: PTR_ALIGN,
        });
    }
    let problem = match launch::pointer_kind(p)? {
        PointerKind::Device(d) if d == ordinal => return Ok(()),
        PointerKind::Managed => return Ok(()),
        PointerKind::Device(d) => format!("is memory of CUDA device {d}"),
        PointerKind::PinnedHost => "is page-locked host memory, not device memory".into(),
        PointerKind::Unknown => {
            "is not CUDA memory (host memory, or a freed / invalid pointer)".into()
        }
    };
    Err(RuntimeError::ForeignPointer {
        what,
        addr,
        problem,
        device: ordinal,
    })
}
