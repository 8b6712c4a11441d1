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

    /// The dense shape, `None` for sparse weights.
    pub fn shape(&self) -> Option<&[Dim]> {
        match self {
            Type::Tensor { shape, .. } => Some(shape),
            Type::Sparse24 { .. } => None,
        }
    }
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
