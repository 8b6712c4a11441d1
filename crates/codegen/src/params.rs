//! Kernel parameters as opaque bytes: a family lays out its own parameter list
//! ([`Family::launch_params`](crate::Family::launch_params)) and the runtime hands it to
//! `cuLaunchKernelEx` as the usual array of pointers to values, without knowing the types.
//! Values live inline (no allocation per launch): this runs on every forward.

use std::ffi::c_void;

use crate::error::CodegenError;

/// Bytes of parameter storage: the standard ABI takes 60, a 128-byte `CUtensorMap` plus the
/// standard pointers about 200. The driver's own limit is 4 KiB.
pub const PARAM_BYTES: usize = 1024;
/// Parameters per kernel.
pub const MAX_PARAMS: usize = 24;

/// Storage aligned for any kernel parameter (`CUtensorMap` wants 64 bytes).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Storage([u8; PARAM_BYTES]);

/// What a launch's parameters are built from: device addresses (0 = null) and sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchInputs {
    pub x: u64,
    pub wvals: u64,
    pub wmeta: u64,
    pub bias: u64,
    pub y: u64,
    pub workspace: u64,
    pub m: u32,
    pub n: u32,
    pub k: u32,
}

/// The values of one launch's kernel parameters, each at its own aligned offset.
#[derive(Clone)]
pub struct KernelParams {
    storage: Storage,
    used: usize,
    /// (offset, length) of each parameter.
    spans: [(u16, u16); MAX_PARAMS],
    count: usize,
}

impl std::fmt::Debug for KernelParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.values()).finish()
    }
}

impl Default for KernelParams {
    fn default() -> Self {
        KernelParams {
            storage: Storage([0; PARAM_BYTES]),
            used: 0,
            spans: [(0, 0); MAX_PARAMS],
            count: 0,
        }
    }
}

fn too_many(what: &str) -> CodegenError {
    CodegenError::Unsupported(format!(
        "kernel parameters: {what} (at most {MAX_PARAMS} parameters, {PARAM_BYTES} bytes)"
    ))
}

impl KernelParams {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one parameter's bytes at the next multiple of `align` (a power of two).
    pub fn push_bytes(&mut self, bytes: &[u8], align: usize) -> Result<&mut Self, CodegenError> {
        assert!(align.is_power_of_two() && align <= 64, "alignment {align}");
        let at = self.used.next_multiple_of(align);
        if self.count == MAX_PARAMS || at + bytes.len() > PARAM_BYTES {
            return Err(too_many("the list is full"));
        }
        self.storage.0[at..at + bytes.len()].copy_from_slice(bytes);
        self.spans[self.count] = (at as u16, bytes.len() as u16);
        self.count += 1;
        self.used = at + bytes.len();
        Ok(self)
    }

    /// A device pointer (`const T*`, `T*`): 8 bytes.
    pub fn ptr(&mut self, addr: u64) -> Result<&mut Self, CodegenError> {
        self.push_bytes(&addr.to_ne_bytes(), 8)
    }

    /// An `int`. Sizes beyond `i32::MAX` are refused long before a launch (N, K at
    /// `SparseGemm::new`, M by the bucketing).
    pub fn int(&mut self, v: u32) -> Result<&mut Self, CodegenError> {
        let v = i32::try_from(v).map_err(|_| too_many("an int parameter exceeds i32::MAX"))?;
        self.push_bytes(&v.to_ne_bytes(), 4)
    }

    /// The standard ABI of this crate's templates:
    /// `(const T* x, const u8* wvals, const u8* wmeta, const T* bias, T* y, float* workspace,
    /// int M, int N, int K)`.
    pub fn standard(i: &LaunchInputs) -> Result<KernelParams, CodegenError> {
        let mut p = KernelParams::new();
        for addr in [i.x, i.wvals, i.wmeta, i.bias, i.y, i.workspace] {
            p.ptr(addr)?;
        }
        for v in [i.m, i.n, i.k] {
            p.int(v)?;
        }
        Ok(p)
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Each parameter's bytes, in order.
    pub fn values(&self) -> impl Iterator<Item = &[u8]> {
        self.spans[..self.count]
            .iter()
            .map(|&(at, len)| &self.storage.0[at as usize..(at + len) as usize])
    }

    /// The `kernelParams` array of `cuLaunchKernelEx`: one pointer per parameter into this
    /// value's storage, valid while `self` is neither moved nor dropped.
    pub fn pointers(&mut self) -> [*mut c_void; MAX_PARAMS] {
        let base = self.storage.0.as_mut_ptr();
        let mut out = [std::ptr::null_mut(); MAX_PARAMS];
        for (slot, &(off, _)) in out.iter_mut().zip(&self.spans[..self.count]) {
            *slot = base.wrapping_add(off as usize) as *mut c_void;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_abi_is_six_pointers_then_three_ints() {
        let i = LaunchInputs {
            x: 1,
            wvals: 2,
            wmeta: 3,
            bias: 0,
            y: 5,
            workspace: 6,
            m: 7,
            n: 8,
            k: 9,
        };
        let p = KernelParams::standard(&i).unwrap();
        let v: Vec<&[u8]> = p.values().collect();
        assert_eq!(v.len(), 9);
        assert_eq!(v[0], 1u64.to_ne_bytes());
        assert_eq!(v[3], 0u64.to_ne_bytes());
        assert_eq!(v[8], 9i32.to_ne_bytes());
        assert_eq!(v[6], 7i32.to_ne_bytes());
    }

    #[test]
    fn values_keep_their_alignment_and_overflow_is_an_error() {
        let mut p = KernelParams::new();
        p.int(1).unwrap();
        p.push_bytes(&[7; 128], 64).unwrap();
        let mut q = p.clone();
        let ptrs = q.pointers();
        assert_eq!(ptrs[1] as usize % 64, 0);
        assert_eq!(p.values().next().unwrap(), 1i32.to_ne_bytes());
        assert_eq!(p.values().nth(1).unwrap(), [7; 128]);
        assert!(p.push_bytes(&[0; PARAM_BYTES], 8).is_err());
        assert!(p.int(u32::MAX).is_err());
    }
}
