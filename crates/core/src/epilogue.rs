//! The epilogue table: the single definition of every fused epilogue.
//!
//! Each entry holds the IR name, the ABI value (stable: numbers never change, new kinds are
//! appended), the CUDA device expression the code generator splices into kernels, the CPU
//! reference function, and the elementwise op sequence the `fuse-epilogue` pass matches.
//! Adding an epilogue = one entry here (+ its tests); no kernel or pass is rewritten.

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// An epilogue applied to the fp32 accumulator before the output is rounded to the dtype.
/// `#[repr(u32)]`: the discriminants are the C ABI values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u32)]
pub enum EpilogueKind {
    None = 0,
    Relu = 1,
    Silu = 2,
    Gelu = 3,
    Bias = 4,
    BiasRelu = 5,
    BiasSilu = 6,
    BiasGelu = 7,
    GeluTanh = 8,
    BiasGeluTanh = 9,
}

/// One elementwise op of the IR, as the fusion pass sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementwiseOp {
    /// `arith.addf %acc, %bias` with a 1-D bias of length N.
    AddBias,
    Relu,
    Silu,
    Gelu,
    GeluTanh,
}

impl ElementwiseOp {
    pub const ALL: [ElementwiseOp; 5] = [
        ElementwiseOp::AddBias,
        ElementwiseOp::Relu,
        ElementwiseOp::Silu,
        ElementwiseOp::Gelu,
        ElementwiseOp::GeluTanh,
    ];

    /// The IR op name.
    pub fn ir_name(self) -> &'static str {
        match self {
            ElementwiseOp::AddBias => "arith.addf",
            ElementwiseOp::Relu => "arith.relu",
            ElementwiseOp::Silu => "arith.silu",
            ElementwiseOp::Gelu => "arith.gelu",
            ElementwiseOp::GeluTanh => "arith.gelu_tanh",
        }
    }

    pub fn from_ir_name(name: &str) -> Option<ElementwiseOp> {
        ElementwiseOp::ALL
            .into_iter()
            .find(|op| op.ir_name() == name)
    }
}

/// One row of the epilogue table.
#[derive(Debug, Clone, Copy)]
pub struct EpilogueSpec {
    pub kind: EpilogueKind,
    /// IR attribute value and user-facing name.
    pub name: &'static str,
    /// C ABI value (`SparseFlowEpilogue`).
    pub abi_value: u32,
    /// Whether the epilogue reads a bias vector of length N.
    pub uses_bias: bool,
    /// CUDA C expression over `float acc` and `float bias` (0 when unused); may call the
    /// device functions `sf_relu`, `sf_silu`, `sf_gelu`, `sf_gelu_tanh` of `epilogue.cuh`.
    pub cuda_expr: &'static str,
    /// CPU reference: `f(acc, bias)`, evaluated in f64.
    pub cpu: fn(f64, f64) -> f64,
    /// The elementwise chain after `sparse_gemm` that this epilogue replaces, in order.
    pub ops: &'static [ElementwiseOp],
}

pub fn relu(x: f64) -> f64 {
    x.max(0.0)
}

pub fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// Exact GELU: `x · Φ(x) = 0.5 · x · (1 + erf(x / √2))`.
pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + libm::erf(x * std::f64::consts::FRAC_1_SQRT_2))
}

/// Tanh-approximated GELU (PyTorch's `approximate="tanh"`).
pub fn gelu_tanh(x: f64) -> f64 {
    const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
}

use ElementwiseOp as Op;

