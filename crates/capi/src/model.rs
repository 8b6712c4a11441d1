//! SparseFlow model directories (ABI 1.1): `sparseflow_model_open`, `sparseflow_model_destroy`,
//! `sparseflow_model_layer_count`, `sparseflow_model_layer_name`, `sparseflow_model_layer_info`,
//! `sparseflow_model_load_layer`, `sparseflow_kernel_create_from_model`.
//!
//! Everything is read by `sparseflow-model`, the one reader the CLI and the Python package use:
//! the manifest's version and keys are validated, every file is confined to the model directory
//! and must be a regular file, and a layer's metadata codes and values are checked before any
//! byte reaches the caller.

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::Path;

use sparseflow_core::format::meta_bytes_per_row;
use sparseflow_core::{dispatch_dtype, DType, Element, EpilogueKind, Sparse24};
use sparseflow_model::{ModelDir, ModelError};

use crate::boundary::ffi_boundary;
use crate::context::{check_out, write_out, ContextObj};
use crate::engine::{self, SparseGemm};
use crate::error::{Error, Result};
use crate::handles::{self, Handle};
use crate::host::{check_bias_ptr, check_ptr, elements, host_slice_mut, overlaps};
use crate::kernel::KernelObj;
use crate::types::{
    RawDType, RawEpilogue, SparseFlowContext, SparseFlowDType, SparseFlowKernel, SparseFlowModel,
    SparseFlowModel_, SparseFlowStatus,
};

/// What a `SparseFlowModel` handle refers to: the opened directory (its files stay memory-mapped
/// until the handle is destroyed) and the layer names as C strings.
pub(crate) struct ModelObj {
    dir: ModelDir,
    names: Vec<CString>,
}

impl Handle for ModelObj {
    type Opaque = SparseFlowModel_;
    const TAG: usize = 0x4D;
    const NAME: &'static str = "model";
}

/// A model-file error on its way to C: core format errors keep their status (`NOT_2TO4` for bad
/// metadata), everything else (missing or corrupt files, bad manifest, unknown layer, paths
/// outside the directory) is `INVALID_ARGUMENT`; the message names the file, key or tensor.
fn model_error(e: ModelError) -> Error {
    match e {
        ModelError::Core { what, source } => {
            let status = Error::from(source.clone()).status;
            Error::new(status, format!("{what}: {source}"))
        }
        other => Error::invalid(other.to_string()),
    }
}

