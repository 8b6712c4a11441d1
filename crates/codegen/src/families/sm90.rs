//! Family `sm90` (`kernels/sm90_sparse_gemm.cu`): prefill and batched decode on Hopper with
//! `wgmma.mma_async.sp` (sm_90a only). A producer warp moves each K stage with three TMA
//! copies (the X tile with 128-byte swizzle, the weight's values and metadata as 3-D boxes of
//! the shared fragment layout) into an mbarrier ring; two consumer warpgroups issue the sparse
//! wgmmas with A from registers. Kernel parameters: three `CUtensorMap`s encoded at launch
//! from x and the weight, then `bias, y, workspace, M, N, K` (kernels/README.md, "sm90 family").

use sparseflow_core::DType;
use sparseflow_ir::{
    ConfigSpace, Eligibility, FamilyModel, GemmShape, KernelConfig, Resources, Target, TileChoice,
};

use super::{partial_tile_bytes, split_k_workspace_bytes};
use crate::error::CodegenError;
use crate::family::{Family, Source};
use crate::params::{KernelParams, LaunchInputs};
use crate::spec::KernelSpec;
use crate::tensor_map::{encode_2d_sw128, encode_3d_blocks};

pub const SM90: Sm90 = Sm90 {
    async_mainloop: false,
    cluster_n: 1,
    inflight: 1,
    stream_k: false,
};

/// The same family compiled with the template's `SF_ASYNC_MAINLOOP`: the consumer loop ptxas
/// keeps asynchronous (the `sm90` kernels come out with every wgmma serialized, ptxas C7514 /
/// C7520). Registered beside `sm90` as measured-only until it has run on a GPU: only a tuning
/// table that checked it against float64 and timed it faster can select it, so one `sparseflow
/// tune` run measures both loops per case. Once it has won, it becomes `sm90` itself.
pub const SM90_ASYNC: Sm90 = Sm90 {
    async_mainloop: true,
    cluster_n: 1,
    inflight: 1,
    stream_k: false,
};

/// `sm90a` with two stages of wgmmas in flight instead of one (`SF_WGMMA_INFLIGHT` 2: three
/// A/metadata register sets, ring slots released two stages late). Nsight Compute on the H200
/// found sm90a's consumer warps waiting for their previous stage's wgmmas (`WARPGROUP.DEPBAR`,
/// ~29% of stall samples) and on `wgmma.fence` after the A loads (~12%), the tensor pipe busy
/// about 55% of the time: a second stage queued behind the first should keep it fed across that
/// wait. Measured-only, 4 or 5 stages.
pub const SM90_DEEP: Sm90 = Sm90 {
    async_mainloop: true,
    cluster_n: 1,
    inflight: 2,
    stream_k: false,
};

/// `sm90a` in clusters of two CTAs on adjacent feature tiles that multicast the token tile
/// (`SF_CLUSTER_N`): X crosses from L2 once per pair. cuSPARSELt 0.8's sm90 kernel at the same
/// tile runs in clusters of 4 with 46% L2 throughput where `sm90a` needs 63% (Nsight Compute,
/// docs/PERFORMANCE.md). Persistent, no split-K; measured-only until a tuning table times it.
/// Every H100/H200 GPC holds an even number of SMs, so 66 clusters of 2 are co-resident on 132
/// SMs (Nsight Compute on the H200: 66).
pub const SM90_CLUSTER2: Sm90 = Sm90 {
    async_mainloop: true,
    cluster_n: 2,
    inflight: 1,
    stream_k: false,
};

/// `sm90c2` in clusters of four, as cuSPARSELt 0.8 runs its sm90 kernels: X crosses from L2
/// once per four feature tiles. How many clusters of four are co-resident depends on how the
/// GPU's SMs group into GPCs, so the grid here assumes every SM and the runtime shrinks it to
/// the driver's count (`grid_stride`). Measured-only.
pub const SM90_CLUSTER4: Sm90 = Sm90 {
    async_mainloop: true,
    cluster_n: 4,
    inflight: 1,
    stream_k: false,
};

/// `sm90a` with a stream-K schedule (`SF_STREAM_K`): the output tiles' K stages laid end to end
/// and cut into one equal range per SM, so every SM streams the same share of the weight however
/// few the tiles. At M 32-128 the tiles are few: 112 for 14336 features (15% of the H200's SMs
/// idle), 224 for the fused 28672-feature gate/up (a second wave 70% full), where sm90a leaves
/// SMs idle and split-K overshoots to whole extra waves. A tile cut between CTAs is finished by
/// the one holding its first K stages, from the others' fp32 partials (one slot per CTA).
/// Measured-only.
pub const SM90_STREAMK: Sm90 = Sm90 {
    async_mainloop: true,
    cluster_n: 1,
    inflight: 1,
    stream_k: true,
};

