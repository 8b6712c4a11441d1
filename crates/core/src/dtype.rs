//! Element types. `DType` is an enum that grows (int8 / fp8 later); `Element` is the trait the
//! generic code is written against.

// Public so that `dispatch_dtype!` can name them from any crate as `$crate::dtype::f16`.
pub use half::{bf16, f16};
use serde::{Deserialize, Serialize};

/// Data types SparseFlow stores weights and activations in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    pub const ALL: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

    /// The IR spelling: `f32`, `f16`, `bf16`.
    pub fn ir_name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        }
    }

    pub fn from_ir_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.ir_name() == name)
    }

    /// The PyTorch / safetensors spelling: `float32`, `float16`, `bfloat16`.
    pub fn torch_name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
        }
    }

    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }
}

/// Runs `$body` with `$T` bound to the Rust element type of a runtime [`DType`]: the one place
/// where a dtype read at run time (from C, Python or a model file) becomes a compile-time type,
/// so a new dtype is one arm here rather than one in every face.
///
/// ```
/// use sparseflow_core::{dispatch_dtype, DType, Element};
/// fn size<T: Element>() -> usize { std::mem::size_of::<T>() }
/// assert_eq!(dispatch_dtype!(DType::BF16, T => size::<T>()), 2);
/// ```
#[macro_export]
macro_rules! dispatch_dtype {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            $crate::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::DType::F16 => {
                type $T = $crate::dtype::f16;
                $body
            }
            $crate::DType::BF16 => {
                type $T = $crate::dtype::bf16;
                $body
            }
        }
    };
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.ir_name())
    }
}

/// A scalar type the format and the reference are generic over (f32, fp16, bf16).
pub trait Element: Copy + Default + PartialEq + Send + Sync + std::fmt::Debug + 'static {
    const DTYPE: DType;
    fn to_f32(self) -> f32;
    fn from_f32(v: f32) -> Self;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;

    /// Zero in value (both +0 and -0 count as zero for sparsity).
    fn is_zero(self) -> bool {
        self.to_f32() == 0.0
    }
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(v: f32) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

macro_rules! half_element {
    ($t:ty, $dtype:expr) => {
        impl Element for $t {
            const DTYPE: DType = $dtype;
            fn to_f32(self) -> f32 {
                <$t>::to_f32(self)
            }
            fn from_f32(v: f32) -> Self {
                <$t>::from_f32(v)
            }
            fn to_f64(self) -> f64 {
                <$t>::to_f64(self)
            }
            fn from_f64(v: f64) -> Self {
                <$t>::from_f64(v)
            }
        }
    };
}

half_element!(f16, DType::F16);
half_element!(bf16, DType::BF16);
