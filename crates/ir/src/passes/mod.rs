//! The pass registry: one file per pass, one line each here.

use crate::error::IrError;
use crate::function::Module;
use crate::pass::PassContext;

pub mod canonicalize;
pub mod fuse_epilogue;
pub mod select_tiles;

/// A named pass for `--pass-pipeline` and `--list-passes`.
pub struct PassInfo {
    pub name: &'static str,
    pub summary: &'static str,
    pub run: fn(&mut Module, &mut PassContext<'_>) -> Result<(), IrError>,
}

pub static PASSES: &[PassInfo] = &[
    PassInfo {
        name: "fuse-epilogue",
        summary: "fold single-use elementwise chains after sparse_gemm into fused_sparse_gemm {epilogue}, matching the epilogue table",
        run: fuse_epilogue::run,
    },
    PassInfo {
        name: "select-tiles",
        summary: "choose kernel family and tile sizes for each fused_sparse_gemm with the target's occupancy model (needs --target; run fuse-epilogue first)",
        run: select_tiles::run,
    },
    PassInfo {
        name: "canonicalize",
        summary: "dead-code elimination, identity folding (x*1, x+0, relu(relu(x))), broadcast vector as the second operand",
        run: canonicalize::run,
    },
];