/// A NUL-terminated UTF-8 string from C.
///
/// # Safety
/// `s` is NULL or a NUL-terminated string readable during the call.
unsafe fn c_str<'a>(s: *const c_char, what: &str) -> Result<&'a str> {
    if s.is_null() {
        return Err(Error::invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let s = unsafe { CStr::from_ptr(s) };
    s.to_str()
        .map_err(|_| Error::invalid(format!("{what} is not UTF-8: {s:?}")))
}

/// A buffer size from C, at least `need` bytes.
fn check_size(bytes: i64, need: usize, what: &str) -> Result<()> {
    if bytes < 0 || (bytes as u64) < need as u64 {
        return Err(Error::invalid(format!(
            "{what} holds {bytes} bytes; this layer needs {need}"
        )));
    }
    Ok(())
}

/// The element type of a layer as the C enum.
fn c_dtype(d: DType) -> SparseFlowDType {
    match d {
        DType::F16 => SparseFlowDType::SPARSEFLOW_DTYPE_F16,
        DType::BF16 => SparseFlowDType::SPARSEFLOW_DTYPE_BF16,
        DType::F32 => SparseFlowDType::SPARSEFLOW_DTYPE_F32,
    }
}

/// A layer read and checked: compressed weight (metadata codes and finiteness validated by
/// `Sparse24::from_parts`), bias when its epilogue adds one, and the epilogue.
struct Layer<T> {
    sparse: Sparse24<T>,
    bias: Option<Vec<T>>,
    epilogue: EpilogueKind,
}

fn read_layer<T: Element + bytemuck::Pod>(dir: &ModelDir, name: &str) -> Result<Layer<T>> {
    let sparse = dir.layer::<T>(name).map_err(model_error)?;
    let bias = dir
        .layer_bias_bytes(name)
        .map_err(model_error)?
        .map(|b| sparseflow_model::tensors::elements::<T>(b).into_owned());
    let epilogue = dir.layer_epilogue(name).map_err(model_error)?;
    Ok(Layer {
        sparse,
        bias,
        epilogue,
    })
}

/// Opens a SparseFlow model directory (as written by `sparseflow convert`, `sf.save`, or any
/// writer of docs/FORMAT.md) for reading: `path` is the directory, a NUL-terminated string.
///
/// The manifest (`sparseflow.json`) is validated (format version, every key, layers against the
/// stored tensors), shard names are confined to the directory, and only regular files are
/// read: a missing, corrupt, truncated or foreign file is `INVALID_ARGUMENT` with a message
/// naming the file and the key or tensor. The tensor files stay memory-mapped until
/// `sparseflow_model_destroy`; they must not be modified meanwhile.
///
/// `*out` is the new handle (NULL on failure). Thread safety: a model handle may be used from
/// any number of threads at once.
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string; `out` NULL or writable storage for one
/// handle.
#[no_mangle]
pub unsafe extern "C" fn sparseflow_model_open(
    path: *const c_char,
    out: *mut SparseFlowModel,
) -> SparseFlowStatus {
    ffi_boundary!("sparseflow_model_open", {
        check_out(out)?;
        // SAFETY: `out` is non-NULL and writable by contract.
        unsafe { write_out(out, std::ptr::null_mut()) };
        if path.is_null() {
            return Err(Error::invalid("path is NULL"));
        }
        // SAFETY: non-NULL and NUL-terminated by contract.
        let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
        if bytes.is_empty() {
            return Err(Error::invalid("path is empty"));
        }
        let path = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(bytes);
        let dir = ModelDir::open(Path::new(path)).map_err(model_error)?;
        let names = dir
            .manifest()
            .layers
            .keys()
            // Validated module paths: letters, digits, '_' and '.', so never an interior NUL.
            .filter_map(|n| CString::new(n.as_str()).ok())
            .collect();
        let handle = handles::new_handle(ModelObj { dir, names });
        // SAFETY: as above.
        unsafe { write_out(out, handle) };
        Ok(())
    })
}

/// Closes a model: unmaps its files. Kernels created from it stay valid (they hold their own
/// copy of the weights). `INVALID_HANDLE` for NULL, foreign or already destroyed handles.
///
/// Thread safety: callable from any thread; no other thread may still be using this handle.
#[no_mangle]
pub extern "C" fn sparseflow_model_destroy(model: SparseFlowModel) -> SparseFlowStatus {
    ffi_boundary!("sparseflow_model_destroy", {
        handles::destroy::<ModelObj>(model)
    })
}

/// `*count` = the number of sparse (2:4) layers of the model. Layers the model keeps dense
/// (embeddings, norms, `lm_head`, excluded weights) are ordinary tensors and not counted.
///
/// # Safety
/// `count` must be NULL or point to a writable `int64_t`.
#[no_mangle]
pub unsafe extern "C" fn sparseflow_model_layer_count(
    model: SparseFlowModel,
    count: *mut i64,
) -> SparseFlowStatus {
    ffi_boundary!("sparseflow_model_layer_count", {
        check_out(count)?;
        let m = handles::get::<ModelObj>(model)?;
        // SAFETY: non-NULL and writable by contract; a count of a Vec fits i64.
        unsafe { write_out(count, m.names.len() as i64) };
        Ok(())
    })
}

/// `*name` = the name of sparse layer `index` (0-based, sorted by name), e.g.
/// `"model.layers.0.mlp.up_proj"`: a NUL-terminated string owned by the model, valid until
/// `sparseflow_model_destroy`. `INVALID_ARGUMENT` when `index` is outside `[0, count)`.
///
/// # Safety
/// `name` must be NULL or point to writable storage for one pointer.
#[no_mangle]
pub unsafe extern "C" fn sparseflow_model_layer_name(
    model: SparseFlowModel,
    index: i64,
    name: *mut *const c_char,
) -> SparseFlowStatus {
    ffi_boundary!("sparseflow_model_layer_name", {
        check_out(name)?;
        // SAFETY: non-NULL and writable by contract.
        unsafe { write_out(name, std::ptr::null()) };
        let m = handles::get::<ModelObj>(model)?;
        let s = usize::try_from(index)
            .ok()
            .and_then(|i| m.names.get(i))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "index {index} is outside [0, {}): the model has {} sparse layers",
                    m.names.len(),
                    m.names.len()
                ))
            })?;
        // The string lives in the registry's Arc until the handle is destroyed.
        // SAFETY: as above.
        unsafe { write_out(name, s.as_ptr()) };
        Ok(())
    })
}