#[derive(Debug, Clone, Copy)]
pub struct Sm90 {
    async_mainloop: bool,
    /// CTAs per cluster sharing the X tile (1: no cluster).
    cluster_n: u32,
    /// Stages of wgmmas left in flight while the next is issued (`SF_WGMMA_INFLIGHT`).
    inflight: u32,
    /// Equal K-stage ranges per CTA instead of whole tiles (`SF_STREAM_K`).
    stream_k: bool,
}

impl Sm90 {
    /// The registration's name and summary, one line per variant.
    fn describe(&self) -> (&'static str, &'static str) {
        if self.stream_k {
            return ("sm90sk", "sm90a with a stream-K schedule (SF_STREAM_K): equal K-stage ranges per SM; measured-only: tuning tables select it");
        }
        match (self.async_mainloop, self.cluster_n, self.inflight) {
            (false, _, _) => ("sm90", "wgmma.mma_async.sp + TMA + mbarrier ring, producer warp + 1-2 consumer warpgroups; M > 16 (token tiles up to M's bucket); sm_90a"),
            (true, 1, 2) => ("sm90d2", "sm90a with two stages of wgmmas in flight (SF_WGMMA_INFLIGHT 2); measured-only: tuning tables select it"),
            (true, 1, _) => ("sm90a", "sm90 with the asynchronous consumer loop (SF_ASYNC_MAINLOOP), persistent unless split; measured-only: tuning tables select it"),
            (true, 2, _) => ("sm90c2", "sm90a in 2-CTA clusters multicasting the token tile (SF_CLUSTER_N); persistent; measured-only: tuning tables select it"),
            _ => ("sm90c4", "sm90a in 4-CTA clusters multicasting the token tile (SF_CLUSTER_N); persistent; measured-only: tuning tables select it"),
        }
    }

    /// The template's `SF_PERSISTENT`: the asynchronous kernels without split-K walk the output
    /// tiles grid-stride from at most one CTA per SM.
    fn persistent(&self, cfg: &KernelConfig) -> bool {
        self.async_mainloop && cfg.split_k == 1
    }

    /// CTAs of a launch: one per tile (times split_k), or for the persistent kernels at most
    /// one per SM, in whole clusters of `cluster_n` CTAs that each cover `cluster_n` adjacent
    /// feature tiles; stream-K one per SM unless there are fewer K stages in all.
    fn ctas(&self, cfg: &KernelConfig, m: u64, n: u64, k: u64, sm_count: u64) -> u64 {
        let tiles = n.div_ceil(cfg.tile_n as u64) * m.div_ceil(cfg.tile_m as u64);
        if !self.persistent(cfg) {
            return tiles * cfg.split_k as u64;
        }
        if self.stream_k {
            return (tiles * k_stages(cfg, k)).min(sm_count).max(1);
        }
        let c = self.cluster_n as u64;
        let cluster_tiles =
            n.div_ceil((cfg.tile_n * self.cluster_n) as u64) * m.div_ceil(cfg.tile_m as u64);
        cluster_tiles.min((sm_count / c).max(1)) * c
    }
}

/// Shared memory of the asynchronous kernels' per-warp epilogue: 128 bytes of alignment and
/// 2 KiB (64 tokens x 16 features) per consumer warp — the template's `EPI_WARP_BYTES`.
fn epilogue_staging_bytes(cfg: &KernelConfig) -> u32 {
    128 + (cfg.tile_n / 16) * 2048
}

/// K stages of one output tile: K padded to the 64-wide metadata atom, `tile_k` per stage (the
/// template's `KT`).
fn k_stages(cfg: &KernelConfig, k: u64) -> u64 {
    (k.div_ceil(64) * 64).div_ceil(cfg.tile_k as u64)
}

/// Feature tiles that walk the token tiles together (grouped raster, kept in L2).
const GROUP_N: u32 = 8;

/// Warps of a CTA of `tile_n` features: one producer warpgroup and one consumer warpgroup per
/// 64 features (the template's `THREADS`).
fn warps_for(tile_n: u32) -> u32 {
    4 * (tile_n / 64 + 1)
}

