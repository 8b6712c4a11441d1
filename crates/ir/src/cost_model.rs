//! Analytic time estimate of a tiled, shared-memory-pipelined kernel (the sm80 family's
//! model; a family picks it in its `FamilyModel::estimate`). Only the
//! ranking matters, so the model keeps the first-order effects that decide tiles
//! on sparse tensor cores:
//! * occupancy: blocks per SM limited by shared memory, threads and registers;
//! * wave quantization: the last wave of blocks leaves SMs idle, and each wave
//!   pays a pipeline fill;
//! * bytes moved: W once (plus L2-missing re-reads per M tile), X and Y once, split-K adds
//!   fp32 partial sums; weight streaming needs enough bytes in flight per SM
//!   (Little's law) and every SM busy to reach DRAM bandwidth;
//! * arithmetic intensity: small tiles re-read operands through L2 more often.
//!
//! All arithmetic is in f64 so absurd shapes cannot overflow.

use crate::family::{Resources, TileChoice};
use crate::kernel_config::{GemmShape, KernelConfig};
use crate::targets::Target;

/// DRAM latency the pipeline must cover (ns); sets the bytes needed in flight.
const DRAM_LATENCY_NS: f64 = 700.0;
/// L2 → SM bandwidth as a multiple of DRAM bandwidth (Ampere/Hopper are ~3–5×).
const L2_BW_OVER_DRAM: f64 = 4.0;
/// Warps per SM needed to hide MMA and shared-memory latency.
const WARPS_TO_HIDE_LATENCY: f64 = 8.0;
/// Fraction of W re-reads (one per extra M tile) that miss L2 when W is large.
const L2_MISS_ON_REREAD: f64 = 0.25;
/// Share of the non-dominant terms (compute / DRAM / L2) that does not overlap.
const OVERLAP_LEAK: f64 = 0.1;
/// Pipeline fill and epilogue of each wave of blocks (µs): why more, smaller
/// blocks (huge split-K) stop paying off once the SMs are evenly loaded.
const WAVE_RAMP_US: f64 = 0.5;
/// Fixed cost of a launch, and of the extra split-K reduction step (µs).
const LAUNCH_US: f64 = 3.0;
const SPLIT_K_REDUCE_US: f64 = 1.0;
/// Registers per thread beyond the fp32 accumulators (fragments, addresses, loop state): the
/// tiled model's register budget is `tile_m·tile_n / threads + REG_OVERHEAD`.
pub const REG_OVERHEAD: u32 = 48;