/// Describes sparse layer `name` (NUL-terminated): `*n` = out_features, `*k` = in_features,
/// `*dtype` = element type of its values (and bias), `*epilogue` = the epilogue it was stored
/// with (a `BIAS*` epilogue means it has a bias of `n` elements). The compressed sizes follow:
/// values `n * k / 2` elements, metadata `n * ceil(k / 8)` bytes.
///
/// Errors: `INVALID_HANDLE`; `INVALID_ARGUMENT` for NULL pointers or a name that is not a sparse
/// layer of the model (the message lists some that are).
///
/// # Safety
/// `name` must be NULL or NUL-terminated; each out-pointer NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sparseflow_model_layer_info(
    model: SparseFlowModel,
    name: *const c_char,
    n: *mut i64,
    k: *mut i64,
    dtype: *mut RawDType,
    epilogue: *mut RawEpilogue,
) -> SparseFlowStatus {
    ffi_boundary!("sparseflow_model_layer_info", {
        check_out(n)?;
        check_out(k)?;
        check_out(dtype)?;
        check_out(epilogue)?;
        let m = handles::get::<ModelObj>(model)?;
        // SAFETY: NULL or NUL-terminated by contract.
        let name = unsafe { c_str(name, "name")? };
        let entry = m.dir.layer_entry(name).map_err(model_error)?;
        let kind = m.dir.layer_epilogue(name).map_err(model_error)?;
        let [rows, cols] = entry.shape;
        elements(rows, cols, entry.dtype, "the layer [n, k]")?;
        // SAFETY: all four are non-NULL and writable by contract; n*k fits isize, so n and k
        // fit i64.
        unsafe {
            write_out(n, rows as i64);
            write_out(k, cols as i64);
            write_out(dtype, c_dtype(entry.dtype) as u32);
            write_out(epilogue, kind.abi_value());
        }
        Ok(())
    })
}

/// Output buffers of `sparseflow_model_load_layer`, checked.
struct Outs {
    values: *mut c_void,
    meta: *mut c_void,
    bias: *mut c_void,
}

/// # Safety
/// The C contract of `sparseflow_model_load_layer`; sizes and overlap checked by the caller.
unsafe fn copy_layer<T: Element + bytemuck::Pod>(
    dir: &ModelDir,
    name: &str,
    outs: &Outs,
) -> Result<()> {
    let layer = read_layer::<T>(dir, name)?;
    // SAFETY: `values` holds at least values.len() writable elements (size checked), and no
    // other output overlaps it (checked).
    let values = unsafe { host_slice_mut::<T>(outs.values, layer.sparse.values.len(), "values")? };
    values.copy_from_slice(&layer.sparse.values);
    // SAFETY: as above, for the metadata bytes.
    let meta = unsafe { host_slice_mut::<u8>(outs.meta, layer.sparse.meta.len(), "meta")? };
    meta.copy_from_slice(&layer.sparse.meta);
    if let Some(b) = &layer.bias {
        // SAFETY: as above, for the bias (non-NULL when the epilogue adds one: checked).
        let bias = unsafe { host_slice_mut::<T>(outs.bias, b.len(), "bias")? };
        bias.copy_from_slice(b);
    }
    Ok(())
}

