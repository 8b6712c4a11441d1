//! The [`Family`] interface: everything about one kernel family in one place — what selection
//! needs ([`FamilyModel`]: configuration space, resources, grid, workspace, cost estimate), its
//! CUDA template, the weight layout it reads and the kernel parameters of a launch. Built-in
//! families live in `families/` (one file each, beside their template in `kernels/`); the
//! [`Registry`](crate::Registry) lists them, and selection, codegen, the runtime and
//! `sparseflow compile` iterate it.

use sparseflow_ir::{FamilyModel, Target};

use crate::error::CodegenError;
use crate::params::{KernelParams, LaunchInputs};
use crate::spec::KernelSpec;

/// The mma.sp helpers and the epilogue functions, inlined ahead of every standard template.
pub const MMA_SP_CUH: &str = include_str!("../kernels/mma_sp.cuh");
/// The epilogue device functions every `EpilogueSpec::cuda_expr` may call: one `sf_<name>` per
/// activation of the epilogue table (`sf_relu`, `sf_silu`, `sf_gelu`, `sf_gelu_tanh`,
/// `sf_relu2`). Public so other kernels (the benchmark's separate elementwise kernel) compute
/// exactly what the fused epilogue computes.
pub const EPILOGUE_CUH: &str = include_str!("../kernels/epilogue.cuh");

/// One source file spliced into a generated kernel: its name under `kernels/` (for the
/// `// ---- kernels/<file> ----` marker) and its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub file: &'static str,
    pub text: &'static str,
}

/// The headers every family of this crate starts from.
pub const STANDARD_HEADERS: &[Source] = &[
    Source {
        file: "mma_sp.cuh",
        text: MMA_SP_CUH,
    },
    Source {
        file: "epilogue.cuh",
        text: EPILOGUE_CUH,
    },
];

/// How the weight must be laid out on the device for a family's kernels. Every family reads
/// the one fragment layout today (`layout.rs`), so a weight is uploaded once; a family that
/// needs another order adds a variant and its layout function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightLayout {
    /// `mma.sp.m16n8k32` A-fragment order, N padded to 128 and K to 64 (kernels/README.md).
    Fragment,
}

/// Launch geometry of one launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchGeometry {
    pub grid: (u32, u32, u32),
    pub block: u32,
    /// Dynamic shared memory (the runtime opts in above 48 KiB).
    pub dynamic_smem: u32,
    /// Thread-block cluster dimensions (sm_90+), `None` = no cluster launch.
    pub cluster: Option<(u32, u32, u32)>,
    /// The kernel walks its tiles grid-stride (persistent): any smaller grid of whole clusters
    /// covers the work too (and needs no more workspace), so the runtime launches no more
    /// clusters than the device holds at once (the driver's count depends on how its SMs group
    /// into GPCs, which no preset knows).
    pub grid_stride: bool,
}

/// A kernel family. Implement it in `families/<name>.rs` (or anywhere, e.g. a test) and add
/// the value to a [`Registry`](crate::Registry); nothing else names a family.
pub trait Family: FamilyModel {
    /// The template: complete CUDA, compiled after the standard `#define`s (kernel name,
    /// dtype, tiles, epilogue), [`Family::extra_source`] and [`Family::headers`].
    fn template(&self) -> Source;

    /// Files inlined before the template, in order.
    fn headers(&self) -> &'static [Source] {
        STANDARD_HEADERS
    }

    /// Generated code the template needs beyond the standard `#define`s (spliced right after
    /// them), e.g. an instruction whose operand list depends on a tile size.
    fn extra_source(&self, _spec: &KernelSpec) -> String {
        String::new()
    }

    /// The device weight layout the kernels read.
    fn weight_layout(&self) -> WeightLayout {
        WeightLayout::Fragment
    }

    /// Thread-block cluster of a launch (`None`: plain launch).
    fn cluster(&self, _spec: &KernelSpec) -> Option<(u32, u32, u32)> {
        None
    }

    /// Whether the kernel covers its work from any grid up to the planned one
    /// ([`LaunchGeometry::grid_stride`]).
    fn grid_stride(&self, _spec: &KernelSpec) -> bool {
        false
    }

    /// The kernel parameters of one launch, in the template's parameter order. The default
    /// is the standard ABI `(x, wvals, wmeta, bias, y, workspace, M, N, K)`; a family whose
    /// kernel takes other parameters (a TMA descriptor encoded from `x`, ...) overrides it.
    fn launch_params(
        &self,
        _spec: &KernelSpec,
        inputs: &LaunchInputs,
        _target: &Target,
    ) -> Result<KernelParams, CodegenError> {
        KernelParams::standard(inputs)
    }
}
