//! The GPU side of a `SparseGemm`: weight upload per kernel family, the per-M-bucket plan
//! cache (plan → spec → loaded kernel), pointer checks and the launch.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sparseflow_codegen::{upload_layout, CodegenError, KernelFamily, KernelSpec, UploadLayout};
use sparseflow_core::{DType, Element, EpilogueKind, Sparse24};
use sparseflow_ir::{plan_layer, LayerPlan};

use crate::context::{Context, Device, GpuState};
use crate::error::{Result, RuntimeError};
use crate::gemm::{bucket, FamilyUpload, KernelInfo, SparseGemm, UploadReport};
use crate::kernels::{LoadedKernel, OnceMap};
use crate::launch::{self, DeviceAlloc, GemmArgs, LaunchDims, PointerKind, RawStream};

const FAMILIES: [KernelFamily; 2] = [KernelFamily::Sm80, KernelFamily::Decode];

/// Kernels load 16 bytes at a time from x and store vectors to y.
const PTR_ALIGN: usize = 16;

type LayoutFn = Arc<dyn Fn(KernelFamily) -> Result<UploadLayout, CodegenError> + Send + Sync>;

/// One family's weight on the device.
struct DeviceWeights {
    values: DeviceAlloc,
    meta: DeviceAlloc,
}

#[derive(Default)]
struct Uploads {
    by_family: HashMap<KernelFamily, Arc<DeviceWeights>>,
    report: Vec<FamilyUpload>,
}

/// Everything one M bucket launches with.
pub(crate) struct Planned {
    kernel: Arc<LoadedKernel>,
    weights: Arc<DeviceWeights>,
}

pub(crate) struct GpuLayer {
    bias: Option<DeviceAlloc>,
    /// Lays the host weight out for a family; dropped once every family is on the device.
    layout: Mutex<Option<LayoutFn>>,
    uploads: Mutex<Uploads>,
    plans: OnceMap<usize, Planned>,
}

/// Plans `bucket` tokens on the context's target.
pub(crate) fn plan(
    g: &GpuState,
    bucket: usize,
    n: usize,
    k: usize,
    dtype: DType,
    epilogue: EpilogueKind,
) -> Result<LayerPlan> {
    Ok(plan_layer(bucket, n, k, dtype, epilogue, &g.info.target)?)
}

impl GpuLayer {
    pub(crate) fn new<T: Element>(
        g: &GpuState,
        weight: &Sparse24<T>,
        bias: Option<&[T]>,
    ) -> Result<Self> {
        let bias = match bias {
            Some(b) => Some(DeviceAlloc::from_host(
                &g.ctx,
                launch::as_bytes(b),
                "bias",
                g.aux.raw(),
            )?),
            None => None,
        };
        let w = Arc::new(weight.clone());
        let layout: LayoutFn = Arc::new(move |family| upload_layout(family, &w));
        Ok(GpuLayer {
            bias,
            layout: Mutex::new(Some(layout)),
            uploads: Mutex::default(),
            plans: OnceMap::default(),
        })
    }

    pub(crate) fn upload_report(&self) -> UploadReport {
        let u = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        UploadReport {
            families: u.report.clone(),
            bias_bytes: self.bias.as_ref().map_or(0, |b| b.bytes()),
        }
    }

