//! The epilogue table: the single definition of every fused epilogue.
//!
//! Each entry holds the IR name, the ABI value (stable: numbers never change, new kinds are
//! appended), the CUDA device expression the code generator splices into kernels, the CPU
//! reference function, and the elementwise op sequence the `fuse-epilogue` pass matches.
//! Adding an epilogue = one entry here (+ its tests); no kernel or pass is rewritten. Every face
//! reads this table: the IR's op set (`sparseflow_ir::Opcode`), the C enum (checked against it
//! by `crates/capi`'s tests) and `sparseflow_epilogue_info`, Python's `sparseflow._C.epilogues()`
//! (hence `sf.ACTIVATIONS` and `sparsify`'s fusions), and the GPU correctness matrix. The recipe
//! for a new epilogue or activation is in docs/ARCHITECTURE.md, "Adding an epilogue".

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
    Relu2 = 10,
    BiasRelu2 = 11,
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
    /// Squared ReLU, `max(x, 0)²` (Primer; Nemotron's `relu2`).
    Relu2,
}

impl ElementwiseOp {
    pub const ALL: [ElementwiseOp; 6] = [
        ElementwiseOp::AddBias,
        ElementwiseOp::Relu,
        ElementwiseOp::Silu,
        ElementwiseOp::Gelu,
        ElementwiseOp::GeluTanh,
        ElementwiseOp::Relu2,
    ];

