//! What the runtime reports about a layer: its uploads and the kernel an M launches.

use sparseflow_ir::KernelConfig;

/// What uploading the weight to the GPU cost. Every kernel family names the device layout it
/// reads (`Family::weight_layout`); each layout is uploaded once, on the first use of a family
/// that reads it (all built-in families read the one fragment layout).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UploadReport {
    /// One entry per device layout uploaded so far.
    pub weights: Vec<WeightUpload>,
    /// Bias bytes on the device.
    pub bias_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WeightUpload {
    /// The device layout (`"Fragment"`).
    pub layout: String,
    /// The family whose first use uploaded it.
    pub first_family: String,
    pub values_bytes: usize,
    pub meta_bytes: usize,
    pub k_padded: usize,
    /// CPU time to re-order the weight into the layout.
    pub layout_ms: f64,
    /// Allocation + host-to-device copy time.
    pub copy_ms: f64,
}

impl UploadReport {
    /// Device bytes held by the weight and the bias.
    pub fn device_bytes(&self) -> usize {
        self.bias_bytes
            + self
                .weights
                .iter()
                .map(|w| w.values_bytes + w.meta_bytes)
                .sum::<usize>()
    }
}

/// The kernel one M launches: what the compiler chose and what it cost to get it.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelInfo {
    pub name: String,
    /// Family and tiles.
    pub config: KernelConfig,
    /// Codegen architecture (`sm_90a`, ...).
    pub target: String,
    pub grid: (u32, u32, u32),
    pub block_threads: u32,
    pub smem_bytes: u32,
    pub workspace_bytes: usize,
    /// The cubin came from codegen's disk cache.
    pub from_disk_cache: bool,
    /// NVRTC time (0 when from the disk cache).
    pub compile_ms: f64,
    /// cuModuleLoadData time.
    pub load_ms: f64,
}
