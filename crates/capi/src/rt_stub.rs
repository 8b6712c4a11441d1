//! TEMPORARY stand-in for `sparseflow_runtime` while it is being built: the promised API
//! (Context / Device / SparseGemm / RuntimeError), CPU backend only. Deleted at the switch.
#![allow(dead_code)]

use std::ffi::c_void;

use sparseflow_core::{CoreError, DType, Element, EpilogueKind, Sparse24};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    Cpu,
    Cuda(usize),
}

#[derive(Debug)]
pub enum RuntimeError {
    NoDriver(String),
    Core(CoreError),
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuntimeError::NoDriver(s) => write!(f, "no CUDA driver: {s}"),
            RuntimeError::Core(e) => write!(f, "{e}"),
        }
    }
}

impl From<CoreError> for RuntimeError {
    fn from(e: CoreError) -> Self {
        RuntimeError::Core(e)
    }
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

#[derive(Clone, Debug)]
pub struct Context {
    device: Device,
}

impl Context {
    pub fn new(device: Device) -> Result<Context> {
        match device {
            Device::Cpu => Ok(Context { device }),
            Device::Cuda(_) => Err(RuntimeError::NoDriver("stub runtime".into())),
        }
    }
    pub fn device(&self) -> Device {
        self.device
    }
    pub fn is_gpu(&self) -> bool {
        false
    }
}

enum Weights {
    F32(Sparse24<f32>, Option<Vec<f32>>),
    F16(Sparse24<half::f16>, Option<Vec<half::f16>>),
    BF16(Sparse24<half::bf16>, Option<Vec<half::bf16>>),
}

pub struct SparseGemm {
    w: Weights,
    epilogue: EpilogueKind,
    n: usize,
    k: usize,
    dtype: DType,
}

trait Wrap: Element {
    fn wrap(s: Sparse24<Self>, b: Option<Vec<Self>>) -> Weights;
}
impl Wrap for f32 {
    fn wrap(s: Sparse24<Self>, b: Option<Vec<Self>>) -> Weights {
        Weights::F32(s, b)
    }
}
impl Wrap for half::f16 {
    fn wrap(s: Sparse24<Self>, b: Option<Vec<Self>>) -> Weights {
        Weights::F16(s, b)
    }
}
impl Wrap for half::bf16 {
    fn wrap(s: Sparse24<Self>, b: Option<Vec<Self>>) -> Weights {
        Weights::BF16(s, b)
    }
}

impl SparseGemm {
    pub fn new<T: Element>(
        _ctx: &Context,
        w: &Sparse24<T>,
        bias: Option<&[T]>,
        epilogue: EpilogueKind,
    ) -> Result<SparseGemm> {
        let any: Box<dyn std::any::Any> = Box::new((w.clone(), bias.map(|b| b.to_vec())));
        let weights = if let Some(x) = any.downcast_ref::<(Sparse24<f32>, Option<Vec<f32>>)>() {
            f32::wrap(x.0.clone(), x.1.clone())
        } else if let Some(x) = any.downcast_ref::<(Sparse24<half::f16>, Option<Vec<half::f16>>)>() {
            half::f16::wrap(x.0.clone(), x.1.clone())
        } else if let Some(x) = any.downcast_ref::<(Sparse24<half::bf16>, Option<Vec<half::bf16>>)>() {
            half::bf16::wrap(x.0.clone(), x.1.clone())
        } else {
            unreachable!()
        };
        Ok(SparseGemm { w: weights, epilogue, n: w.n, k: w.k, dtype: T::DTYPE })
    }
    pub fn n(&self) -> usize {
        self.n
    }
    pub fn k(&self) -> usize {
        self.k
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// # Safety
    /// Host pointers with m*k / m*n elements.
    pub unsafe fn forward_raw(
        &self,
        x: *const c_void,
        y: *mut c_void,
        m: usize,
        _stream: Option<*mut c_void>,
    ) -> Result<()> {
        fn go<T: Element>(
            w: &Sparse24<T>,
            b: &Option<Vec<T>>,
            e: EpilogueKind,
            x: *const c_void,
            y: *mut c_void,
            m: usize,
        ) -> Result<()> {
            // SAFETY: stub; caller contract.
            let xs = unsafe { std::slice::from_raw_parts(x.cast::<T>(), m * w.k) };
            // SAFETY: stub; caller contract.
            let ys = unsafe { std::slice::from_raw_parts_mut(y.cast::<T>(), m * w.n) };
            sparseflow_core::sparse_gemm_into(xs, m, w, b.as_deref(), e, ys)?;
            Ok(())
        }
        match &self.w {
            Weights::F32(w, b) => go(w, b, self.epilogue, x, y, m),
            Weights::F16(w, b) => go(w, b, self.epilogue, x, y, m),
            Weights::BF16(w, b) => go(w, b, self.epilogue, x, y, m),
        }
    }
}