const SPACE: ConfigSpace = ConfigSpace {
    tile_m: &[64, 128, 192, 256],
    // 128 features = two consumer warpgroups (the measured default); 64 = one, twice the feature
    // tiles for shapes with few of them (1024 features). The 64-feature CTA runs only where a
    // tuning table measured it (`measured_only`).
    tile_n: &[64, 128],
    tile_k: &[64, 128],
    warps: &[8, 12],
    // 5 stages fit only the 64-wide K stages of 256 tokens (205 KiB): a deeper ring for the
    // consumers' waits on data (17% of their stall samples at 4 stages, Nsight Compute on the
    // H200 at 14336x4096, M = 8192); measured-only.
    stages: &[3, 4, 5],
    // Few output tiles (M up to a few hundred tokens, or few features: 1024x4096 is 8 feature
    // tiles) fill few SMs: K is then split over 2-8 CTAs per tile, the last reducing its peers'
    // fp32 partials in batches (kernels/README.md). The estimate splits only to fill one wave;
    // `sparseflow tune` measures the splits against the unsplit tiles.
    split_k: &[1, 2, 4, 8],
};

/// Bytes of one ring stage (X tile, weight values, metadata), rounded to the 1 KiB the
/// 128-byte swizzle repeats at — the template's `STAGE_BYTES`.
fn stage_bytes(cfg: &KernelConfig) -> u32 {
    let x = (cfg.tile_k / 64) * cfg.tile_m * 128;
    let a = (cfg.tile_n / 16) * (cfg.tile_k / 32) * 512;
    let e = (cfg.tile_n / 16) * (cfg.tile_k / 64) * 128;
    (x + a + e).next_multiple_of(1024)
}

/// Fraction of the 2:4 tensor-core peak one CTA reaches, measured on the H200
/// (scripts/device/sm90_dev.py; docs/bench/sm90-dev-h200-fp16.json): larger token tiles amortise
/// the per-stage copy and barrier latency. With many waves (M in the thousands) every SM competes
/// for L2 and HBM (14336x4096 and 4096x14336 at M = 2048 and 8192); within one or two waves a CTA
/// runs faster (4096x4096 at M = 128 and 512, 14336x4096 at M = 128 and 512: 0.42-0.56).
fn measured_fraction(cfg: &KernelConfig, waves: f64) -> f64 {
    let few_waves = waves <= 2.0;
    match (cfg.tile_m, cfg.tile_k, few_waves) {
        (256, _, false) => 0.45,
        (256, _, true) => 0.56,
        (192, _, false) => 0.39,
        (192, _, true) => 0.48,
        (128, 128, false) => 0.35,
        (128, 128, true) => 0.50,
        (128, _, false) => 0.33,
        (128, _, true) => 0.45,
        _ => 0.17,
    }
}

