//! The kernel configuration space: a CONTRACT with `crates/codegen`. Every
//! (family, tile) the selector may choose must have a CUDA template instance.
//! The codegen owners edit the constants in `FAMILIES` to match what the
//! templates support; the rules below (`smem_bytes`, `check_shape`) state the
//! templates' constraints. Nothing else in the IR hard-codes tile values.
//!
//! GEMM naming: `Y[M×N] = X[M×K]·Wᵀ`, M = tokens, N = out features.

use sparseflow_core::DType;

use crate::targets::Target;

/// The values one kernel family's template can be instantiated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilySpace {
    /// IR `family` attribute value.
    pub name: &'static str,
    pub summary: &'static str,
    /// Largest M (tokens) the family handles; `None` = any M.
    pub max_m: Option<u64>,
    /// Tokens per block.
    pub tile_m: &'static [u32],
    /// Output features per block.
    pub tile_n: &'static [u32],
    /// Reduction depth per pipeline stage (dense K units).
    pub tile_k: &'static [u32],
    pub warps: &'static [u32],
    /// cp.async pipeline depth.
    pub stages: &'static [u32],
    pub split_k: &'static [u32],
}

/// `mma.sp m16n8k32` + `ldmatrix` + `cp.async`; any M; sm_80 and newer.
pub const SM80: FamilySpace = FamilySpace {
    name: "sm80",
    summary: "mma.sp m16n8k32 + ldmatrix + cp.async multi-stage; any M; sm_80+",
    max_m: None,
    tile_m: &[32, 64, 128],
    tile_n: &[64, 128],
    tile_k: &[64],
    warps: &[4, 8],
    stages: &[2, 3, 4],
    split_k: &[1],
};

/// Weight streaming for small M (tokens on the MMA's n8 side), split-K so every SM
/// streams a slice of the weight. M above `tile_m` runs `ceil(M / tile_m)` token tiles
/// (grid.z), each streaming the weight again (from L2 while it fits), so past 16 tokens
/// select-tiles weighs it against `sm80` by estimate.
pub const DECODE: FamilySpace = FamilySpace {
    name: "decode",
    summary: "weight-streaming split-K for M <= 64 (tokens on the MMA n8 side)",
    max_m: Some(64),
    tile_m: &[8, 16],
    // Every warp covers all tile_n rows (A fragments live in registers).
    tile_n: &[16, 32, 64],
    // K per CTA step = 4 warps x one 64-wide K pair.
    tile_k: &[256],
    warps: &[4],
    // K pairs each warp keeps in flight (weights in registers, X in shared memory). 4 measured
    // 1-2% faster only where a warp has <= 4 K pairs at M <= 8 and slower elsewhere, spills at
    // 8x16 split 1 and overflows 48 KB of static shared memory at 16x64.
    stages: &[2, 3],
    split_k: &[1, 2, 4, 8, 16, 32],
};

pub static FAMILIES: &[FamilySpace] = &[SM80, DECODE];

/// One point of the space: the tile attributes of a `fused_sparse_gemm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileConfig {
    pub family: &'static str,
    pub tile_m: u32,
    pub tile_n: u32,
    pub tile_k: u32,
    pub warps: u32,
    pub stages: u32,
    pub split_k: u32,
}

/// The problem a config is checked against; `m = None` when M is dynamic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmShape {
    pub m: Option<u64>,
    pub n: u64,
    pub k: u64,
    pub dtype: DType,
}

pub fn family(name: &str) -> Option<&'static FamilySpace> {
    FAMILIES.iter().find(|f| f.name == name)
}

pub fn family_names() -> String {
    FAMILIES
        .iter()
        .map(|f| f.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every combination of the family's values, in a fixed order (shape and target
/// legality are checked separately by `check`).
pub fn candidates(family: &'static FamilySpace) -> impl Iterator<Item = TileConfig> {
    family.tile_m.iter().flat_map(move |&tile_m| {
        family.tile_n.iter().flat_map(move |&tile_n| {
            family.tile_k.iter().flat_map(move |&tile_k| {
                family.warps.iter().flat_map(move |&warps| {
                    family.stages.iter().flat_map(move |&stages| {
                        family.split_k.iter().map(move |&split_k| TileConfig {
                            family: family.name,
                            tile_m,
                            tile_n,
                            tile_k,
                            warps,
                            stages,
                            split_k,
                        })
                    })
                })
            })
        })
    })
}

/// Dynamic shared memory per block: every stage holds a W tile (values K/2 +
/// meta 4 bits per kept pair → tile_k/8 bytes per row) and an X tile.
pub fn smem_bytes(cfg: &TileConfig, dtype: DType) -> u64 {
    let el = dtype.size_bytes() as u64;
    let (m, n, k) = (cfg.tile_m as u64, cfg.tile_n as u64, cfg.tile_k as u64);
    let per_stage = n * k / 2 * el + n * k / 8 + m * k * el;
    cfg.stages as u64 * per_stage
}

/// Whether `cfg` is a point of its family's space, fits `shape` and (when given)
/// the target. `Err` says which rule failed.
pub fn check(cfg: &TileConfig, shape: &GemmShape, target: Option<&Target>) -> Result<(), String> {
    let Some(space) = family(cfg.family) else {
        return Err(format!(
            "unknown kernel family '{}'; known: {}",
            cfg.family,
            family_names()
        ));
    };
    let fields: [(&str, u32, &[u32]); 6] = [
        ("tile_m", cfg.tile_m, space.tile_m),
        ("tile_n", cfg.tile_n, space.tile_n),
        ("tile_k", cfg.tile_k, space.tile_k),
        ("warps", cfg.warps, space.warps),
        ("stages", cfg.stages, space.stages),
        ("split_k", cfg.split_k, space.split_k),
    ];
    for (name, value, allowed) in fields {
        if !allowed.contains(&value) {
            return Err(format!(
                "{name} = {value} is not supported by family '{}' (allowed: {allowed:?})",
                space.name
            ));
        }
    }
    if let (Some(max_m), Some(m)) = (space.max_m, shape.m) {
        if m > max_m {
            return Err(format!(
                "family '{}' handles M <= {max_m}, got M = {m}",
                space.name
            ));
        }
    }
    if space.max_m.is_some() {
        // Decode puts tokens on the MMA's n side: one token tile holds all of M while M fits
        // the largest tile_m; beyond that, the largest tile_m (fewest weight re-streams).
        let largest = space.tile_m.iter().copied().max().unwrap_or(0) as u64;
        if let Some(m) = shape.m {
            if (cfg.tile_m as u64) < m.min(largest) {
                return Err(format!("tile_m = {} is smaller than M = {m}", cfg.tile_m));
            }
        }
    }
    let k_tiles = shape.k.div_ceil(cfg.tile_k as u64);
    if cfg.split_k as u64 > k_tiles {
        return Err(format!(
            "split_k = {} exceeds the {k_tiles} K tiles of K = {} / tile_k = {}",
            cfg.split_k, shape.k, cfg.tile_k
        ));
    }
    if let Some(t) = target {
        let smem = smem_bytes(cfg, shape.dtype);
        if smem > t.max_smem_per_block as u64 {
            return Err(format!(
                "needs {smem} bytes of shared memory per block, {} allows {}",
                t.name, t.max_smem_per_block
            ));
        }
    }
    Ok(())
}