/// Copies sparse layer `name`'s compressed weight into caller-owned host buffers, in the
/// format `sparseflow_kernel_create` takes (docs/FORMAT.md):
///
/// * `values_out`: `n * k / 2` elements of the layer's dtype (`values_bytes` >= that many
///   bytes), aligned to the element size;
/// * `meta_out`: `n * ceil(k / 8)` bytes (`meta_bytes` >= that);
/// * `bias_out_or_null`: `n` elements (`bias_bytes` >= `n` * element size) when the layer's
///   epilogue adds a bias; must be NULL otherwise (then `bias_bytes` is ignored).
///
/// `n`, `k`, dtype and epilogue come from `sparseflow_model_layer_info`. The stored metadata
/// and values are checked first (`NOT_2TO4` for an invalid code, `INVALID_ARGUMENT` for NaN/Inf
/// or a damaged file); nothing is written on failure. The buffers must not overlap.
///
/// # Safety
/// Each pointer must be NULL or hold at least the byte count passed with it, writable; `name`
/// NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn sparseflow_model_load_layer(
    model: SparseFlowModel,
    name: *const c_char,
    values_out: *mut c_void,
    values_bytes: i64,
    meta_out: *mut u8,
    meta_bytes: i64,
    bias_out_or_null: *mut c_void,
    bias_bytes: i64,
) -> SparseFlowStatus {
    ffi_boundary!("sparseflow_model_load_layer", {
        let m = handles::get::<ModelObj>(model)?;
        // SAFETY: NULL or NUL-terminated by contract.
        let name = unsafe { c_str(name, "name")? };
        let entry = m.dir.layer_entry(name).map_err(model_error)?;
        let epilogue = m.dir.layer_epilogue(name).map_err(model_error)?;
        let uses_bias = epilogue.uses_bias();
        let ([n, k], size) = (entry.shape, entry.dtype.size_bytes());
        let values_need = elements(n, k / 2, entry.dtype, "values [n, k/2]")? * size;
        let meta_need = n * meta_bytes_per_row(k);
        let bias_need = if uses_bias { n * size } else { 0 };
        let meta_out = meta_out.cast::<c_void>();
        check_ptr(values_out, size, "values_out")?;
        check_ptr(meta_out, 1, "meta_out")?;
        check_size(values_bytes, values_need, "values_bytes")?;
        check_size(meta_bytes, meta_need, "meta_bytes")?;
        check_bias_ptr(epilogue, bias_out_or_null, n, "bias_out_or_null")
            .map_err(|e| Error::invalid(format!("layer `{name}`: {}", e.message)))?;
        if uses_bias {
            check_ptr(bias_out_or_null, size, "bias_out_or_null")?;
            check_size(bias_bytes, bias_need, "bias_bytes")?;
        }
        let bufs = [
            (values_out.cast_const(), values_need, "values_out"),
            (meta_out.cast_const(), meta_need, "meta_out"),
            (bias_out_or_null.cast_const(), bias_need, "bias_out_or_null"),
        ];
        for (i, a) in bufs.iter().enumerate() {
            for b in &bufs[i + 1..] {
                if a.1 > 0 && b.1 > 0 && overlaps(a.0, a.1, b.0, b.1) {
                    return Err(Error::invalid(format!("{} and {} overlap", a.2, b.2)));
                }
            }
        }
        let outs = Outs {
            values: values_out,
            meta: meta_out,
            bias: bias_out_or_null,
        };
        // SAFETY: sizes, NULL, alignment and overlap checked above; the rest is the contract.
        unsafe { dispatch_dtype!(entry.dtype, T => copy_layer::<T>(&m.dir, name, &outs)) }
    })
}

fn gemm_from_model<T: Element + bytemuck::Pod>(
    ctx: &engine::Context,
    dir: &ModelDir,
    name: &str,
) -> Result<SparseGemm> {
    let layer = read_layer::<T>(dir, name)?;
    SparseGemm::new(ctx, &layer.sparse, layer.bias.as_deref(), layer.epilogue)
        .map_err(engine::runtime_error)
}

/// Builds a kernel from sparse layer `name` of an open model: its compressed weight, its bias
/// and its epilogue, as stored; the dtype is the layer's (`UNSUPPORTED` for an F32 layer on a
/// GPU context). The kernel owns a copy of the weights: the model may be destroyed afterwards.
/// Run it with `sparseflow_kernel_run`, destroy it with `sparseflow_kernel_destroy`.
///
/// Errors: `INVALID_HANDLE` (context, model), `INVALID_ARGUMENT` (NULL, unknown layer, damaged
/// files), `NOT_2TO4` (invalid stored metadata), `UNSUPPORTED`, `CUDA_ERROR`, `OUT_OF_MEMORY`.
///
/// # Safety
/// `name` must be NULL or NUL-terminated; `out` NULL or writable storage for one handle.
#[no_mangle]
pub unsafe extern "C" fn sparseflow_kernel_create_from_model(
    context: SparseFlowContext,
    model: SparseFlowModel,
    name: *const c_char,
    out: *mut SparseFlowKernel,
) -> SparseFlowStatus {
    ffi_boundary!("sparseflow_kernel_create_from_model", {
        check_out(out)?;
        // SAFETY: `out` is non-NULL and writable by contract.
        unsafe { write_out(out, std::ptr::null_mut()) };
        let ctx = handles::get::<ContextObj>(context)?.ctx.clone();
        let m = handles::get::<ModelObj>(model)?;
        // SAFETY: NULL or NUL-terminated by contract.
        let name = unsafe { c_str(name, "name")? };
        let dtype = m.dir.layer_dtype(name).map_err(model_error)?;
        if ctx.is_gpu() && dtype == DType::F32 {
            return Err(Error::unsupported(format!(
                "layer `{name}` is float32, which is host-only: GPU kernels run on fp16/bf16 \
                 tensor cores (convert the model with --dtype fp16|bf16, or use a CPU context)"
            )));
        }
        let gemm = dispatch_dtype!(dtype, T => gemm_from_model::<T>(&ctx, &m.dir, name))?;
        let handle = handles::new_handle(KernelObj::new(gemm, ctx));
        // SAFETY: as above.
        unsafe { write_out(out, handle) };
        Ok(())
    })
}
