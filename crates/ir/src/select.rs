//! Tile selection over the registered families: which families compete for an M, the ranked
//! legal candidates, and the one M-bucketing rule.
//!
//! Dynamic M (`?`): a compiled layer serves many M. `select-tiles` then uses the op's `m_hint`
//! attribute if present, else `DYNAMIC_M_DEFAULT` (a prefill-sized batch), raised to
//! [`first_unbounded_m`] so only families valid for every M compete. The runtime instead plans
//! every concrete M: `plan_layer` plans M at [`m_bucket`] and the runtime caches one plan per
//! bucket.

use std::cmp::Ordering;

use crate::error::IrError;
use crate::family::{check, Eligibility, Families, FamilyModel, TileChoice};
use crate::kernel_config::{candidates, GemmShape};
use crate::targets::Target;
use crate::types::MAX_DIM;

pub use crate::family::first_unbounded_m;

/// Representative M for `?` when the op carries no `m_hint`.
pub const DYNAMIC_M_DEFAULT: u64 = 2048;

/// The M a plan is made for, and the runtime's plan-cache key: the next power of two (1, 2,
/// 4, 8, 16, 32, ...), so a layer has at most 32 plans. `Err` for 0 and for M beyond the
/// kernels' 32-bit dimensions. `plan_layer` applies it, so every caller (runtime, `sparseflow
/// compile`, the benchmark) plans a given M identically.
pub fn m_bucket(m: u64) -> Result<u64, IrError> {
    if m == 0 {
        return Err(IrError::Plan("m (tokens) must be >= 1".into()));
    }
    if m > MAX_DIM {
        return Err(IrError::Plan(format!(
            "m = {m} exceeds the kernels' 32-bit dimensions; split the batch"
        )));
    }
    Ok(m.next_power_of_two())
}

/// The families competing for `m` tokens: those that can serve it, narrowed to the ones that
/// say `Preferred` when any does.
pub fn families_for_m<'a>(
    families: &Families<'a>,
    m: u64,
    shape: &GemmShape,
    target: &Target,
) -> Vec<&'a dyn FamilyModel> {
    let fit: Vec<(&dyn FamilyModel, Eligibility)> = families
        .iter()
        .copied()
        .filter(|f| f.max_m().is_none_or(|max| m <= max) && f.supports_arch(&target.arch))
        .map(|f| (f, f.eligibility(m, shape, target)))
        .filter(|(_, e)| *e != Eligibility::Unfit)
        .collect();
    let best = fit.iter().map(|(_, e)| *e).max();
    fit.into_iter()
        .filter(|(_, e)| Some(*e) == best)
        .map(|(f, _)| f)
        .collect()
}

/// The cost model's order: estimate, ties broken on the config's field order so the result is
/// deterministic.
fn by_estimate(a: &TileChoice, b: &TileChoice) -> Ordering {
    a.est_us
        .total_cmp(&b.est_us)
        .then_with(|| a.config.cmp(&b.config))
}

/// Whether [`rank_family`] offers the family's measured-only configurations
/// ([`FamilyModel::measured_only`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Offer {
    /// Planning without a measurement: estimates alone.
    Estimated,
    /// Candidates for measurement (`sparseflow tune`).
    ForTuning,
}

/// `family`'s legal candidates for `shape` (M concrete), best first.
fn rank_family(
    families: &Families<'_>,
    family: &dyn FamilyModel,
    shape: &GemmShape,
    m: u64,
    target: &Target,
    offer: Offer,
) -> Vec<TileChoice> {
    let mut ranked: Vec<TileChoice> = candidates(family.name(), family.space())
        .filter(|cfg| offer == Offer::ForTuning || !family.measured_only(cfg))
        .filter(|cfg| check(families, cfg, shape, Some(target)).is_ok())
        .filter_map(|cfg| family.estimate(&cfg, shape, m, target))
        .collect();
    ranked.sort_by(by_estimate);
    ranked
}

/// All legal candidates for this M, best first.
pub fn rank(
    families: &Families<'_>,
    shape: &GemmShape,
    m: u64,
    target: &Target,
) -> Vec<TileChoice> {
    let concrete = GemmShape {
        m: Some(m),
        ..*shape
    };
    let mut ranked: Vec<TileChoice> = families_for_m(families, m, &concrete, target)
        .into_iter()
        .flat_map(|f| rank_family(families, f, &concrete, m, target, Offer::Estimated))
        .collect();
    ranked.sort_by(by_estimate);
    ranked
}

/// What `sparseflow tune` measures: the cost model's best `top_k` legal candidates of every
/// family that can run `m` tokens on `target` (its `max_m` and architecture), in registry
/// order, each family's best first. A family's [`Eligibility`] is not asked: it is the cost
/// model's judgement of where a family is worth ranking (the decode/Hopper crossover among
/// them), which measurement replaces. Legality is [`check`]'s, as for [`rank`].
///
/// Beside its top `top_k`, each family offers its best candidate of every token-tile height
/// (`tile_m`) the top `top_k` lacks: the estimate ranks token tiles by compute, while at a few
/// dozen tokens the weight stream decides — on the H200 at M = 64 (14336x4096) the 64-token
/// tile ran 22 us and the 128-token tiles the estimate then put first 37 us, and a top 3 held
/// only the latter.
pub fn top_k_per_family(
    families: &Families<'_>,
    shape: &GemmShape,
    m: u64,
    target: &Target,
    top_k: usize,
) -> Vec<TileChoice> {
    let concrete = GemmShape {
        m: Some(m),
        ..*shape
    };
    families
        .iter()
        .filter(|f| f.max_m().is_none_or(|max| m <= max) && f.supports_arch(&target.arch))
        .flat_map(|&f| {
            let mut kept = rank_family(families, f, &concrete, m, target, Offer::ForTuning);
            let rest = kept.split_off(top_k.min(kept.len()));
            for choice in rest {
                if kept.iter().all(|k| k.config.tile_m != choice.config.tile_m) {
                    kept.push(choice);
                }
            }
            kept
        })
        .collect()
}

/// The best configuration for a concrete M.
pub fn select_for_m(
    families: &Families<'_>,
    shape: &GemmShape,
    m: u64,
    target: &Target,
) -> Result<TileChoice, IrError> {
    rank(families, shape, m, target)
        .into_iter()
        .next()
        .ok_or_else(|| {
            IrError::Plan(format!(
                "no legal tile configuration for M={m} N={} K={} {} on {}",
                shape.n, shape.k, shape.dtype, target.name
            ))
        })
}

/// One line for `--explain`.
pub fn describe(c: &TileChoice) -> String {
    format!(
        "{} {}: est {:.1} us (compute {:.1}, dram {:.1}, l2 {:.1}; {} blocks/SM, grid {}, {:.2} waves, eff {:.2})",
        c.config.family, c.config.describe_tiles(),
        c.est_us, c.compute_us, c.dram_us, c.l2_us, c.blocks_per_sm, c.grid, c.waves, c.wave_efficiency
    )
}