impl FamilyModel for Sm90 {
    fn name(&self) -> &'static str {
        self.describe().0
    }

    fn summary(&self) -> &'static str {
        self.describe().1
    }

    fn space(&self) -> &ConfigSpace {
        &SPACE
    }

    fn supports_arch(&self, arch: &str) -> bool {
        arch == "sm_90a"
    }

    fn eligibility(&self, m: u64, shape: &GemmShape, _target: &Target) -> Eligibility {
        // TMA needs 16-byte row strides of X (K % 8 == 0). Up to 16 tokens the decode family
        // is preferred outright; from 17 to 64 the estimates decide, with the token tiles the
        // estimate allows (at most M's bucket): on the H200 the 64-token tile ran gate/up
        // (14336x4096) at M = 32 in 24.3 us where decode took 34.8, while decode kept q/o and
        // k/v (9.5 and 4.8 us against 12.2 and 8.5).
        if !shape.k.is_multiple_of(8) || m <= 16 {
            Eligibility::Unfit
        } else {
            Eligibility::Candidate
        }
    }

    fn check(&self, cfg: &KernelConfig, shape: &GemmShape) -> Result<(), String> {
        if !shape.k.is_multiple_of(8) {
            return Err(format!(
                "K = {} is not a multiple of 8 (TMA row stride)",
                shape.k
            ));
        }
        if cfg.warps != warps_for(cfg.tile_n) {
            return Err(format!(
                "{} features take {} warps (a producer warpgroup and one consumer warpgroup per 64)",
                cfg.tile_n,
                warps_for(cfg.tile_n)
            ));
        }
        if self.inflight > 1 && cfg.stages < 4 {
            return Err(format!(
                "{} stages: two stages of wgmmas in flight release a slot two stages late and need at least 4",
                cfg.stages
            ));
        }
        if self.stream_k && cfg.split_k != 1 {
            return Err("stream-K divides K itself: no split-K".into());
        }
        if self.cluster_n > 1 {
            if cfg.split_k != 1 {
                return Err("clusters run persistent kernels only: no split-K".into());
            }
            if !cfg.tile_m.is_multiple_of(8 * self.cluster_n) {
                return Err(format!(
                    "tile_m {} does not split into {} X slices of whole 8-row swizzle atoms",
                    cfg.tile_m, self.cluster_n
                ));
            }
        }
        // 128 fp32 accumulators plus two register sets of 4 k32 steps exceed the 168
        // registers of a 384-thread block (ptxas spills).
        if cfg.tile_m == 256 && cfg.tile_k > 64 {
            return Err("tile_m 256 needs tile_k 64 (registers)".into());
        }
        Ok(())
    }

    /// The 64-feature CTA and the asynchronous loop have no measurement behind their estimates:
    /// planning without a table never picks them, a tuning table that measured them may.
    fn measured_only(&self, cfg: &KernelConfig) -> bool {
        self.async_mainloop || cfg.tile_n == 64 || cfg.stages > 4
    }

    fn resources(&self, cfg: &KernelConfig, _dtype: DType) -> Resources {
        let threads = 32 * cfg.warps;
        Resources {
            threads,
            // The ring, 1 KiB to align it for the swizzle, its full/empty mbarriers and (the
            // asynchronous kernels) the per-warp epilogue buffers.
            dynamic_smem: cfg.stages * stage_bytes(cfg)
                + 1024
                + 16 * cfg.stages
                + if self.async_mainloop {
                    epilogue_staging_bytes(cfg)
                } else {
                    0
                },
            // Two consumer warpgroups share the register file through setmaxnreg (168 on
            // average); one gets up to ptxas's 255.
            regs_per_thread: (65536 / threads).min(255) & !7,
        }
    }

    fn grid(&self, cfg: &KernelConfig, m: u32, n: u32, k: u32, t: &Target) -> (u32, u32, u32) {
        // 1-D: the template maps block ids to (feature, token) tiles in groups of GROUP_N, a
        // tile's split_k CTAs adjacent; a persistent kernel's CTAs stride over the tiles.
        let ctas = self.ctas(cfg, m as u64, n as u64, k as u64, t.sm_count as u64);
        (u32::try_from(ctas).unwrap_or(u32::MAX), 1, 1)
    }

    /// fp32 hand-off slots: split_k - 1 partial tiles per output tile; stream-K one per CTA
    /// (a CTA hands over at most its first unit).
    fn workspace_bytes(&self, cfg: &KernelConfig, m: u32, n: u32, k: u32, t: &Target) -> usize {
        if self.stream_k {
            let ctas = self.ctas(cfg, m as u64, n as u64, k as u64, t.sm_count as u64);
            return ctas as usize * partial_tile_bytes(cfg);
        }
        split_k_workspace_bytes(cfg, m, n)
    }

    fn estimate(
        &self,
        cfg: &KernelConfig,
        shape: &GemmShape,
        m: u64,
        target: &Target,
    ) -> Option<TileChoice> {
        let res = self.resources(cfg, shape.dtype);
        if res.dynamic_smem > target.max_smem_per_block {
            return None;
        }
        // A token tile larger than M's bucket is partly zero-filled and measured slower than its
        // compute suggests: on the H200 (14336x4096) the 128-token tile took 37.1 us at M = 64
        // and 43.5 at M = 32, against 26.0 at M = 128 and 22-24 us for the 64-token tile. So a
        // tile at most M's bucket — but the smallest, 64, from 32 tokens (at most twice M).
        let tile_m = u64::from(cfg.tile_m);
        if tile_m > 2 * m || tile_m > m.next_power_of_two().max(64) {
            return None;
        }
        let split = cfg.split_k as f64;
        let kp = shape.k.next_multiple_of(64) as f64;
        let kt = k_stages(cfg, shape.k) as f64;
        if split > kt {
            return None; // a split with no K stage
        }
        let tiles = (shape.n.div_ceil(cfg.tile_n as u64) * m.div_ceil(cfg.tile_m as u64)) as f64;
        let ctas = tiles * split;
        let slots = target.sm_count as f64;
        // Split only to fill one wave: beyond it a split adds CTAs, reducer traffic and a
        // workspace of M x N x 4 bytes per extra split (672 MB at M = 4096 on the Llama-3-8B
        // layer set when the estimate was allowed to split there).
        if split > 1.0 && ctas > slots {
            return None;
        }
        // Stream-K spreads the tiles' K stages evenly over its CTAs (one per SM, fewer only when
        // there are fewer K stages in all): no partly-filled last wave.
        let waves = if self.stream_k {
            tiles / slots.min(tiles * kt)
        } else {
            (ctas / slots).ceil()
        };
        // Three stages hide the copy latency less well than four (measured: 3-5% at large M);
        // five only ranks ahead for `sparseflow tune` (measured-only).
        let depth = match cfg.stages {
            0..=3 => 0.95,
            4 => 1.0,
            _ => 1.02,
        };
        // One consumer warpgroup keeps the tensor cores busy less of the time than two (a guess
        // until measured: it only ranks candidates for `sparseflow tune`, see measured_only).
        let warpgroups = if cfg.tile_n == 64 { 0.6 } else { 1.0 };
        let per_sm =
            warpgroups * depth * measured_fraction(cfg, waves) * 2.0 * target.dense_tc_flops
                / slots;
        let cta_s = 2.0 * cfg.tile_m as f64 * cfg.tile_n as f64 * (kp / split) / per_sm;
        // The reducer reads split - 1 fp32 partial tiles at roughly 50 GB/s per SM; a stream-K
        // CTA writes at most one and reads about one.
        let handoffs = if self.stream_k && waves.fract() != 0.0 {
            2.0
        } else {
            split - 1.0
        };
        let reduce_s = handoffs * partial_tile_bytes(cfg) as f64 / 50e9;
        // Launch, pipeline fill and the epilogue of the last wave.
        let fixed_s = 4e-6;
        let compute_us = waves * cta_s * 1e6;
        Some(TileChoice {
            config: *cfg,
            est_us: compute_us + (reduce_s + fixed_s) * 1e6,
            compute_us,
            dram_us: 0.0,
            l2_us: reduce_s * 1e6,
            blocks_per_sm: 1,
            grid: self.ctas(cfg, m, shape.n, shape.k, target.sm_count as u64),
            waves: ctas / slots,
            wave_efficiency: ctas / (waves * slots),
        })
    }
}

