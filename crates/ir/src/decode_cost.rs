//! Time estimate of a weight-streaming split-K kernel (the `decode` family's model, chosen in
//! its `FamilyModel::estimate`; small M, M > 16 runs as grid.z token tiles): a
//! weight-streaming kernel whose time is
//! `launch + fill + W bytes / (DRAM bandwidth × efficiency) + split-K reduction`.
//!
//! The generic model of `cost_model` sizes in-flight bytes from shared-memory stages; the decode
//! kernel instead keeps `STAGES` 64-wide K pairs of weight loads in flight in a per-warp register
//! ring (crates/codegen/kernels/README.md), so DRAM efficiency is set by how many such loads the
//! whole grid keeps in flight per SM. The constants are calibrated on the H100 decode sweep of
//! 2026-11-25 (kernels/README.md "Measured"; `tests/decode_calibration.rs` keeps the choice
//! within the measured best configurations of the current template):
//! * the fixed part (launch, pipeline fill, tail) is ≈2.5 µs at M=1;
//! * DRAM saturates at ≈59 KB of weight loads in flight per SM (3 TB/s × ~2.6 µs loaded latency);
//! * activations are re-read from L2 by every CTA column (`tile_m` rows per K pair), which
//!   mostly overlaps the weight stream but leaks into it (why tiny tiles lose at M=16);
//! * a register ring beyond ~96 words per lane no longer keeps all its loads in flight (ptxas
//!   serialises part of it), which is why stages 3 with 64-row tiles loses;
//! * latency hiding needs warps: the weight ring and accumulators cost 54–186 registers per
//!   thread (X is staged through shared memory, not registers), and grids that leave fewer
//!   than ~12 warps per SM run a few percent slower even with the same bytes in flight (why
//!   64-row tiles lose to 32);
//! * a split-K hand-off (peers store partials to L2 and exit, the tile's last split polls and
//!   reduces them) costs ≈0.4 µs on the critical path, and more when each warp gets fewer than
//!   two K pairs (the pipeline never fills). The choice does not move for 0.1-0.9 µs; what the
//!   model under-rates since this protocol is the gain of more, smaller CTAs (tile_n 16, split
//!   8-16 measure 1-4% faster than its picks; tests/decode_calibration.rs bounds the loss).

use crate::family::TileChoice;
use crate::kernel_config::{GemmShape, KernelConfig};
use crate::targets::Target;

const FIXED_US: f64 = 2.5;
const LOADED_LATENCY_S: f64 = 2.6e-6;
const SPLIT_BASE_US: f64 = 0.4;
const SPLIT_PER_SLICE_US: f64 = 0.05;
/// Per missing K pair per warp below two: the ring is never full.
const SHORT_SLICE_US: f64 = 1.0;
/// Bytes of one 64-wide K pair per 16 weight rows: 2 × 512 B values + 128 B metadata.
const PAIR_BYTES_PER_16_ROWS: f64 = 1152.0;
/// K columns one warp consumes per ring slot.
const PAIR_K: f64 = 64.0;
/// Ring words per lane that still issue all their loads back to back.
const RING_WORDS_IN_FLIGHT: f64 = 96.0;
/// Registers per thread besides the ring and the accumulators (addresses, loop state), fitted
/// to ptxas' counts (146 for tile 16x64 stages 2, 90 for 16x16 stages 3, 54-60 for 8x16 stages 2).
const BASE_REGS: f64 = 45.0;
/// Warps per SM below which the stream loses latency hiding, and the loss at zero warps.
const WARPS_TO_HIDE: f64 = 12.0;
const FEW_WARPS_PENALTY: f64 = 0.1;
/// L2 → SM bandwidth as a multiple of DRAM bandwidth, and the share of L2 time not hidden
/// behind the DRAM stream.
const L2_BW_OVER_DRAM: f64 = 4.0;
const L2_LEAK: f64 = 0.07;
/// Share of time lost to the busiest SM holding one CTA more than the average.
const IMBALANCE_WEIGHT: f64 = 0.1;

/// Register ring words per lane: the A fragments and metadata of `stages` K pairs (X goes
/// through a shared-memory ring; kernels/README.md).
fn ring_words(cfg: &KernelConfig) -> f64 {
    cfg.stages as f64 * (cfg.tile_n as f64 / 16.0 * 9.0)
}

