//! GPU targets as data: named presets (`TARGETS`, for `--target` when no GPU is present) and
//! [`Target::for_device`], which builds the target of the GPU at hand from the attributes the
//! driver reports, taking only bandwidth and tensor-core rate from the closest preset. The
//! selector uses the numbers relatively (occupancy, waves, compute vs bandwidth). Add a preset
//! = add one entry to `TARGETS` (and, for a new GPU name, one line in `preset_for_device`).

use std::borrow::Cow;

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

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// IR/CLI name: a preset (`sm_80`, `sm_90a`, `h200`, ...) or the device's name.
    pub name: Cow<'static, str>,
    /// The code generator's architecture: `sm_80`, `sm_86`, `sm_89`, `sm_90a`.
    pub arch: Cow<'static, str>,
    pub description: Cow<'static, str>,
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
        name: Cow::Borrowed("sm_80"),
        arch: Cow::Borrowed("sm_80"),
        description: Cow::Borrowed("Ampere A100 (108 SMs)"),
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
        name: Cow::Borrowed("sm_86"),
        arch: Cow::Borrowed("sm_86"),
        description: Cow::Borrowed("Ampere GA102 class: A40 / RTX 3090 Ti (84 SMs)"),
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
        name: Cow::Borrowed("sm_89"),
        arch: Cow::Borrowed("sm_89"),
        description: Cow::Borrowed("Ada class: L40 / RTX 4090 (128 SMs)"),
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
        name: Cow::Borrowed("sm_90a"),
        arch: Cow::Borrowed("sm_90a"),
        description: Cow::Borrowed("Hopper H100 SXM (132 SMs)"),
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
    // The GPU this project measures on: an H100 with HBM3e. 4.4 TB/s is the measured read
    // rate (docs/PERFORMANCE.md), not the 4.8 TB/s datasheet value.
    Target {
        name: Cow::Borrowed("h200"),
        arch: Cow::Borrowed("sm_90a"),
        description: Cow::Borrowed("Hopper H200 SXM (132 SMs, 4.4 TB/s measured)"),
        sm_count: 132,
        smem_per_sm: 228 * KIB,
        max_smem_per_block: 227 * KIB,
        regs_per_sm: 65536,
        max_regs_per_thread: 255,
        max_threads_per_sm: 2048,
        max_blocks_per_sm: 32,
        l2_bytes: 60 << 20,
        dram_bw: 4.4e12,
        dense_tc_flops: 990e12,
        sparse_mma: &[MMA_SP_M16N8K32, WGMMA_SP_M64NNK32],
    },
];

pub fn known_targets() -> String {
    TARGETS
        .iter()
        .map(|t| &*t.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Looks a preset up by name; an unknown name is an error listing the known ones.
pub fn target(name: &str) -> Result<&'static Target, IrError> {
    TARGETS
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| IrError::UnknownTarget {
            name: name.to_string(),
            known: known_targets(),
        })
}

/// The code generator's architecture for a compute capability. Hopper gets the arch-specific
/// `sm_90a` (its cubins run only on 9.0; `wgmma.sp` needs it).
pub fn arch_for(major: u32, minor: u32) -> String {
    match (major, minor) {
        (8, 0) => "sm_80".into(),
        // sm_87 (Orin) runs sm_86-class code only from PTX; the sm_86 cubin is the closest.
        (8, 6) | (8, 7) => "sm_86".into(),
        (8, 9) => "sm_89".into(),
        (9, 0) => "sm_90a".into(),
        (ma, mi) => format!("sm_{ma}{mi}"),
    }
}

/// What the driver reports about a GPU (`cuDeviceGetAttribute`); the runtime fills it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFacts {
    pub name: String,
    pub compute_capability: (u32, u32),
    pub sm_count: u32,
    pub smem_per_sm: u32,
    pub max_smem_per_block: u32,
    pub regs_per_sm: u32,
    pub max_threads_per_sm: u32,
    pub max_blocks_per_sm: u32,
    pub l2_bytes: u64,
}

/// The preset whose bandwidth and tensor-core rate describe a device the driver cannot
/// measure them for: by product name where one preset is that product, else by architecture
/// (the sm_90a preset is an H100).
pub fn preset_for_device(name: &str, arch: &str) -> Option<&'static Target> {
    // No product maps to its own preset yet: the decode family's streaming model is calibrated
    // on the H100's 3.0 TB/s, and planning an H200 with its 4.4 TB/s changed the decode
    // configurations and measured 23-37% slower at M = 16 (4096x4096, 14336x4096, 4096x14336;
    // 2026-11-30, SPARSEFLOW_TARGET=sm_90a restored them). An H200 therefore plans with the
    // sm_90a rates and its own SM count, L2 and shared memory until the model is recalibrated;
    // the `h200` preset stays available by name.
    let by_name = ([] as [(&str, &str); 0])
        .into_iter()
        .find(|(product, _)| name.contains(product))
        .and_then(|(_, preset)| target(preset).ok());
    by_name.or_else(|| TARGETS.iter().find(|t| t.arch == arch))
}