/// The table. Order = ABI value.
pub static EPILOGUES: &[EpilogueSpec] = &[
    EpilogueSpec {
        kind: EpilogueKind::None,
        name: "none",
        abi_value: 0,
        uses_bias: false,
        cuda_expr: "acc",
        cpu: |a, _| a,
        ops: &[],
    },
    EpilogueSpec {
        kind: EpilogueKind::Relu,
        name: "relu",
        abi_value: 1,
        uses_bias: false,
        cuda_expr: "sf_relu(acc)",
        cpu: |a, _| relu(a),
        ops: &[Op::Relu],
    },
    EpilogueSpec {
        kind: EpilogueKind::Silu,
        name: "silu",
        abi_value: 2,
        uses_bias: false,
        cuda_expr: "sf_silu(acc)",
        cpu: |a, _| silu(a),
        ops: &[Op::Silu],
    },
    EpilogueSpec {
        kind: EpilogueKind::Gelu,
        name: "gelu",
        abi_value: 3,
        uses_bias: false,
        cuda_expr: "sf_gelu(acc)",
        cpu: |a, _| gelu(a),
        ops: &[Op::Gelu],
    },
    EpilogueSpec {
        kind: EpilogueKind::Bias,
        name: "bias",
        abi_value: 4,
        uses_bias: true,
        cuda_expr: "acc + bias",
        cpu: |a, b| a + b,
        ops: &[Op::AddBias],
    },
    EpilogueSpec {
        kind: EpilogueKind::BiasRelu,
        name: "bias_relu",
        abi_value: 5,
        uses_bias: true,
        cuda_expr: "sf_relu(acc + bias)",
        cpu: |a, b| relu(a + b),
        ops: &[Op::AddBias, Op::Relu],
    },
    EpilogueSpec {
        kind: EpilogueKind::BiasSilu,
        name: "bias_silu",
        abi_value: 6,
        uses_bias: true,
        cuda_expr: "sf_silu(acc + bias)",
        cpu: |a, b| silu(a + b),
        ops: &[Op::AddBias, Op::Silu],
    },
    EpilogueSpec {
        kind: EpilogueKind::BiasGelu,
        name: "bias_gelu",
        abi_value: 7,
        uses_bias: true,
        cuda_expr: "sf_gelu(acc + bias)",
        cpu: |a, b| gelu(a + b),
        ops: &[Op::AddBias, Op::Gelu],
    },
    EpilogueSpec {
        kind: EpilogueKind::GeluTanh,
        name: "gelu_tanh",
        abi_value: 8,
        uses_bias: false,
        cuda_expr: "sf_gelu_tanh(acc)",
        cpu: |a, _| gelu_tanh(a),
        ops: &[Op::GeluTanh],
    },
    EpilogueSpec {
        kind: EpilogueKind::BiasGeluTanh,
        name: "bias_gelu_tanh",
        abi_value: 9,
        uses_bias: true,
        cuda_expr: "sf_gelu_tanh(acc + bias)",
        cpu: |a, b| gelu_tanh(a + b),
        ops: &[Op::AddBias, Op::GeluTanh],
    },
];

impl EpilogueKind {
    /// Every kind, in ABI order.
    pub fn all() -> impl Iterator<Item = EpilogueKind> {
        EPILOGUES.iter().map(|s| s.kind)
    }

    /// This kind's table entry.
    pub fn spec(self) -> &'static EpilogueSpec {
        // The table is ordered by ABI value; a unit test keeps it so.
        &EPILOGUES[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    pub fn abi_value(self) -> u32 {
        self as u32
    }

    pub fn uses_bias(self) -> bool {
        self.spec().uses_bias
    }

    /// Looks a kind up by its IR / user name.
    pub fn from_name(name: &str) -> Result<EpilogueKind> {
        EPILOGUES
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.kind)
            .ok_or_else(|| CoreError::UnknownEpilogue {
                name: name.to_string(),
                valid: Self::valid_names(),
            })
    }

    /// Looks a kind up by its ABI value.
    pub fn from_abi(value: u32) -> Option<EpilogueKind> {
        EPILOGUES.get(value as usize).map(|s| s.kind)
    }

    /// `"none, relu, ..."` for error messages and help texts.
    pub fn valid_names() -> String {
        EPILOGUES
            .iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Applies the epilogue to one accumulator in f64.
    pub fn apply(self, acc: f64, bias: f64) -> f64 {
        (self.spec().cpu)(acc, bias)
    }
}

impl std::str::FromStr for EpilogueKind {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self> {
        EpilogueKind::from_name(s)
    }
}

impl std::fmt::Display for EpilogueKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_ordered_by_abi_value() {
        for (i, spec) in EPILOGUES.iter().enumerate() {
            assert_eq!(spec.abi_value as usize, i, "{}", spec.name);
            assert_eq!(spec.kind as usize, i, "{}", spec.name);
        }
    }

    #[test]
    fn bias_flag_matches_op_sequence() {
        for spec in EPILOGUES {
            let has_add = spec.ops.first() == Some(&ElementwiseOp::AddBias);
            assert_eq!(spec.uses_bias, has_add, "{}", spec.name);
            assert_eq!(
                spec.uses_bias,
                spec.cuda_expr.contains("bias"),
                "{}",
                spec.name
            );
        }
    }

    #[test]
    fn names_round_trip_and_unknown_lists_valid() {
        for kind in EpilogueKind::all() {
            assert_eq!(EpilogueKind::from_name(kind.name()).unwrap(), kind);
            assert_eq!(EpilogueKind::from_abi(kind.abi_value()), Some(kind));
        }
        let err = EpilogueKind::from_name("swish").unwrap_err().to_string();
        assert!(err.contains("swish") && err.contains("bias_gelu"), "{err}");
    }

    #[test]
    fn activations_match_known_values() {
        assert_eq!(relu(-1.0), 0.0);
        assert!((silu(1.0) - 0.731_058_578_630_004_9).abs() < 1e-15);
        assert!((gelu(1.0) - 0.841_344_746_068_542_9).abs() < 1e-15);
        assert!((gelu_tanh(1.0) - 0.841_191_990_607_477_2).abs() < 1e-12);
        assert_eq!(EpilogueKind::BiasRelu.apply(-2.0, 1.5), 0.0);
        assert_eq!(EpilogueKind::Bias.apply(-2.0, 1.5), -0.5);
    }
}
