//! Minimal cuSPARSELt FFI, loaded at run time (`dlopen`), so the binary needs no cuSPARSELt to
//! build or to run without it. Declarations follow NVIDIA's `cusparseLt.h` (0.6 – 0.8):
//! opaque objects are caller-allocated fixed-size structs (we over-allocate them, which is
//! always safe since the library writes only its own size), enums are C ints.

use std::ffi::c_void;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use libloading::Library;

pub type Status = i32;
pub const SUCCESS: Status = 0;

// cusparseOperation_t / cusparseOrder_t (cusparse.h).
pub const OP_N: i32 = 0;
pub const ORDER_COL: i32 = 1;
pub const ORDER_ROW: i32 = 2;
// cusparseLtSparsity_t.
pub const SPARSITY_50: i32 = 0;
// cusparseComputeType (0.6+): 32I = 0, 16F = 1, 32F = 2.
pub const COMPUTE_32F: i32 = 2;
// cusparseLtMatmulAlg_t, cusparseLtMatmulAlgAttribute_t.
pub const ALG_DEFAULT: i32 = 0;
pub const ALG_CONFIG_ID: i32 = 0;
// cudaDataType.
pub const CUDA_R_16F: i32 = 2;
pub const CUDA_R_16BF: i32 = 14;

/// Any cuSPARSELt opaque object (handle, descriptors, plan): 16-byte aligned, larger than
/// every published size (0.4: 11024 bytes, later 512–1024).
#[repr(C, align(16))]
pub struct Opaque(pub [u8; 16384]);

impl Opaque {
    pub fn boxed() -> Box<Opaque> {
        Box::new(Opaque([0; 16384]))
    }
    pub fn ptr(&self) -> *const c_void {
        self as *const Opaque as *const c_void
    }
    pub fn mut_ptr(&mut self) -> *mut c_void {
        self as *mut Opaque as *mut c_void
    }
}

type P = *const c_void;
type M = *mut c_void;

/// Function pointers of the entry points we use.
pub struct Api {
    _lib: Library,
    pub path: PathBuf,
    pub init: unsafe extern "C" fn(M) -> Status,
    pub destroy: unsafe extern "C" fn(P) -> Status,
    pub get_version: unsafe extern "C" fn(P, *mut i32) -> Status,
    pub dense_init: unsafe extern "C" fn(P, M, i64, i64, i64, u32, i32, i32) -> Status,
    pub structured_init: unsafe extern "C" fn(P, M, i64, i64, i64, u32, i32, i32, i32) -> Status,
    pub mat_destroy: unsafe extern "C" fn(P) -> Status,
    pub matmul_desc_init: unsafe extern "C" fn(P, M, i32, i32, P, P, P, P, i32) -> Status,
    pub alg_sel_init: unsafe extern "C" fn(P, M, P, i32) -> Status,
    pub alg_get_attr: unsafe extern "C" fn(P, P, i32, M, usize) -> Status,
    pub plan_init: unsafe extern "C" fn(P, M, P, P) -> Status,
    pub plan_destroy: unsafe extern "C" fn(P) -> Status,
    pub get_workspace: unsafe extern "C" fn(P, P, *mut usize) -> Status,
    pub compressed_size2: unsafe extern "C" fn(P, P, *mut usize, *mut usize) -> Status,
    pub compress2: unsafe extern "C" fn(P, P, i32, i32, P, M, M, M) -> Status,
    #[allow(clippy::type_complexity)]
    pub matmul: unsafe extern "C" fn(P, P, P, P, P, P, P, M, M, *mut M, i32) -> Status,
    #[allow(clippy::type_complexity)]
    pub search: unsafe extern "C" fn(P, M, P, P, P, P, P, M, M, *mut M, i32) -> Status,
}

/// Where to look: `--cusparselt PATH`, `$SPARSEFLOW_CUSPARSELT`, then the loader's search
/// path (`libcusparseLt.so.0`), then torch's environment (`nvidia/cusparselt/lib`).
pub fn candidates(explicit: Option<&Path>) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let push_path = |v: &mut Vec<PathBuf>, p: PathBuf| {
        if p.is_dir() {
            v.push(p.join("libcusparseLt.so.0"));
            v.push(p.join("lib/libcusparseLt.so.0"));
        } else {
            v.push(p);
        }
    };
    if let Some(p) = explicit {
        push_path(&mut v, p.to_path_buf());
        return v;
    }
    if let Some(p) = std::env::var_os("SPARSEFLOW_CUSPARSELT") {
        push_path(&mut v, PathBuf::from(p));
    }
    v.push(PathBuf::from("libcusparseLt.so.0"));
    v.push(PathBuf::from("libcusparseLt.so"));
    for py in ["/usr/local/lib", "/usr/lib"] {
        for ver in ["python3.12", "python3.11", "python3.10"] {
            for site in ["dist-packages", "site-packages"] {
                v.push(PathBuf::from(format!(
                    "{py}/{ver}/{site}/nvidia/cusparselt/lib/libcusparseLt.so.0"
                )));
            }
        }
    }
    v
}

impl Api {
    pub fn load(explicit: Option<&Path>) -> Result<Api> {
        let mut errors = Vec::new();
        for path in candidates(explicit) {
            // SAFETY: loading a shared library runs its initialisers; cuSPARSELt's are benign.
            match unsafe { Library::new(&path) } {
                Ok(lib) => return Self::bind(lib, path),
                Err(e) => errors.push(format!("{}: {e}", path.display())),
            }
        }
        bail!(
            "libcusparseLt.so.0 not found (give --cusparselt PATH or set SPARSEFLOW_CUSPARSELT); tried {}",
            errors.len()
        )
    }

    fn bind(lib: Library, path: PathBuf) -> Result<Api> {
        macro_rules! sym {
            ($name:literal) => {
                // SAFETY: the symbol's type is the one declared in cusparseLt.h (see field types).
                *unsafe { lib.get($name) }
                    .map_err(|e| anyhow!("{}: {e}", String::from_utf8_lossy($name)))?
            };
        }
        Ok(Api {
            init: sym!(b"cusparseLtInit"),
            destroy: sym!(b"cusparseLtDestroy"),
            get_version: sym!(b"cusparseLtGetVersion"),
            dense_init: sym!(b"cusparseLtDenseDescriptorInit"),
            structured_init: sym!(b"cusparseLtStructuredDescriptorInit"),
            mat_destroy: sym!(b"cusparseLtMatDescriptorDestroy"),
            matmul_desc_init: sym!(b"cusparseLtMatmulDescriptorInit"),
            alg_sel_init: sym!(b"cusparseLtMatmulAlgSelectionInit"),
            alg_get_attr: sym!(b"cusparseLtMatmulAlgGetAttribute"),
            plan_init: sym!(b"cusparseLtMatmulPlanInit"),
            plan_destroy: sym!(b"cusparseLtMatmulPlanDestroy"),
            get_workspace: sym!(b"cusparseLtMatmulGetWorkspace"),
            compressed_size2: sym!(b"cusparseLtSpMMACompressedSize2"),
            compress2: sym!(b"cusparseLtSpMMACompress2"),
            matmul: sym!(b"cusparseLtMatmul"),
            search: sym!(b"cusparseLtMatmulSearch"),
            path,
            _lib: lib,
        })
    }
}

/// Turns a status into an error naming the call.
pub fn check(call: &str, status: Status) -> Result<()> {
    if status == SUCCESS {
        Ok(())
    } else {
        bail!("{call} failed with cusparseStatus_t {status}")
    }
}