impl Target {
    /// The target of a present GPU: every number the driver reports is the device's own; DRAM
    /// bandwidth and tensor-core rate come from [`preset_for_device`] (the class value of the
    /// newest known architecture not above it when no preset matches).
    pub fn for_device(d: &DeviceFacts) -> Target {
        let arch = arch_for(d.compute_capability.0, d.compute_capability.1);
        let base = preset_for_device(&d.name, &arch).unwrap_or_else(|| {
            let cc = d.compute_capability.0 * 10 + d.compute_capability.1;
            // The first preset of the newest architecture (`max_by_key` keeps the last of
            // equals, hence the reversal): sm_90a, not h200.
            TARGETS
                .iter()
                .rev()
                .filter(|t| arch_cc(&t.arch).is_some_and(|t_cc| t_cc <= cc))
                .max_by_key(|t| arch_cc(&t.arch))
                .unwrap_or(&TARGETS[0])
        });
        let nonzero = |v: u32, fallback: u32| if v == 0 { fallback } else { v };
        Target {
            name: Cow::Owned(d.name.clone()),
            arch: Cow::Owned(arch),
            description: Cow::Owned(format!(
                "{} ({} SMs; bandwidth and tensor-core rate of preset {})",
                d.name, d.sm_count, base.name
            )),
            sm_count: nonzero(d.sm_count, base.sm_count),
            smem_per_sm: nonzero(d.smem_per_sm, base.smem_per_sm),
            max_smem_per_block: nonzero(d.max_smem_per_block, base.max_smem_per_block),
            regs_per_sm: nonzero(d.regs_per_sm, base.regs_per_sm),
            max_regs_per_thread: base.max_regs_per_thread,
            max_threads_per_sm: nonzero(d.max_threads_per_sm, base.max_threads_per_sm),
            max_blocks_per_sm: nonzero(d.max_blocks_per_sm, base.max_blocks_per_sm),
            l2_bytes: if d.l2_bytes == 0 {
                base.l2_bytes
            } else {
                d.l2_bytes
            },
            dram_bw: base.dram_bw,
            dense_tc_flops: base.dense_tc_flops,
            sparse_mma: base.sparse_mma,
        }
    }
}

/// `"sm_90a"` → 90.
fn arch_cc(arch: &str) -> Option<u32> {
    arch.strip_prefix("sm_")?.trim_end_matches('a').parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(name: &str, cc: (u32, u32)) -> DeviceFacts {
        DeviceFacts {
            name: name.into(),
            compute_capability: cc,
            sm_count: 132,
            smem_per_sm: 233472,
            max_smem_per_block: 232448,
            regs_per_sm: 65536,
            max_threads_per_sm: 2048,
            max_blocks_per_sm: 32,
            l2_bytes: 62914560,
        }
    }

    #[test]
    fn an_h200_is_planned_with_the_drivers_numbers_and_the_calibrated_rates() {
        let t = Target::for_device(&facts("NVIDIA H200", (9, 0)));
        assert_eq!(t.arch, "sm_90a");
        // The decode model's calibration bandwidth (preset_for_device says why), not 4.4 TB/s.
        assert_eq!(t.dram_bw, target("sm_90a").unwrap().dram_bw);
        assert_eq!(target("h200").unwrap().dram_bw, 4.4e12);
        assert_eq!(t.l2_bytes, 60 << 20);
        assert_eq!(t.max_smem_per_block, 227 * KIB);
        let h100 = Target::for_device(&facts("NVIDIA H100 80GB HBM3", (9, 0)));
        assert_eq!(h100.dram_bw, target("sm_90a").unwrap().dram_bw);
    }

    #[test]
    fn an_unknown_newer_gpu_borrows_the_newest_older_preset() {
        let t = Target::for_device(&facts("Some GPU", (12, 0)));
        assert_eq!(t.arch, "sm_120");
        assert_eq!(t.dram_bw, target("sm_90a").unwrap().dram_bw);
        assert_eq!(arch_for(8, 7), "sm_86");
    }
}