/// `sf_wgmma_sp<SEL>(d, a, desc_b, meta, scale_d)`: `wgmma.mma_async.sp` m64n`tile_m`k32 with A
/// from registers — its accumulator operand list has `tile_m / 2` registers, so it is generated.
/// Spliced before the headers, so it names only built-in types and spells the dtype itself.
fn wgmma_sp_fn(tile_m: u32, dtype: DType) -> String {
    let ty = match dtype {
        DType::BF16 => "bf16",
        _ => "f16",
    };
    let nacc = tile_m / 2;
    let d_list = (0..nacc)
        .map(|i| format!("%{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let outs = (0..nacc)
        .map(|i| format!("\"+f\"(d[{i}])"))
        .collect::<Vec<_>>()
        .join(", ");
    let a = nacc;
    format!(
        r#"
template <int SEL>
__device__ __forceinline__ void sf_wgmma_sp(float (&d)[{nacc}], const unsigned (&a)[4], unsigned long long desc_b, unsigned meta, int scale_d) {{
    asm volatile("{{\n.reg .pred p;\nsetp.ne.b32 p, %{s}, 0;\n"
                 "wgmma.mma_async.sp.sync.aligned.m64n{tile_m}k32.f32.{ty}.{ty} "
                 "{{{d_list}}}, {{%{a}, %{a1}, %{a2}, %{a3}}}, %{b}, %{e}, %{sel}, p, 1, 1, 0;\n}}\n"
                 : {outs}
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(meta), "n"(SEL), "r"(scale_d));
}}
#define SF_GROUP_N {GROUP_N}
"#,
        s = a + 7,
        a1 = a + 1,
        a2 = a + 2,
        a3 = a + 3,
        b = a + 4,
        e = a + 5,
        sel = a + 6,
    )
}

impl Family for Sm90 {
    fn template(&self) -> Source {
        Source {
            file: "sm90_sparse_gemm.cu",
            text: include_str!("../../kernels/sm90_sparse_gemm.cu"),
        }
    }

    fn extra_source(&self, spec: &KernelSpec) -> String {
        // The variant's switches, each only where it differs from the template's default.
        let switches = [
            ("SF_ASYNC_MAINLOOP", u32::from(self.async_mainloop), 0),
            ("SF_CLUSTER_N", self.cluster_n, 1),
            ("SF_WGMMA_INFLIGHT", self.inflight, 1),
            ("SF_STREAM_K", u32::from(self.stream_k), 0),
        ];
        let mut out: String = switches
            .iter()
            .filter(|(_, value, default)| value != default)
            .map(|(name, value, _)| format!("#define {name} {value}\n"))
            .collect();
        out.push_str(&wgmma_sp_fn(spec.config.tile_m, spec.dtype));
        out
    }

    fn cluster(&self, _spec: &KernelSpec) -> Option<(u32, u32, u32)> {
        (self.cluster_n > 1).then_some((self.cluster_n, 1, 1))
    }

    fn grid_stride(&self, spec: &KernelSpec) -> bool {
        self.persistent(&spec.config)
    }

    /// `(CUtensorMap x_map, CUtensorMap w_map, CUtensorMap e_map, const T* bias, T* y,
    /// float* workspace, int M, int N, int K)`. The maps are encoded on the host per launch (a few microseconds; a CUDA
    /// graph captures them once).
    fn launch_params(
        &self,
        spec: &KernelSpec,
        i: &LaunchInputs,
        _target: &Target,
    ) -> Result<KernelParams, CodegenError> {
        let cfg = &spec.config;
        let (np, kp) = crate::layout::padded_dims(i.n as usize, i.k as usize);
        let rbs = cfg.tile_n / 16;
        // Each CTA of a cluster loads (and multicasts) 1/cluster_n of the X tile's rows.
        let x_map = encode_2d_sw128(i.x, i.m as u64, i.k as u64, 64, cfg.tile_m / self.cluster_n)?;
        let w_map = encode_3d_blocks(
            i.wvals,
            [256, (kp / 32) as u64, (np / 16) as u64],
            [256, cfg.tile_k / 32, rbs],
        )?;
        let e_map = encode_3d_blocks(
            i.wmeta,
            [64, (kp / 64) as u64, (np / 16) as u64],
            [64, cfg.tile_k / 64, rbs],
        )?;
        let mut p = KernelParams::new();
        p.push_bytes(&x_map, 64)?;
        p.push_bytes(&w_map, 64)?;
        p.push_bytes(&e_map, 64)?;
        p.ptr(i.bias)?.ptr(i.y)?.ptr(i.workspace)?;
        p.int(i.m)?.int(i.n)?.int(i.k)?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Registry;
    use sparseflow_core::EpilogueKind;
    use sparseflow_ir::{targets::target, LayerProblem};

    fn family_for(m: u64, n: u64, k: u64, target_name: &str) -> &'static str {
        let p = LayerProblem {
            m,
            n,
            k,
            dtype: DType::F16,
            epilogue: EpilogueKind::None,
        };
        Registry::builtin()
            .plan(&p, target(target_name).unwrap())
            .unwrap()
            .plan
            .config
            .family
    }

    #[test]
    fn planned_for_prefill_on_hopper_only() {
        // On the H200 the checked-in tuning table decides between the Hopper registrations.
        assert!(family_for(2048, 14336, 4096, "h200").starts_with("sm90"));
        assert_eq!(family_for(8192, 4096, 14336, "sm_90a"), "sm90");
        assert_eq!(family_for(4, 14336, 4096, "h200"), "decode");
        assert_ne!(family_for(2048, 14336, 4096, "sm_80"), "sm90");
        // K % 8 != 0: TMA cannot stride X, another family serves it.
        assert_ne!(family_for(2048, 4096, 4100, "h200"), "sm90");
    }

    #[test]
    fn shared_memory_matches_the_template_formula() {
        // 256 tokens x 64 K: X 32 KiB + values 8 KiB + metadata 1 KiB per stage.
        let cfg = KernelConfig {
            family: "sm90",
            tile_m: 256,
            tile_n: 128,
            tile_k: 64,
            warps: 12,
            stages: 4,
            split_k: 1,
        };
        assert_eq!(stage_bytes(&cfg), 41 * 1024);
        assert_eq!(
            SM90.resources(&cfg, DType::F16).dynamic_smem,
            4 * 41 * 1024 + 1024 + 64
        );
    }

    /// 4096 x 4096, fp16, M left open: a shape every configuration can run.
    fn shape_4096() -> GemmShape {
        GemmShape {
            m: None,
            n: 4096,
            k: 4096,
            dtype: DType::F16,
        }
    }

    fn cfg(family: &'static str, tile_m: u32, split_k: u32) -> KernelConfig {
        KernelConfig {
            family,
            tile_m,
            tile_n: 128,
            tile_k: 64,
            warps: 12,
            stages: 4,
            split_k,
        }
    }

    #[test]
    fn one_tile_kernels_launch_a_cta_per_tile_and_split() {
        let h200 = target("h200").unwrap();
        // 14336 features = 112 tiles of 128; 8192 tokens = 32 tiles of 256.
        assert_eq!(
            SM90.grid(&cfg("sm90", 256, 1), 8192, 14336, 4096, h200),
            (112 * 32, 1, 1)
        );
        // Split-K kernels are never persistent, sm90a's included.
        assert_eq!(
            SM90_ASYNC.grid(&cfg("sm90a", 128, 4), 256, 1024, 4096, h200),
            (8 * 2 * 4, 1, 1)
        );
    }

    #[test]
    fn persistent_kernels_launch_at_most_one_cta_per_sm() {
        let h200 = target("h200").unwrap();
        assert_eq!(
            SM90_ASYNC.grid(&cfg("sm90a", 256, 1), 8192, 14336, 4096, h200),
            (h200.sm_count, 1, 1)
        );
        // Fewer tiles than SMs: one CTA per tile.
        assert_eq!(
            SM90_ASYNC.grid(&cfg("sm90a", 256, 1), 256, 4096, 4096, h200),
            (32, 1, 1)
        );
        assert_eq!(SM90_ASYNC.cluster(&spec("sm90a")), None);
    }

    #[test]
    fn clusters_launch_whole_pairs_over_pairs_of_feature_tiles() {
        let h200 = target("h200").unwrap();
        let c = cfg("sm90c2", 256, 1);
        // Many pairs: 66 clusters of 2 on the H200's 132 SMs.
        assert_eq!(SM90_CLUSTER2.grid(&c, 8192, 14336, 4096, h200), (132, 1, 1));
        // 4100 features = 33 tiles = 17 pairs (the last half past N), one token tile.
        assert_eq!(SM90_CLUSTER2.grid(&c, 200, 4100, 4104, h200), (34, 1, 1));
        assert_eq!(SM90_CLUSTER2.cluster(&spec("sm90c2")), Some((2, 1, 1)));
        let shape = shape_4096();
        assert!(SM90_CLUSTER2.check(&c, &shape).is_ok());
        assert!(SM90_CLUSTER2
            .check(&cfg("sm90c2", 256, 2), &shape)
            .unwrap_err()
            .contains("split-K"));
        assert!(SM90_CLUSTER2.measured_only(&c));
    }

    #[test]
    fn two_stages_in_flight_need_a_deeper_ring() {
        let shape = shape_4096();
        let mut c = cfg("sm90d2", 256, 1);
        assert!(SM90_DEEP.check(&c, &shape).is_ok());
        c.stages = 3;
        assert!(SM90_DEEP
            .check(&c, &shape)
            .unwrap_err()
            .contains("at least 4"));
        // sm90a itself keeps one stage in flight and takes 3 stages.
        assert!(SM90_ASYNC.check(&cfg("sm90a", 256, 1), &shape).is_ok());
        assert_eq!(switch(&SM90_DEEP, "SF_WGMMA_INFLIGHT"), Some("2".into()));
        assert_eq!(switch(&SM90_ASYNC, "SF_WGMMA_INFLIGHT"), None);
        assert!(SM90_DEEP.measured_only(&c));
    }

    #[test]
    fn persistent_kernels_let_the_runtime_shrink_their_grid() {
        let h200 = target("h200").unwrap();
        // Clusters of four: 33 on 132 SMs before the runtime asks the driver how many fit.
        let c = cfg("sm90c4", 256, 1);
        assert_eq!(SM90_CLUSTER4.grid(&c, 8192, 14336, 4096, h200), (132, 1, 1));
        assert_eq!(SM90_CLUSTER4.cluster(&spec("sm90c4")), Some((4, 1, 1)));
        assert!(SM90_CLUSTER4
            .check(&cfg("sm90c4", 192, 1), &shape_4096())
            .is_ok());
        // Grid-stride: the persistent kernels; one CTA per tile (and split) otherwise.
        let geometry = |family: &str, split_k| {
            let mut s = spec(family);
            s.config.split_k = split_k;
            crate::Registry::builtin()
                .generate(&s)
                .unwrap()
                .geometry(8192, 14336, 4096, h200)
        };
        assert!(geometry("sm90c4", 1).grid_stride);
        assert!(geometry("sm90a", 1).grid_stride);
        assert!(!geometry("sm90a", 2).grid_stride);
        assert!(!geometry("sm90", 1).grid_stride);
    }

    #[test]
    fn stream_k_launches_one_cta_per_sm_with_a_slot_each() {
        let h200 = target("h200").unwrap();
        let mut c = cfg("sm90sk", 64, 1);
        c.tile_k = 128;
        // M = 64 on 14336 features: 112 tiles of 32 K stages, spread over all 132 SMs.
        assert_eq!(SM90_STREAMK.grid(&c, 64, 14336, 4096, h200), (132, 1, 1));
        assert_eq!(
            SM90_STREAMK.workspace_bytes(&c, 64, 14336, 4096, h200),
            132 * 64 * 128 * 4
        );
        // Fewer K stages than SMs in all: one CTA per stage.
        assert_eq!(SM90_STREAMK.grid(&c, 64, 128, 256, h200), (2, 1, 1));
        let shape = shape_4096();
        assert!(SM90_STREAMK.check(&c, &shape).is_ok());
        c.split_k = 2;
        assert!(SM90_STREAMK
            .check(&c, &shape)
            .unwrap_err()
            .contains("no split-K"));
        assert_eq!(switch(&SM90_STREAMK, "SF_STREAM_K"), Some("1".into()));
        assert_eq!(switch(&SM90_ASYNC, "SF_STREAM_K"), None);
        assert!(SM90_STREAMK.measured_only(&c));
        // The other persistent kernels need no workspace.
        assert_eq!(
            SM90_ASYNC.workspace_bytes(&cfg("sm90a", 64, 1), 64, 14336, 4096, h200),
            0
        );
    }

    /// The template's stream-K schedule (`sf_sched_next`, `sf_sk_start`) replayed on the host:
    /// CTA c takes K-stage iterations [c·I/P, (c+1)·I/P). The hand-off protocol relies on every
    /// CTA handing over at most one partial (its first unit, when it starts inside a tile) and on
    /// each tile's finisher — the unit holding its first stages — finding exactly those partials
    /// in the CTAs after it whose ranges start before the tile's end and are not empty (a grid
    /// above tiles x KT: the host never plans one, the kernel still finishes).
    #[test]
    fn stream_k_units_cover_every_stage_once_and_hand_off_at_most_one_partial() {
        for (tiles, kt, ctas) in [
            (112u64, 32u64, 132u64),
            (224, 32, 132),
            (5, 7, 132),
            (1, 64, 3),
            (300, 1, 132),
            (17, 9, 16),
            (3, 1, 5),
        ] {
            let iters = tiles * kt;
            let p = ctas;
            let start = |c: u64| iters * c / p;
            let mut covered = vec![0u32; iters as usize];
            let mut partials = vec![None; p as usize]; // tile each CTA hands over
            let mut finishers = Vec::new(); // (cta, tile) of units with kb == 0 and ke < kt
            for c in 0..p {
                let (mut pos, end) = (start(c), start(c + 1));
                let mut first = true;
                while pos < end {
                    let tile = pos / kt;
                    let (kb, ke) = (pos - tile * kt, kt.min(end - tile * kt));
                    for it in tile * kt + kb..tile * kt + ke {
                        covered[it as usize] += 1;
                    }
                    if kb > 0 {
                        assert!(first, "only a range's first unit starts inside a tile");
                        assert!(partials[c as usize].replace(tile).is_none());
                    } else if ke < kt {
                        finishers.push((c, tile));
                    }
                    first = false;
                    pos = tile * kt + ke;
                }
            }
            assert!(covered.iter().all(|&n| n == 1), "{tiles}x{kt} on {p}");
            for (c, tile) in finishers {
                let peers: Vec<u64> = (c + 1..p)
                    .take_while(|&q| start(q) < (tile + 1) * kt)
                    .filter(|&q| start(q + 1) > start(q))
                    .collect();
                assert!(!peers.is_empty());
                assert!(peers.iter().all(|&q| partials[q as usize] == Some(tile)));
                for q in peers {
                    partials[q as usize] = None;
                }
            }
            assert!(
                partials.iter().all(Option::is_none),
                "every partial is read"
            );
        }
    }

    /// The value `variant` defines for the template switch `name` (None: the template default).
    fn switch(variant: &Sm90, name: &str) -> Option<String> {
        let define = format!("#define {name} ");
        variant
            .extra_source(&spec(variant.name()))
            .lines()
            .find_map(|l| l.strip_prefix(&define).map(str::to_owned))
    }

    fn spec(family: &str) -> KernelSpec {
        crate::Registry::builtin()
            .enumerate(
                family,
                DType::F16,
                sparseflow_core::EpilogueKind::None,
                "sm_90a",
            )
            .unwrap()
            .remove(0)
    }
}
