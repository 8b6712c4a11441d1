//! Tile selection: which family serves an M, the ranked legal candidates, and the
//! per-M entry the runtime calls with the actual token count.
//!
//! Dynamic M (`?`): a compiled layer serves many M. `select-tiles` then uses the
//! op's `m_hint` attribute if present, else `DYNAMIC_M_DEFAULT` (a prefill-sized
//! batch) and the `sm80` family (the only one valid for every M). The runtime
//! instead plans every concrete M: it calls `plan_layer` (which runs this
//! selector through the passes) with the next power of two of the actual M and
//! caches the result per bucket (`sparseflow_runtime::bucket`).

use crate::cost_model::{estimate, TileChoice};
use crate::error::IrError;
use crate::kernel_space::{candidates, check, family, FamilySpace, GemmShape, DECODE, SM80};
use crate::targets::Target;

/// Representative M for `?` when the op carries no `m_hint`.
pub const DYNAMIC_M_DEFAULT: u64 = 2048;

/// Token counts up to which `decode` is the only family considered (one token tile).
pub const DECODE_ONLY_MAX_M: u64 = 16;

/// The families competing for a token count: `decode` alone up to
/// [`DECODE_ONLY_MAX_M`], `decode` and `sm80` by estimate up to the decode family's
/// `max_m`, then `sm80`. `None` (dynamic) → `sm80`.
pub fn families_for_m(m: Option<u64>) -> Vec<&'static FamilySpace> {
    let decode = family(DECODE.name).unwrap_or(&DECODE);
    let sm80 = family(SM80.name).unwrap_or(&SM80);
    match m {
        Some(m) if m <= DECODE_ONLY_MAX_M => vec![decode],
        Some(m) if DECODE.max_m.is_some_and(|max| m <= max) => vec![decode, sm80],
        _ => vec![sm80],
    }
}

/// The smallest M served by `sm80` alone; a dynamic M is planned at least this large, so its
/// kernel is valid for any M.
pub fn first_sm80_only_m() -> u64 {
    DECODE.max_m.map_or(1, |max| max + 1)
}

/// A finer bucketing for callers of `select_for_m`: exact up to 16 (decode tiles
/// care), then powers of two, so at most ~30 plans per layer. (The runtime uses
/// powers of two throughout.)
pub fn m_bucket(m: u64) -> u64 {
    if m <= 16 {
        m.max(1)
    } else {
        m.checked_next_power_of_two().unwrap_or(m)
    }
}

/// All legal candidates for this M, best first. Ties break on the config's
/// field order so the result is deterministic.
pub fn rank(shape: &GemmShape, m: u64, target: &Target) -> Vec<TileChoice> {
    let concrete = GemmShape {
        m: Some(m),
        ..*shape
    };
    let mut ranked: Vec<TileChoice> = families_for_m(Some(m))
        .into_iter()
        .flat_map(candidates)
        .filter(|cfg| check(cfg, &concrete, Some(target)).is_ok())
        .filter_map(|cfg| estimate(&cfg, &concrete, m, target))
        .collect();
    ranked.sort_by(|a, b| {
        a.est_us
            .total_cmp(&b.est_us)
            .then_with(|| a.config.cmp(&b.config))
    });
    ranked
}

/// The best configuration for a concrete M.
pub fn select_for_m(shape: &GemmShape, m: u64, target: &Target) -> Result<TileChoice, IrError> {
    rank(shape, m, target).into_iter().next().ok_or_else(|| {
        IrError::Plan(format!(
            "no legal tile configuration for M={m} N={} K={} {} on {}",
            shape.n, shape.k, shape.dtype, target.name
        ))
    })
}

/// One line for `--explain`.
pub fn describe(c: &TileChoice) -> String {
    let t = &c.config;
    format!(
        "{} tile {}x{}x{} warps={} stages={} split_k={}: est {:.1} us (compute {:.1}, dram {:.1}, l2 {:.1}; {} blocks/SM, grid {}, {:.2} waves, eff {:.2})",
        t.family, t.tile_m, t.tile_n, t.tile_k, t.warps, t.stages, t.split_k,
        c.est_us, c.compute_us, c.dram_us, c.l2_us, c.blocks_per_sm, c.grid, c.waves, c.wave_efficiency
    )
}
