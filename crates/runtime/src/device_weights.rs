//! A weight's bytes on the device: the runtime's own allocation or a caller's buffer it only
//! reads. Its own module so the GPU layer (which launches on it) and the adoption API in
//! `weights.rs` (which builds a GPU layer) both depend on it, not on each other.

use crate::error::RuntimeError;
use crate::launch::DeviceAlloc;

/// Device bytes the runtime allocated, or a caller's buffer it only reads.
pub(crate) enum DeviceBytes {
    Owned(DeviceAlloc),
    /// Caller-owned; the caller keeps it alive (and in the fragment layout) for the lifetime
    /// of the `SparseGemm` and of any work queued with it.
    Borrowed {
        ptr: u64,
        bytes: usize,
    },
}

impl DeviceBytes {
    pub(crate) fn ptr(&self) -> u64 {
        match self {
            DeviceBytes::Owned(a) => a.ptr(),
            DeviceBytes::Borrowed { ptr, .. } => *ptr,
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        match self {
            DeviceBytes::Owned(a) => a.bytes(),
            DeviceBytes::Borrowed { bytes, .. } => *bytes,
        }
    }

    /// Whether the runtime allocated these bytes (and counts them as its own device memory).
    pub(crate) fn is_owned(&self) -> bool {
        matches!(self, DeviceBytes::Owned(_))
    }
}

impl From<DeviceAlloc> for DeviceBytes {
    fn from(a: DeviceAlloc) -> Self {
        DeviceBytes::Owned(a)
    }
}

/// A family that has no device copy yet and no host weight to lay out: only possible for an
/// adopted weight and a family that does not read the fragment layout.
pub(crate) fn no_layout_for(family: &str) -> RuntimeError {
    RuntimeError::Unsupported(format!(
        "kernel family {family} does not read the fragment layout, and this layer's weight was \
         adopted in that layout (from_device_layout): create it from a host weight instead"
    ))
}

/// One weight on the device, in the fragment layout.
pub(crate) struct DeviceWeights {
    pub(crate) values: DeviceBytes,
    pub(crate) meta: DeviceBytes,
}