/// Registers per thread of the streaming kernel: base + ring + fp32 accumulators.
pub fn streaming_regs(cfg: &KernelConfig) -> u32 {
    let (tm, tn) = (cfg.tile_m as f64, cfg.tile_n as f64);
    (BASE_REGS + ring_words(cfg) + tn / 16.0 * (tm / 8.0) * 4.0).ceil() as u32
}

/// Estimates a weight-streaming configuration for a concrete `m` (grid = `grid` blocks,
/// `regs_per_thread` from [`streaming_regs`]).
pub fn estimate_streaming(
    cfg: &KernelConfig,
    regs_per_thread: u32,
    shape: &GemmShape,
    m: u64,
    target: &Target,
) -> TileChoice {
    let el = shape.dtype.size_bytes() as f64;
    let (m, n, k) = (m.max(1) as f64, shape.n as f64, shape.k as f64);
    let (tm, tn) = (cfg.tile_m as f64, cfg.tile_n as f64);
    let (warps, stages, split) = (cfg.warps as f64, cfg.stages as f64, cfg.split_k as f64);
    let sms = target.sm_count as f64;

    let grid = (n / tn).ceil() * split * (m / tm).ceil();
    // (m / tm).ceil() token tiles run as grid.z.
    let per_sm = grid / sms;
    let ring_words = ring_words(cfg);
    let ring_issue = (RING_WORDS_IN_FLIGHT / ring_words).min(1.0);
    let in_flight = per_sm * warps * stages * (tn / 16.0) * PAIR_BYTES_PER_16_ROWS * ring_issue;
    let needed = target.dram_bw * LOADED_LATENCY_S / sms;
    // An SM without a CTA streams nothing: per-SM load bandwidth is capped, so idle SMs are lost.
    let efficiency = (in_flight / needed).min(1.0) * per_sm.min(1.0);
    let balance = per_sm / per_sm.ceil();
    let imbalance = 1.0 + IMBALANCE_WEIGHT * (1.0 - balance);

    // Each token tile (grid.z) streams the whole weight; later ones hit L2 while W fits.
    let token_tiles = (m / tm).ceil();
    let w_bytes = n * k / 2.0 * el + n * k / 8.0;
    let w_dram = if w_bytes <= target.l2_bytes as f64 / 2.0 {
        w_bytes
    } else {
        w_bytes * token_tiles
    };
    let io_bytes = m * k * el + m * n * el;
    // Resident CTAs per SM from the register estimate; warps actually on an SM.
    let regs = regs_per_thread as f64;
    let resident = (target.regs_per_sm as f64 / (regs * warps * 32.0))
        .floor()
        .clamp(1.0, target.max_blocks_per_sm as f64);
    let warps_per_sm = per_sm.min(resident) * warps;
    let few_warps = 1.0 + FEW_WARPS_PENALTY * (1.0 - warps_per_sm / WARPS_TO_HIDE).max(0.0);
    let dram_us = (w_dram + io_bytes) / (target.dram_bw * efficiency) * 1e6 * imbalance * few_warps;

    // Every CTA streams its weight slice and re-reads the activations of its K slice.
    let x_rereads = (n / tn).ceil() * token_tiles * tm * k * el;
    let l2_us = (w_bytes * token_tiles + x_rereads) / (target.dram_bw * L2_BW_OVER_DRAM) * 1e6;

    let pairs_per_warp = k / split / (PAIR_K * warps);
    let split_us = if cfg.split_k > 1 {
        SPLIT_BASE_US
            + SPLIT_PER_SLICE_US * split
            + SHORT_SLICE_US * (2.0 - pairs_per_warp).max(0.0)
    } else {
        0.0
    };
    TileChoice {
        config: *cfg,
        est_us: FIXED_US + dram_us + L2_LEAK * l2_us + split_us,
        compute_us: 0.0,
        dram_us,
        l2_us,
        blocks_per_sm: per_sm.ceil() as u32,
        grid: grid as u64,
        waves: per_sm,
        wave_efficiency: balance,
    }
}