    /// The IR op name. Every op but `AddBias` is a unary IR op of its own (`arith.<name>`),
    /// which is how the IR's op set follows this enum.
    pub fn ir_name(self) -> &'static str {
        match self {
            ElementwiseOp::AddBias => "arith.addf",
            ElementwiseOp::Relu => "arith.relu",
            ElementwiseOp::Silu => "arith.silu",
            ElementwiseOp::Gelu => "arith.gelu",
            ElementwiseOp::GeluTanh => "arith.gelu_tanh",
            ElementwiseOp::Relu2 => "arith.relu2",
        }
    }

    pub fn from_ir_name(name: &str) -> Option<ElementwiseOp> {
        ElementwiseOp::ALL
            .into_iter()
            .find(|op| op.ir_name() == name)
    }

    /// The activation's user-facing name (`relu2`: the IR name without `arith.`, as Python's
    /// `SparseLinear(activation=...)` and `sparseflow_epilogue_info` spell it); `None` for
    /// `AddBias`, which is not an activation.
    pub fn activation_name(self) -> Option<&'static str> {
        match self {
            ElementwiseOp::AddBias => None,
            op => op.ir_name().strip_prefix("arith."),
        }
    }

    /// A bound on `|f(x) - f(x0)| / |x - x0|` over `|x - x0| <= radius`: how much an error of
    /// `radius` in the input at `x0` can grow through this op. Tests derive their tolerances
    /// from it (`EpilogueKind::error_gain`), so a new activation states its own.
    pub fn slope_bound(self, x0: f64, radius: f64) -> f64 {
        match self {
            ElementwiseOp::AddBias | ElementwiseOp::Relu => 1.0,
            // max |silu'| = 1.0998 (x ≈ 2.4); max |gelu'| = 1.1289 (x ≈ 1.4), tanh form alike.
            ElementwiseOp::Silu => 1.1,
            ElementwiseOp::Gelu | ElementwiseOp::GeluTanh => 1.13,
            // d/dx max(x, 0)² = 2·max(x, 0) <= 2·(|x0| + radius) on the interval.
            ElementwiseOp::Relu2 => 2.0 * (x0.abs() + radius),
        }
    }

    /// Applies the op to one value in f64 (`AddBias` adds `bias`): the CPU semantics of each
    /// op, which every table entry's `cpu` composes.
    pub fn apply(self, x: f64, bias: f64) -> f64 {
        match self {
            ElementwiseOp::AddBias => x + bias,
            ElementwiseOp::Relu => relu(x),
            ElementwiseOp::Silu => silu(x),
            ElementwiseOp::Gelu => gelu(x),
            ElementwiseOp::GeluTanh => gelu_tanh(x),
            ElementwiseOp::Relu2 => relu2(x),
        }
    }

    /// Every activation (every op but `AddBias`), in `ALL` order.
    pub fn activations() -> impl Iterator<Item = ElementwiseOp> {
        ElementwiseOp::ALL
            .into_iter()
            .filter(|op| *op != ElementwiseOp::AddBias)
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
    /// device functions of `epilogue.cuh`, one `sf_<name>` per activation (`sf_relu`, `sf_silu`,
    /// `sf_gelu`, `sf_gelu_tanh`, `sf_relu2`).
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

/// Squared ReLU, `max(x, 0)²` (PyTorch: `torch.relu(x).square()`).
pub fn relu2(x: f64) -> f64 {
    let r = relu(x);
    r * r
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
    EpilogueSpec {
        kind: EpilogueKind::Relu2,
        name: "relu2",
        abi_value: 10,
        uses_bias: false,
        cuda_expr: "sf_relu2(acc)",
        cpu: |a, _| relu2(a),
        ops: &[Op::Relu2],
    },
    EpilogueSpec {
        kind: EpilogueKind::BiasRelu2,
        name: "bias_relu2",
        abi_value: 11,
        uses_bias: true,
        cuda_expr: "sf_relu2(acc + bias)",
        cpu: |a, b| relu2(a + b),
        ops: &[Op::AddBias, Op::Relu2],
    },
];

impl EpilogueSpec {
    /// The activation ops applied after the optional bias (`[Relu2]` for `bias_relu2`, `[]` for
    /// `none` and `bias`).
    pub fn activation_ops(&self) -> &'static [ElementwiseOp] {
        match self.ops.split_first() {
            Some((ElementwiseOp::AddBias, rest)) => rest,
            _ => self.ops,
        }
    }

    /// The names of [`activation_ops`](Self::activation_ops) in application order (`[]` for
    /// `none` and `bias`): what Python's autograd chains and what [`activation`](Self::activation)
    /// joins.
    pub fn activation_names(&self) -> Vec<&'static str> {
        self.activation_ops()
            .iter()
            .filter_map(|op| op.activation_name())
            .collect()
    }

    /// The activation as the faces name it: `"none"`, `"relu2"`, or for a composed chain the
    /// activation names joined by `_` in application order. With `uses_bias` it identifies the
    /// entry (a table test keeps the pairs unique), which is how Python maps
    /// `SparseLinear(activation=..., bias=...)` to an epilogue.
    pub fn activation(&self) -> String {
        let names = self.activation_names();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join("_")
        }
    }
}

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

    /// A bound on how much an error of `radius` in the accumulator `acc` can grow through this
    /// epilogue (the product of its ops' `slope_bound`s along the chain). Test tolerances:
    /// `error_gain(acc, bias, accumulation_bound) * accumulation_bound`.
    pub fn error_gain(self, acc: f64, bias: f64, radius: f64) -> f64 {
        let (mut x, mut r, mut gain) = (acc, radius, 1.0);
        for op in self.spec().ops {
            let slope = op.slope_bound(x, r);
            (x, r, gain) = (op.apply(x, bias), r * slope, gain * slope);
        }
        gain
    }

    /// The bias rule every entry point applies (Rust, C, Python, model files): a bias is given
    /// exactly when this epilogue adds one, and it has `n` elements. `bias_len` is `None` when
    /// no bias was given; a caller that only holds a pointer whose length is its contract passes
    /// `Some(n)`.
    pub fn check_bias(self, bias_len: Option<usize>, n: usize) -> Result<()> {
        match (self.uses_bias(), bias_len) {
            (true, None) => Err(CoreError::BiasMismatch {
                epilogue: self.name(),
                problem: "needs a bias vector of length N, but none was given",
            }),
            (false, Some(_)) => Err(CoreError::BiasMismatch {
                epilogue: self.name(),
                problem: "takes no bias, but one was given (use a bias_* epilogue)",
            }),
            (true, Some(len)) if len != n => Err(CoreError::LengthMismatch {
                what: "bias [N]",
                expected: n,
                got: len,
            }),
            _ => Ok(()),
        }
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
        assert_eq!(relu2(-3.0), 0.0);
        assert_eq!(relu2(3.0), 9.0);
        assert_eq!(EpilogueKind::BiasRelu2.apply(1.0, 0.5), 2.25);
        assert_eq!(EpilogueKind::BiasRelu2.apply(-1.0, 0.5), 0.0);
    }

    #[test]
    fn every_activation_is_in_the_table_with_and_without_bias() {
        // What the faces rely on: each activation is reachable as `<act>` and `bias_<act>`,
        // `(activation, uses_bias)` names one entry, and `none` / `bias` exist.
        let mut seen = std::collections::HashSet::new();
        for spec in EPILOGUES {
            assert!(
                seen.insert((spec.activation(), spec.uses_bias)),
                "{}: (activation, bias) pair used twice",
                spec.name
            );
            let want = match (spec.uses_bias, spec.activation().as_str()) {
                (false, act) => act.to_string(),
                (true, "none") => "bias".to_string(),
                (true, act) => format!("bias_{act}"),
            };
            assert_eq!(spec.name, want, "the name follows the activation and bias");
        }
        for op in ElementwiseOp::activations() {
            let act = op.activation_name().unwrap();
            for bias in [false, true] {
                assert!(
                    seen.contains(&(act.to_string(), bias)),
                    "activation {act} (bias {bias}) has no table entry"
                );
            }
            assert_eq!(ElementwiseOp::from_ir_name(op.ir_name()), Some(op));
        }
        assert_eq!(ElementwiseOp::AddBias.activation_name(), None);
    }

    #[test]
    fn cpu_entries_compose_their_ops_and_slopes_bound_them() {
        // Each entry's `cpu` is its op chain, and `error_gain` really bounds the change of the
        // output over a small interval (sampled), for every epilogue.
        for spec in EPILOGUES {
            for i in -40..=40 {
                let (acc, bias, r) = (f64::from(i) * 0.25, 0.375, 1e-3);
                let chain = spec.ops.iter().fold(acc, |x, op| op.apply(x, bias));
                assert_eq!((spec.cpu)(acc, bias), chain, "{} at {acc}", spec.name);
                let gain = spec.kind.error_gain(acc, bias, r);
                for x in [acc - r, acc + r] {
                    let moved = ((spec.cpu)(x, bias) - chain).abs();
                    assert!(moved <= gain * r * (1.0 + 1e-9), "{} at {acc}", spec.name);
                }
            }
        }
    }

    #[test]
    fn cuda_expressions_compose_their_ops() {
        // `sf_<activation>` per activation, innermost first, over `acc` or `acc + bias`:
        // kernels/epilogue.cuh defines one device function per activation.
        for spec in EPILOGUES {
            let want = spec.ops.iter().fold("acc".to_string(), |x, op| match op {
                ElementwiseOp::AddBias => format!("{x} + bias"),
                act => format!("sf_{}({x})", act.activation_name().unwrap()),
            });
            assert_eq!(spec.cuda_expr, want, "{}", spec.name);
        }
    }

    #[test]
    fn check_bias_is_the_one_rule() {
        assert!(EpilogueKind::BiasRelu2.check_bias(Some(4), 4).is_ok());
        assert!(EpilogueKind::Relu2.check_bias(None, 4).is_ok());
        let missing = EpilogueKind::BiasRelu2.check_bias(None, 4).unwrap_err();
        assert!(missing.to_string().contains("needs a bias"), "{missing}");
        let extra = EpilogueKind::Relu.check_bias(Some(4), 4).unwrap_err();
        assert!(extra.to_string().contains("takes no bias"), "{extra}");
        let short = EpilogueKind::Bias.check_bias(Some(3), 4).unwrap_err();
        assert!(short.to_string().contains("bias [N]"), "{short}");
    }
}
