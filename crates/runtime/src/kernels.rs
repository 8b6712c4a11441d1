//! In-memory kernel cache of a context: spec (family, tiles, epilogue, dtype, target) → loaded
//! `CUfunction`. Each kernel is generated, compiled (through codegen's disk cache) and loaded
//! once, even when several threads ask for it at the same moment.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cudarc::driver::{CudaContext, CudaFunction};
use cudarc::nvrtc::Ptx;
use sparseflow_codegen::{Compiler, GeneratedKernel, KernelSpec, LaunchGeometry, Registry};
use sparseflow_ir::Target;

use crate::error::{Result, RuntimeError};
use crate::launch;

/// A map whose values are built at most once per key; builders for different keys run in
/// parallel, callers of the same key wait for the first builder. Failed builds are not cached.
pub(crate) struct OnceMap<K, V> {
    slots: Mutex<HashMap<K, Slot<V>>>,
}

/// One key's value, built under its own lock so other keys are not blocked.
type Slot<V> = Arc<Mutex<Option<Arc<V>>>>;

impl<K, V> Default for OnceMap<K, V> {
    fn default() -> Self {
        OnceMap {
            slots: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, V> OnceMap<K, V> {
    pub(crate) fn get_or_try_init(
        &self,
        key: &K,
        init: impl FnOnce() -> Result<V>,
    ) -> Result<Arc<V>> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(key.clone()).or_default().clone()
        };
        let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = guard.as_ref() {
            return Ok(v.clone());
        }
        let v = Arc::new(init()?);
        *guard = Some(v.clone());
        Ok(v)
    }

    /// Sets `key`'s value, replacing a built one (waits for a build of that key in flight).
    pub(crate) fn set(&self, key: &K, value: V) {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(key.clone()).or_default().clone()
        };
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(value));
    }

    /// The built values (for reports).
    pub(crate) fn values(&self) -> Vec<Arc<V>> {
        let slots: Vec<Slot<V>> = {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.values().cloned().collect()
        };
        slots
            .iter()
            .filter_map(|s| s.try_lock().ok().and_then(|g| g.clone()))
            .collect()
    }

    /// Number of built values.
    pub(crate) fn len(&self) -> usize {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .values()
            .filter(|s| s.try_lock().map(|g| g.is_some()).unwrap_or(false))
            .count()
    }
}

/// A kernel ready to launch.
pub(crate) struct LoadedKernel {
    pub(crate) func: CudaFunction,
    pub(crate) generated: GeneratedKernel,
    pub(crate) from_disk_cache: bool,
    pub(crate) compile_ms: f64,
    pub(crate) load_ms: f64,
    /// Size of the loaded cubin: about what the driver keeps on the device for its module.
    pub(crate) code_bytes: usize,
    /// Local memory per thread (stack frame, spills): a kernel with any makes the driver
    /// reserve it for every thread the GPU can hold, outside any allocation.
    pub(crate) local_bytes: usize,
    /// Clusters of this kernel the device holds at once, at least 1 (cluster kernels only; the
    /// driver's `cuOccupancyMaxActiveClusters`, which loading refuses when it is 0).
    pub(crate) max_active_clusters: Option<u32>,
}

impl LoadedKernel {
    /// The launch geometry for (m, n, k). A grid-stride cluster kernel gets no more clusters
    /// than are co-resident: a cluster beyond them would start only when another finished
    /// and double the time of its share of the tiles.
    pub(crate) fn geometry(&self, m: u32, n: u32, k: u32, target: &Target) -> LaunchGeometry {
        let mut g = self.generated.geometry(m, n, k, target);
        if let (true, Some((cx, _, _)), Some(resident)) =
            (g.grid_stride, g.cluster, self.max_active_clusters)
        {
            g.grid.0 = g.grid.0.min(resident * cx);
        }
        g
    }
}

#[derive(Default)]
pub(crate) struct KernelCache {
    kernels: OnceMap<KernelSpec, LoadedKernel>,
    compiler: Mutex<Option<Arc<Compiler>>>,
}

impl KernelCache {
    fn compiler(&self) -> Result<Arc<Compiler>> {
        let mut c = self.compiler.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = c.as_ref() {
            return Ok(c.clone());
        }
        let compiler = Arc::new(Compiler::new()?);
        *c = Some(compiler.clone());
        Ok(compiler)
    }

    pub(crate) fn len(&self) -> usize {
        self.kernels.len()
    }

    /// `(code bytes, largest local bytes per thread)` of the kernels loaded so far.
    pub(crate) fn footprint(&self) -> (usize, usize) {
        self.kernels
            .values()
            .iter()
            .fold((0, 0), |(code, local), k| {
                (code + k.code_bytes, local.max(k.local_bytes))
            })
    }

    /// The loaded kernel for `spec` (a family of `registry`), building it on first use.
    pub(crate) fn get(
        &self,
        ctx: &Arc<CudaContext>,
        registry: &Registry,
        spec: &KernelSpec,
        max_smem: u32,
    ) -> Result<Arc<LoadedKernel>> {
        self.kernels.get_or_try_init(spec, || {
            let generated = registry.generate(spec)?;
            let smem = generated.smem_bytes();
            if smem > max_smem {
                return Err(RuntimeError::Shape(format!(
                    "kernel {} needs {smem} bytes of shared memory but the device allows {max_smem} per block; \
                     the tile selector chose a configuration this GPU cannot run (report this)",
                    generated.name
                )));
            }
            let compiled = self.compiler()?.compile(&generated)?;
            let t = Instant::now();
            let func = launch::with_relaxed_capture(|| -> Result<CudaFunction> {
                let module = ctx
                    .load_module(Ptx::from_binary(compiled.cubin.clone()))
                    .map_err(|e| RuntimeError::cuda("cuModuleLoadData", e))?;
                module
                    .load_function(&generated.name)
                    .map_err(|e| RuntimeError::cuda("cuModuleGetFunction", e))
            })?;
            if smem > 48 * 1024 {
                launch::set_max_dynamic_smem(&func, smem)?;
            }
            let local_bytes = func
                .local_size_bytes()
                .map_err(|e| RuntimeError::cuda("cuFuncGetAttribute(LOCAL_SIZE_BYTES)", e))?;
            let max_active_clusters = match generated.family.cluster(spec) {
                Some(dims) => Some(launch::max_active_clusters(
                    ctx,
                    &func,
                    dims,
                    generated.family.resources(&spec.config, spec.dtype).threads,
                    smem,
                )?),
                None => None,
            };
            Ok(LoadedKernel {
                max_active_clusters,
                code_bytes: compiled.cubin.len(),
                local_bytes: usize::try_from(local_bytes).unwrap_or(0),
                func,
                generated,
                from_disk_cache: compiled.from_cache,
                compile_ms: compiled.compile_ms,
                load_ms: t.elapsed().as_secs_f64() * 1e3,
            })
        })
    }
}
