//! IR types: dense tensors (`tensor<?x4096xf16>`) and 2:4 sparse weights
//! (`!sparseflow.sparse24<14336x4096xf16>`). Element types are core's `DType`
//! so a new dtype is added in one place.

use std::fmt;

use sparseflow_core::DType;

/// One tensor dimension; `?` is only known at run time (typically M = tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    Static(u64),
    Dynamic,
}

impl Dim {
    pub fn as_static(self) -> Option<u64> {
        match self {
            Dim::Static(n) => Some(n),
            Dim::Dynamic => None,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Static(n) => write!(f, "{n}"),
            Dim::Dynamic => f.write_str("?"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Type {
    /// Dense row-major tensor.
    Tensor { shape: Vec<Dim>, dtype: DType },
    /// Compressed 2:4 weight `W[N, K]`, sparse along K (docs/FORMAT.md).
    /// Always static: weights are known when the layer is compiled.
    Sparse24 { n: u64, k: u64, dtype: DType },
}

impl Type {
    pub fn tensor(shape: &[Dim], dtype: DType) -> Type {
        Type::Tensor {
            shape: shape.to_vec(),
            dtype,
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            Type::Tensor { dtype, .. } | Type::Sparse24 { dtype, .. } => *dtype,
        }
    }

    /// The vector a binary op broadcasts over the rows of this dense tensor:
    /// `tensor<[last dim] x dt>` (`None` for sparse weights).
    pub fn row_vector(&self) -> Option<Type> {
        match self {
            Type::Tensor { shape, dtype } => Some(Type::Tensor {
                shape: shape.last().copied().into_iter().collect(),
                dtype: *dtype,
            }),
            Type::Sparse24 { .. } => None,
        }
    }

    /// The dense shape, `None` for sparse weights.
    pub fn shape(&self) -> Option<&[Dim]> {
        match self {
            Type::Tensor { shape, .. } => Some(shape),
            Type::Sparse24 { .. } => None,
        }
    }
}

/// The largest M, N or K the runtime's kernels take: they index with 32-bit ints
/// (`sparseflow_runtime::bucket` refuses a larger M, `SparseGemm::new` a larger N or K).
/// The verifier and `sparseflow compile` refuse larger GEMM dimensions up front.
pub const MAX_DIM: u64 = i32::MAX as u64;

/// `Err` naming the dimension, its value and the limit when `value` exceeds [`MAX_DIM`].
pub fn check_dim(name: &str, value: u64) -> Result<(), String> {
    if value > MAX_DIM {
        return Err(format!(
            "{name} = {value} exceeds the kernels' 32-bit limit of {MAX_DIM} (i32::MAX)"
        ));
    }
    Ok(())
}

/// The element types the parser accepts, for error messages.
pub(crate) const DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Tensor { shape, dtype } => {
                f.write_str("tensor<")?;
                for d in shape {
                    write!(f, "{d}x")?;
                }
                write!(f, "{}>", dtype.ir_name())
            }
            Type::Sparse24 { n, k, dtype } => {
                write!(f, "!sparseflow.sparse24<{n}x{k}x{}>", dtype.ir_name())
            }
        }
    }
}