    /// The family's weight on the device, uploading it on first use. A family whose layout is
    /// byte-identical to the one just uploaded shares its buffers.
    fn weights(&self, g: &GpuState, family: KernelFamily) -> Result<Arc<DeviceWeights>> {
        let mut u = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = u.by_family.get(&family) {
            return Ok(w.clone());
        }
        let layout_fn = self
            .layout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .expect("host layout kept until every family is uploaded");
        let t = Instant::now();
        let lay = layout_fn(family)?;
        let layout_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let weights = Arc::new(DeviceWeights {
            values: DeviceAlloc::from_host(&g.ctx, &lay.values, "weight values", g.aux.raw())?,
            meta: DeviceAlloc::from_host(&g.ctx, &lay.meta, "weight metadata", g.aux.raw())?,
        });
        let copy_ms = t.elapsed().as_secs_f64() * 1e3;
        u.report.push(FamilyUpload {
            family: family.name().into(),
            values_bytes: lay.values.len(),
            meta_bytes: lay.meta.len(),
            k_padded: lay.k_padded,
            layout_ms,
            copy_ms,
            shared_with: None,
        });
        u.by_family.insert(family, weights.clone());
        let missing: Vec<KernelFamily> = FAMILIES
            .into_iter()
            .filter(|f| !u.by_family.contains_key(f))
            .collect();
        for other in missing {
            let t = Instant::now();
            let other_lay = layout_fn(other)?;
            if other_lay == lay {
                u.report.push(FamilyUpload {
                    family: other.name().into(),
                    values_bytes: lay.values.len(),
                    meta_bytes: lay.meta.len(),
                    k_padded: lay.k_padded,
                    layout_ms: t.elapsed().as_secs_f64() * 1e3,
                    copy_ms: 0.0,
                    shared_with: Some(family.name().into()),
                });
                u.by_family.insert(other, weights.clone());
            }
        }
        if FAMILIES.iter().all(|f| u.by_family.contains_key(f)) {
            *self.layout.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        Ok(weights)
    }

    /// Plan, kernel and weights for `m` tokens (cached per bucket; built once under races).
    pub(crate) fn prepare(
        &self,
        ctx: &Context,
        m: usize,
        layer: &SparseGemm,
    ) -> Result<Arc<Planned>> {
        let g = ctx.gpu().expect("GpuLayer lives on a GPU context");
        let b = bucket(m)?;
        self.plans.get_or_try_init(&b, || {
            let p = plan(g, b, layer.n(), layer.k(), layer.dtype(), layer.epilogue())?;
            let spec = KernelSpec::from_plan(&p, layer.dtype(), &g.info.target)?;
            let family = spec.family;
            let kernel = g.kernels.get(&g.ctx, &spec, g.info.max_smem_per_block)?;
            let weights = self.weights(g, family)?;
            Ok(Planned { kernel, weights })
        })
    }

    pub(crate) fn kernel_info(
        &self,
        ctx: &Context,
        m: usize,
        layer: &SparseGemm,
    ) -> Result<KernelInfo> {
        let p = self.prepare(ctx, m, layer)?;
        let k = &p.kernel;
        let gen = &k.generated;
        let (m32, n32, k32) = (m as u32, layer.n() as u32, layer.k() as u32);
        Ok(KernelInfo {
            name: gen.name.clone(),
            family: gen.spec.family.name().into(),
            tile_m: gen.spec.tile_m,
            tile_n: gen.spec.tile_n,
            tile_k: gen.spec.tile_k,
            warps: gen.spec.warps,
            stages: gen.spec.stages,
            split_k: gen.spec.split_k,
            target: gen.spec.target.clone(),
            grid: gen.grid(m32, n32, k32),
            block_threads: gen.block_threads(),
            smem_bytes: gen.smem_bytes(),
            workspace_bytes: gen.workspace_bytes(m32, n32, k32),
            from_disk_cache: k.from_disk_cache,
            compile_ms: k.compile_ms,
            load_ms: k.load_ms,
        })
    }

    /// Host in, host out: copies through per-thread-stream device buffers.
    pub(crate) fn forward_host(
        &self,
        ctx: &Context,
        layer: &SparseGemm,
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
        self.forward_device_ptrs(ctx, layer, xp, yp, m, Some(s))?;
        yd.copy_to_host(y, s)
    }

    /// Checks `x`/`y` and queues the kernel on `stream` (None = the context's NULL stream).
    /// Callers have checked m, dtype, null pointers and overlap.
    pub(crate) fn forward_device_ptrs(
        &self,
        ctx: &Context,
        layer: &SparseGemm,
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
        let planned = self.prepare(ctx, m, layer)?;
        // SAFETY: the NULL stream is always valid.
        let stream = stream.unwrap_or_else(|| unsafe { RawStream::from_raw(std::ptr::null_mut()) });
        let gen = &planned.kernel.generated;
        let (m32, n32, k32) = (m as u32, layer.n() as u32, layer.k() as u32);
        let workspace = g
            .workspaces
            .get(stream, gen.workspace_bytes(m32, n32, k32))?;
        let dims = LaunchDims {
            grid: gen.grid(m32, n32, k32),
            block: gen.block_threads(),
            smem: gen.smem_bytes(),
        };
        let args = GemmArgs {
            x: x as usize as u64,
            wvals: planned.weights.values.ptr(),
            wmeta: planned.weights.meta.ptr(),
            bias: self.bias.as_ref().map_or(0, |b| b.ptr()),
            y: y as usize as u64,
            workspace,
            m: m as i32,
            n: layer.n() as i32,
            k: layer.k() as i32,
        };
        let programmatic = g.programmatic_launch.load(Ordering::Relaxed);
        launch::launch_gemm(
            &g.ctx,
            &planned.kernel.func,
            dims,
            stream,
            args,
            programmatic,
        )
    }
}

/// Alignment and, where the driver can tell, "is this memory of our device".
fn check_device_ptr(what: &'static str, p: *const c_void, ordinal: usize) -> Result<()> {
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