/// Estimates `cfg` (whose block uses `res`) for a concrete `m`; `None` when it cannot run
/// (spills, no block fits an SM). `measured_slowdown` scales the result by how far the
/// family's template measured below this model (1.0 = as modelled). Family/shape legality is
/// `family::check`'s job.
pub fn estimate_tiled(
    cfg: &KernelConfig,
    res: Resources,
    shape: &GemmShape,
    m: u64,
    target: &Target,
    measured_slowdown: f64,
) -> Option<TileChoice> {
    let el = shape.dtype.size_bytes() as f64;
    let (m, n, k) = (m.max(1) as f64, shape.n as f64, shape.k as f64);
    let (tm, tn, tk) = (cfg.tile_m as f64, cfg.tile_n as f64, cfg.tile_k as f64);
    let threads = res.threads as f64;

    let regs = res.regs_per_thread as f64;
    if regs > target.max_regs_per_thread as f64 {
        return None;
    }
    let smem = res.dynamic_smem.max(1) as f64;
    let by_smem = (target.smem_per_sm as f64 / smem).floor();
    let by_threads = (target.max_threads_per_sm as f64 / threads).floor();
    let by_regs = (target.regs_per_sm as f64 / (regs * threads)).floor();
    let blocks = by_smem
        .min(by_threads)
        .min(by_regs)
        .min(target.max_blocks_per_sm as f64);
    if blocks < 1.0 {
        return None;
    }

    let m_tiles = (m / tm).ceil();
    let n_tiles = (n / tn).ceil();
    let k_tiles = (k / tk).ceil();
    let grid = m_tiles * n_tiles * cfg.split_k as f64;
    let slots = target.sm_count as f64 * blocks;
    let waves = grid / slots;
    let wave_efficiency = grid / (waves.ceil() * slots);

    // Compute: padded tiles still execute; 2:4 sparse MMA runs at twice dense rate.
    let flops = 2.0 * (m_tiles * tm) * (n_tiles * tn) * (k_tiles * tk);
    let stage_factor = match cfg.stages {
        0..=2 => 0.8,
        3 => 0.92,
        _ => 1.0,
    };
    let hide = (blocks * cfg.warps as f64 / WARPS_TO_HIDE_LATENCY).min(1.0) * stage_factor;
    let compute_s = flops / (2.0 * target.dense_tc_flops * hide * wave_efficiency);

    // DRAM: W once, plus re-reads by later M tiles that miss L2 (tile
    // rasterization keeps ~3/4 of them in L2 once W outgrows it); X and Y once;
    // split-K partials written and read back in fp32.
    let w_bytes = n * k / 2.0 * el + n * k / 8.0;
    let w_rereads = if w_bytes > target.l2_bytes as f64 / 2.0 {
        (m_tiles - 1.0) * w_bytes * L2_MISS_ON_REREAD
    } else {
        0.0
    };
    let x_bytes = m * k * el;
    let y_bytes = m * n * el;
    let partials = if cfg.split_k > 1 {
        m * n * 4.0 * cfg.split_k as f64 * 2.0
    } else {
        0.0
    };
    // Split-K partials stay in L2 while they fit (the reduction reads them right back).
    let partials_in_l2 = partials <= target.l2_bytes as f64 / 2.0;
    let dram_partials = if partials_in_l2 { 0.0 } else { partials };
    let dram_bytes = w_bytes + w_rereads + x_bytes + y_bytes + dram_partials;
    let stage_bytes = smem / cfg.stages.max(1) as f64;
    let in_flight = blocks * (cfg.stages.max(2) - 1) as f64 * stage_bytes;
    let needed = target.dram_bw * DRAM_LATENCY_NS * 1e-9 / target.sm_count as f64;
    // Streaming needs every SM issuing loads (idle SMs leave bandwidth unused),
    // and its time is set by the most loaded SM (blocks spread evenly over SMs).
    let sms = target.sm_count as f64;
    let busy_sms = (grid / sms).min(1.0);
    let balance = grid / ((grid / sms).ceil() * sms);
    let mem_eff = (in_flight / needed).min(1.0) * balance * busy_sms;
    let dram_s = dram_bytes / (target.dram_bw * mem_eff);

    // L2: every block streams its X and W slices for its K range.
    let per_tile = (tm * el + tn / 2.0 * el + tn / 8.0) * k;
    let l2_partials = if partials_in_l2 { partials } else { 0.0 };
    let l2_bytes = m_tiles * n_tiles * per_tile + l2_partials;
    let l2_s = l2_bytes / (target.dram_bw * L2_BW_OVER_DRAM * busy_sms);

    // Overlap is imperfect: the bound dominates, the other terms still leak in.
    let bound = compute_s.max(dram_s).max(l2_s);
    let rest = compute_s + dram_s + l2_s - bound;
    let mut est_us = (bound + OVERLAP_LEAK * rest) * 1e6 + LAUNCH_US + WAVE_RAMP_US * waves.ceil();
    if cfg.split_k > 1 {
        est_us += SPLIT_K_REDUCE_US;
    }
    est_us *= measured_slowdown;
    Some(TileChoice {
        config: *cfg,
        est_us,
        compute_us: compute_s * 1e6,
        dram_us: dram_s * 1e6,
        l2_us: l2_s * 1e6,
        blocks_per_sm: blocks as u32,
        grid: grid as u64,
        waves,
        wave_efficiency,
    })
}
