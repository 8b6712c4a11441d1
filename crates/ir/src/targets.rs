//! GPU targets as data. Numbers are per-SKU datasheet values; the selector only
//! uses them relatively (occupancy, waves, compute vs bandwidth), so "class"
//! values are good enough. Add a target = add one entry to `TARGETS`.

use crate::error::IrError;

/// A sparse tensor-core MMA shape the target executes natively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseMma {
    /// PTX instruction family: `mma.sp` (warp-level) or `wgmma.sp` (warpgroup, Hopper).
    pub instr: &'static str,
    pub m: u32,
    /// For `wgmma.sp` N ranges over multiples of 8 up to 256; this is the largest.
    pub n: u32,
    pub k: u32,
    pub dtypes: &'static [&'static str],
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// IR/CLI name: `sm_80`, `sm_90a`, ...
    pub name: &'static str,
    pub description: &'static str,
    pub sm_count: u32,
    pub smem_per_sm: u32,
    /// Largest dynamic shared memory one block may opt into.
    pub max_smem_per_block: u32,
    pub regs_per_sm: u32,
    pub max_regs_per_thread: u32,
    pub max_threads_per_sm: u32,
    pub max_blocks_per_sm: u32,
    pub l2_bytes: u64,
    /// DRAM bandwidth, bytes/s.
    pub dram_bw: f64,
    /// Dense fp16/bf16 tensor-core throughput with fp32 accumulation, FLOP/s
    /// (2:4 sparse MMA doubles it).
    pub dense_tc_flops: f64,
    pub sparse_mma: &'static [SparseMma],
}

const KIB: u32 = 1024;

const MMA_SP_M16N8K32: SparseMma = SparseMma {
    instr: "mma.sp.sync.aligned.m16n8k32",
    m: 16,
    n: 8,
    k: 32,
    dtypes: &["f16", "bf16"],
};

const WGMMA_SP_M64NNK32: SparseMma = SparseMma {
    instr: "wgmma.mma_async.sp.sync.aligned.m64nNk32",
    m: 64,
    n: 256,
    k: 32,
    dtypes: &["f16", "bf16"],
};

pub static TARGETS: &[Target] = &[
    Target {
        name: "sm_80",
        description: "Ampere A100 (108 SMs)",
        sm_count: 108,
        smem_per_sm: 164 * KIB,
        max_smem_per_block: 163 * KIB,
        regs_per_sm: 65536,
        max_regs_per_thread: 255,
        max_threads_per_sm: 2048,
        max_blocks_per_sm: 32,
        l2_bytes: 40 << 20,
        dram_bw: 2.0e12,
        dense_tc_flops: 312e12,
        sparse_mma: &[MMA_SP_M16N8K32],
    },
    Target {
        name: "sm_86",
        description: "Ampere GA102 class: A40 / RTX 3090 Ti (84 SMs)",
        sm_count: 84,
        smem_per_sm: 100 * KIB,
        max_smem_per_block: 99 * KIB,
        regs_per_sm: 65536,
        max_regs_per_thread: 255,
        max_threads_per_sm: 1536,
        max_blocks_per_sm: 16,
        l2_bytes: 6 << 20,
        dram_bw: 0.9e12,
        dense_tc_flops: 150e12,
        sparse_mma: &[MMA_SP_M16N8K32],
    },
    Target {
        name: "sm_89",
        description: "Ada class: L40 / RTX 4090 (128 SMs)",
        sm_count: 128,
        smem_per_sm: 100 * KIB,
        max_smem_per_block: 99 * KIB,
        regs_per_sm: 65536,
        max_regs_per_thread: 255,
        max_threads_per_sm: 1536,
        max_blocks_per_sm: 24,
        l2_bytes: 72 << 20,
        dram_bw: 1.0e12,
        dense_tc_flops: 180e12,
        sparse_mma: &[MMA_SP_M16N8K32],
    },
    Target {
        name: "sm_90a",
        description: "Hopper H100 SXM (132 SMs)",
        sm_count: 132,
        smem_per_sm: 228 * KIB,
        max_smem_per_block: 227 * KIB,
        regs_per_sm: 65536,
        max_regs_per_thread: 255,
        max_threads_per_sm: 2048,
        max_blocks_per_sm: 32,
        l2_bytes: 50 << 20,
        dram_bw: 3.0e12,
        dense_tc_flops: 989e12,
        sparse_mma: &[MMA_SP_M16N8K32, WGMMA_SP_M64NNK32],
    },
];

pub fn known_targets() -> String {
    TARGETS
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Looks a target up by name; an unknown name is an error listing the known ones.
pub fn target(name: &str) -> Result<&'static Target, IrError> {
    TARGETS
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| IrError::UnknownTarget {
            name: name.to_string(),
            known: known_targets(),
        })
}
