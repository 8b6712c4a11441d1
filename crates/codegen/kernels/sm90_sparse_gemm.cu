// Family "sm90": prefill and batched decode on Hopper (sm_90a) with wgmma.mma_async.sp.
//
// Y[M,N] = X[M,K]·Wᵀ with W the sparse A operand (out-features on wgmma's 64 rows) and X the
// dense B operand (tokens on wgmma's N side). One CTA computes TILE_N features × TILE_M tokens.
//  * Warp specialization: warpgroup 0 is the producer (one warp issues every copy), warpgroups
//    1..CWG the consumers, each owning 64 features (4 warps × one 16-row block each).
//  * Each stage of the STAGES-deep ring holds one TILE_K-wide K slice: the X tile loaded by TMA
//    (128-byte swizzle, the canonical K-major wgmma B layout; tokens past M and K past the end
//    are zero-filled by TMA), and the weight's values and metadata as bulk copies — the weight is
//    stored in the fragment layout every family reads (kernels/README.md), so one 16-row block's
//    K slice is contiguous and needs no swizzle.
//  * The sparse A operand comes from registers: a warp's four A registers and its metadata
//    register for one k32 step are exactly the mma.sp.m16n8k32 ones, one 16-byte and one 4-byte
//    conflict-free shared-memory load per lane.
//  * Full/empty mbarriers per stage: the producer waits for `empty`, arms `full` with the byte
//    count and issues the copies; consumers wait for `full`, issue the stage's wgmmas, wait for
//    them and arrive on `empty` (CUTLASS's sparse mainloop also retires every wgmma of a k-tile
//    before releasing it: whether a metadata register may change under an in-flight wgmma is
//    not specified).
//  * Epilogue: accumulators → SF_EPILOGUE in fp32 → a [token][feature] tile in shared memory
//    (reusing the ring) → 16-byte stores of Y, predicated on M and N.
//  * SF_ASYNC_MAINLOOP kernels (family sm90a) are persistent when SPLIT_K is 1: the grid is at
//    most one CTA per SM and each CTA walks the output tiles grid-stride, its producer loading
//    the next tile's stages while the consumers finish the last one. Their epilogue is per
//    warp — stmatrix.trans into a 2 KiB staging buffer of its own, then 16-byte stores — so
//    it needs neither the ring nor a CTA barrier.
//  * SF_WGMMA_INFLIGHT 2 (family sm90d2): two stages of wgmmas stay in flight while the next is
//    issued instead of one — three A/metadata register sets, slots released two stages late.
//  * SF_STREAM_K 1 (family sm90sk, persistent only): the tiles' K stages laid end to end and cut
//    into one equal range per CTA, so a launch with fewer tiles than SMs, or a last wave only
//    partly full, still keeps every SM on the weight stream. A tile cut between CTAs is finished
//    by the CTA holding its first K stages; the others hand it fp32 partials (split-K's slots).
//  * SF_CLUSTER_N 2 or 4 (family sm90c2 / sm90c4, persistent only): clusters of that many CTAs
//    on adjacent feature tiles of one token tile. Each CTA loads 1/SF_CLUSTER_N of the X tile
//    and multicasts it to the whole cluster, so X — 32 of the 41 KiB a 256-token stage loads —
//    crosses from L2 once per cluster instead of once per CTA (what cuSPARSELt's sm90 kernels
//    do, with clusters of 4). A CTA overwrites its peers' ring slots, so a slot is free only
//    when every consumer warp of the cluster has released it: consumers arrive on the empty
//    barrier of every CTA of the cluster, and the CTAs leave together (a cluster barrier).
//
// Spliced by crates/codegen: SF_KERNEL_NAME, SF_DTYPE_*, TILE_M, TILE_N, TILE_K, STAGES,
// SPLIT_K, SF_USES_BIAS, SF_EPILOGUE(acc, bias), and sf_wgmma_sp<SEL>() for wgmma N = TILE_M
// (its operand list depends on TILE_M).

#define CWG (TILE_N / 64)              // consumer warpgroups
#define THREADS (128 * (CWG + 1))
#define KSTEPS (TILE_K / 32)           // wgmma k32 steps per stage
#define KPS (TILE_K / 64)              // 64-wide K pairs per stage (one 128-byte X row each)
#define RBS (TILE_N / 16)              // 16-row weight blocks per CTA
#define NACC (TILE_M / 2)              // fp32 accumulators per thread (m64 x TILE_M / 128 threads)
#define X_HALF_BYTES (TILE_M * 128)    // one K pair of X: TILE_M rows x 64 elements
#define X_BYTES (KPS * X_HALF_BYTES)
#define A_BYTES (RBS * KSTEPS * SF_VAL_BLOCK_BYTES)
#define E_BYTES (RBS * KPS * SF_META_BLOCK_BYTES)
#define STAGE_BYTES ((X_BYTES + A_BYTES + E_BYTES + 1023) / 1024 * 1024)
#define Y_STRIDE (TILE_N + 8)          // shared Y tile row, padded against bank conflicts

static_assert(TILE_N == 64 || TILE_N == 128, "one or two consumer warpgroups of 64 features");
static_assert(128 % TILE_N == 0, "upload pads N to 128; TILE_N must divide it");
static_assert(TILE_M % 8 == 0 && TILE_M >= 8 && TILE_M <= 256, "wgmma N is 8..256 in steps of 8");
static_assert(TILE_K == 64 || TILE_K == 128, "a stage is one or two 64-wide K pairs");
#ifndef SF_WGMMA_INFLIGHT
#define SF_WGMMA_INFLIGHT 1  // stages of wgmmas left in flight while the next is issued (0, 1 or 2)
#endif
// SF_ASYNC_MAINLOOP 1: the consumer loop shaped so that ptxas keeps the wgmmas asynchronous.
// With 0 (the default until it has run on a GPU) ptxas serializes every wgmma of the TILE_K 64
// kernels (C7514: each HGMMA followed by WARPGROUP.DEPBAR.LE 0 in the SASS) and of the one-
// consumer-warpgroup kernels (C7520); the TILE_K 128 kernels keep one stage in flight. 1 pairs
// the stages without a conditional inside the loop, keeps the K-tail test a run-time one for
// every TILE_K, and gives one consumer warpgroup setmaxnreg like two; with it no configuration
// comes out serialized (crates/codegen/tests/compile_all.rs checks every one). SF_HANG_GUARD's
// poll counter costs the registers that 256 x 128 tiles lack (C7512), so time without it.
#ifndef SF_ASYNC_MAINLOOP
#define SF_ASYNC_MAINLOOP 0
#endif
// Two stages in flight (family sm90d2): a stage's A/metadata registers are reloaded three stages
// later, so the loop rotates three register sets, and a ring slot is released two stages after
// its wgmmas were issued — the ring needs the depth for it.
static_assert(SF_WGMMA_INFLIGHT <= 1 || (SF_ASYNC_MAINLOOP && STAGES >= 4),
              "two stages in flight: the asynchronous loop and at least 4 stages");
static_assert(SPLIT_K >= 1, "SPLIT_K counts the CTAs of one output tile");
#define SF_PERSISTENT (SF_ASYNC_MAINLOOP && SPLIT_K == 1)
#ifndef SF_STREAM_K
#define SF_STREAM_K 0
#endif
#ifndef SF_CLUSTER_N
#define SF_CLUSTER_N 1
#endif
// SF_A_SMEM 1 (development, scripts/device/sm90_dev.py): the sparse A operand straight from
// shared memory through a descriptor (wgmma.sp "SS", what CUTLASS's sm90 sparse mainloop does)
// instead of registers. The weight values must then be row-major compressed ([N][K/2], rows
// padded to 16 bytes) and arrive by a 2-D TMA copy in the canonical K-major swizzled layout —
// 128-byte swizzle for TILE_K 128 (a 64-element row), 64-byte for TILE_K 64 — not in the
// fragment layout; the metadata stays as it is. No A loads and no A registers: the consumer's
// only shared-memory loads are the metadata registers. Needs sf_wgmma_sp_ss<SEL>().
#ifndef SF_A_SMEM
#define SF_A_SMEM 0
#endif
static_assert(SF_CLUSTER_N == 1 || SF_PERSISTENT, "clusters only in the persistent kernels");
static_assert(!SF_STREAM_K || (SF_PERSISTENT && SF_CLUSTER_N == 1), "stream-K: persistent, no clusters");
static_assert(SF_CLUSTER_N == 1 || SF_CLUSTER_N == 2 || SF_CLUSTER_N == 4, "clusters of 1, 2 or 4 CTAs");
static_assert(TILE_M % (8 * SF_CLUSTER_N) == 0, "each CTA's X slice is whole 8-row swizzle atoms");
#define X_SLICE_ROWS (TILE_M / SF_CLUSTER_N)  // the X tile rows one CTA loads and multicasts
// The per-warp epilogue stages 64 tokens x 16 features (2 KiB) per consumer warp after the
// barriers (crates/codegen/src/families/sm90.rs sizes it: resources()).
#define EPI_TOKENS 64
#define EPI_WARP_BYTES (EPI_TOKENS * 32)
static_assert(!SF_ASYNC_MAINLOOP || TILE_M % EPI_TOKENS == 0, "the per-warp epilogue takes 64 tokens at a time");
static_assert(TILE_M * Y_STRIDE * 2 <= STAGES * STAGE_BYTES, "the Y tile reuses the ring");
static_assert(!SF_A_SMEM || A_BYTES == TILE_N * TILE_K, "SS: the A tile is TILE_N rows of TILE_K bytes");

// The 128-byte CUtensorMap (NVRTC has no cuda.h), passed by value as a __grid_constant__.
struct __align__(64) sf_tensor_map {
    unsigned long long opaque[16];
};

__device__ __forceinline__ void sf_mbar_init(u32 bar, u32 count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void sf_mbar_expect_tx(u32 bar, u32 bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void sf_mbar_arrive(u32 bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ bool sf_mbar_try_wait(u32 bar, u32 parity) {
    u32 ok;
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(ok)
        : "r"(bar), "r"(parity)
        : "memory");
    return ok != 0;
}
// Waits for the phase with `parity` to complete. SF_HANG_GUARD (development builds) traps after
// ~2^28 polls so a protocol bug fails the launch instead of hanging the GPU.
__device__ __forceinline__ void sf_mbar_wait(u32 bar, u32 parity) {
#ifdef SF_HANG_GUARD
    u32 polls = 0;
    while (!sf_mbar_try_wait(bar, parity))
        if (++polls == (1u << 28)) __trap();
#else
    while (!sf_mbar_try_wait(bar, parity)) {
    }
#endif
}

// One box of a 2-D map at (column c0, row c1) into shared memory, completing on `bar`: the X tile
// (64 elements x TILE_M tokens at (k, m)), and with SF_A_SMEM the row-major weight values.
__device__ __forceinline__ void sf_tma_load_2d(u32 dst, const sf_tensor_map* map, u32 bar, int c0, int c1) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];\n" ::"r"(
            dst),
        "l"(map), "r"(bar), "r"(c0), "r"(c1)
        : "memory");
}
// This CTA's slice of the X tile (box 64 x X_SLICE_ROWS at (k, m)) into the same offset of the
// shared memory of every CTA in `mask`, completing on the barrier at the same offset in each.
__device__ __forceinline__ void sf_tma_load_x_multicast(u32 dst, const sf_tensor_map* map, u32 bar, int k, int m,
                                                        unsigned short mask) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1, {%3, "
        "%4}], [%2], %5;\n" ::"r"(dst),
        "l"(map), "r"(bar), "r"(k), "r"(m), "h"(mask)
        : "memory");
}
__device__ __forceinline__ u32 sf_cluster_rank() {
    u32 r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
    return r;
}
// Every thread of every CTA of the cluster: release what this thread wrote, acquire the others'.
__device__ __forceinline__ void sf_cluster_sync() {
    asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}
// Releases ring slot `empty` (a local barrier address) to the producers: with clusters, lanes
// 0..SF_CLUSTER_N-1 arrive on the barrier at that offset in CTA `lane` of the cluster. The
// arrive keeps the default .release.cta semantics, as CUTLASS's ClusterBarrier does: the slot's
// only readers were this warp's wgmmas, already retired by wgmma.wait_group, so nothing needs
// ordering at cluster scope. `.release.cluster` compiled to a cluster-wide memory barrier
// (ERRBAR + CGAERRBAR) per release: 23% of the consumers' stall samples on the H200.
__device__ __forceinline__ void sf_release_slot(u32 empty, int lane) {
#if SF_CLUSTER_N > 1
    if (lane < SF_CLUSTER_N)
        asm volatile(
            "{\n.reg .b32 remote;\nmapa.shared::cluster.u32 remote, %0, %1;\n"
            "mbarrier.arrive.shared::cluster.b64 _, [remote];\n}\n" ::"r"(empty),
            "r"(lane)
            : "memory");
#else
    if (lane == 0) sf_mbar_arrive(empty);
#endif
}

// A box of a 3-D weight map (values: [row block][K step][512 bytes]; metadata: [row block][K
// pair][128 bytes]) at (0, k, rb) into shared memory, completing on `bar`.
__device__ __forceinline__ void sf_tma_load_3d(u32 dst, const sf_tensor_map* map, u32 bar, int c0, int c1, int c2) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], [%2];\n" ::"r"(
            dst),
        "l"(map), "r"(bar), "r"(c0), "r"(c1), "r"(c2)
        : "memory");
}

__device__ __forceinline__ void sf_wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void sf_wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void sf_wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Keeps the compiler from moving accumulator reads or writes across wgmma fences and waits.
__device__ __forceinline__ void sf_fence_acc(float (&d)[NACC]) {
#pragma unroll
    for (int i = 0; i < NACC; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// Shared-memory matrix descriptor of a K-major operand with 128-byte swizzle: rows of 128 bytes,
// 8-row groups 1024 bytes apart (stride byte offset); the leading byte offset is unused.
__device__ __forceinline__ unsigned long long sf_desc_sw128(u32 addr) {
    return (unsigned long long)((addr & 0x3FFFF) >> 4) | (1ull << 16) | ((unsigned long long)(1024 >> 4) << 32) |
           (1ull << 62);
}

#if SF_A_SMEM
// Descriptor of the compressed A tile: K-major rows of TILE_K bytes (TILE_K / 2 elements), 8-row
// groups 8 * TILE_K bytes apart, swizzled across the row width (layout type 1: 128-byte swizzle,
// 2: 64-byte).
__device__ __forceinline__ unsigned long long sf_desc_a(u32 addr) {
    return (unsigned long long)((addr & 0x3FFFF) >> 4) | (1ull << 16) |
           ((unsigned long long)((8 * TILE_K) >> 4) << 32) | ((TILE_K == 128 ? 1ull : 2ull) << 62);
}
#endif

// Four 8x8 b16 matrices stored transposed: lane i gives the address of stored row (i & 7) of
// matrix (i >> 3), which receives column (i & 7) of that matrix's fragment.
__device__ __forceinline__ void sf_stmatrix_x4_trans(u32 addr, const u32 (&r)[4]) {
    asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(r[0]),
                 "r"(r[1]), "r"(r[2]), "r"(r[3])
                 : "memory");
}
__device__ __forceinline__ u32 sf_pack2(float lo, float hi) {
    return (u32)sf_from_float(lo).bits | ((u32)sf_from_float(hi).bits << 16);
}

// Grouped raster: SF_GROUP_N feature tiles walk down every token tile together, so the CTAs
// running at once read a few weight tiles and a few X tiles — both stay in L2 — instead of the
// whole weight once per token tile.
// With clusters a "tile" here is SF_CLUSTER_N adjacent feature tiles (one per CTA of the
// cluster, the last ones possibly past N) and n_tile is the first of them.
__device__ __forceinline__ void sf_tile_coords(int tile, int M, int N, int& n_tile, int& m_tile) {
    const int tiles_n = (N + TILE_N * SF_CLUSTER_N - 1) / (TILE_N * SF_CLUSTER_N), tiles_m = (M + TILE_M - 1) / TILE_M;
    const int per_group = SF_GROUP_N * tiles_m;
    const int group = tile / per_group, in = tile % per_group;
    const int width = min(SF_GROUP_N, tiles_n - group * SF_GROUP_N);
    n_tile = (group * SF_GROUP_N + in % width) * SF_CLUSTER_N;
    m_tile = in / width;
}

// Per-warp epilogue: this warp's 16 features x TILE_M tokens, 64 tokens at a time. Accumulator
// d[4j + 2h + e] is feature g + 8h, token 8j + 2t + e: for fixed (j, h) the warp's registers
// are an mma fragment with features as rows, so stmatrix.trans stores it token-major — 16
// bytes (8 features) per token row. A token row is 32 bytes (both 8-feature halves); the halves
// swap every 4 rows so neither the stmatrix nor the 16-byte reads conflict on banks.
__device__ __forceinline__ void sf_epilogue_warp(const float (&d)[NACC], u32 stg, const sf_t* __restrict__ bias,
                                                 sf_t* __restrict__ y, int m0, int nw, int M, int N, int lane) {
    const int g = lane >> 2;
    float bv[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) bv[h] = nw + g + 8 * h < N ? sf_load_bias(bias, nw + g + 8 * h) : 0.0f;
    const int q = lane >> 3, i = lane & 7;  // stmatrix: this lane addresses row i of matrix q
    const bool vec_ok = (N & 7) == 0;
#pragma unroll
    for (int c = 0; c < TILE_M; c += EPI_TOKENS) {
#pragma unroll
        for (int jj = 0; jj < EPI_TOKENS / 8; jj += 2) {
            const int j = c / 8 + jj;
            u32 r[4];
#pragma unroll
            for (int x = 0; x < 4; ++x) {  // matrices (j, h0), (j, h1), (j + 1, h0), (j + 1, h1)
                const int jx = j + (x >> 1), h = x & 1;
                r[x] = sf_pack2(SF_EPILOGUE(d[4 * jx + 2 * h], bv[h]), SF_EPILOGUE(d[4 * jx + 2 * h + 1], bv[h]));
            }
            const int row = (jj + (q >> 1)) * 8 + i;
            sf_stmatrix_x4_trans(stg + row * 32 + (((q & 1) ^ ((row >> 2) & 1)) << 4), r);
        }
        __syncwarp();
#pragma unroll
        for (int p = 0; p < EPI_TOKENS * 2 / 32; ++p) {
            const int piece = lane + 32 * p, row = piece >> 1, half = piece & 1;
            const uint4 v = sf_lds128(stg + row * 32 + ((half ^ ((row >> 2) & 1)) << 4));
            const int m = m0 + c + row, n = nw + 8 * half;
            if (m >= M || n >= N) continue;
            sf_t* dst = y + (size_t)m * N + n;
            if (vec_ok && n + 8 <= N) {
                *reinterpret_cast<uint4*>(dst) = v;
            } else {
                const u32 w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll  // constant indices keep w in registers
                for (int e = 0; e < 8; ++e)
                    if (n + e < N) dst[e].bits = (unsigned short)(w[e >> 1] >> (16 * (e & 1)));
            }
        }
        __syncwarp();  // the next chunk's stmatrix overwrites what these reads took
    }
}

// A CTA's work, in order, as units of (output tile, K stages [kb, ke)):
//  * persistent: whole tiles first_tile, first_tile + step, ...;
//  * SF_STREAM_K: the tiles' K stages end to end, tiles x KT of them, CTA c taking
//    [c * I / P, (c + 1) * I / P) — every CTA the same work to within one stage;
//  * otherwise the CTA's one tile, its split's K stages (step = tiles ends it after one).
// Producer and consumers walk the same units, so they agree on every ring slot.
struct sf_unit {
    int tile, kb, ke;
};
struct sf_sched {
    long long pos, end;  // stream-K: K-stage iterations; otherwise tile indices
    int step, KT, kb, ke;
};
// First K-stage iteration of CTA `cta` (stream-K): 64-bit, as tiles x KT x P can pass 2^31.
__device__ __forceinline__ long long sf_sk_start(int cta, long long iters) {
    return iters * cta / gridDim.x;
}
__device__ __forceinline__ sf_sched sf_sched_begin(int first_tile, int step, int tiles, int KT, int kb, int ke) {
#if SF_STREAM_K
    (void)first_tile, (void)step, (void)kb, (void)ke;
    const long long iters = (long long)tiles * KT;
    return {sf_sk_start(blockIdx.x, iters), sf_sk_start(blockIdx.x + 1, iters), 0, KT, 0, KT};
#else
    return {first_tile, tiles, step, KT, kb, ke};
#endif
}
__device__ __forceinline__ bool sf_sched_next(sf_sched& s, sf_unit& u) {
    if (s.pos >= s.end) return false;
#if SF_STREAM_K
    u.tile = (int)(s.pos / s.KT);
    const long long tile_start = (long long)u.tile * s.KT;
    u.kb = (int)(s.pos - tile_start);
    u.ke = (int)min((long long)s.KT, s.end - tile_start);
    s.pos = tile_start + u.ke;
#else
    u.tile = (int)s.pos;
    u.kb = s.kb;
    u.ke = s.ke;
    s.pos += s.step;
#endif
    return true;
}

// fp32 partial tiles between CTAs (split-K and stream-K; the decode family's protocol,
// kernels/README.md): [accumulator][consumer thread], coalesced per accumulator. A writer stores
// into words that hold SF_WS_EMPTY with relaxed gpu-scope stores (a NaN as the canonical one,
// never the sentinel); the one reader waits for each word and empties it for the next launch.
#define PART_STRIDE (CWG * 128)
#define PART_FLOATS (NACC * PART_STRIDE)
__device__ __forceinline__ void sf_store_partial(const float (&d)[NACC], float* slot) {
#pragma unroll
    for (int i = 0; i < NACC; ++i)
        sf_st_relaxed_f32(slot + i * PART_STRIDE, d[i] != d[i] ? __int_as_float(0x7fffffff) : d[i]);
}
// d += the partial in `slot`, in chunks of 32 accumulators: issue every load, then re-read only
// the words still empty, all of them per round trip (a load-then-spin per word serialised ~NACC
// L2 round trips per peer: split-K measured 3-8x slower than no split). The wait is warp-uniform
// (the warp leaves it together): accumulators written after a per-thread exit made ptxas
// serialize every wgmma of the persistent stream-K loop (C7520).
__device__ __forceinline__ void sf_add_partial(float (&d)[NACC], float* slot) {
#pragma unroll
    for (int c0 = 0; c0 < NACC; c0 += 32) {
        constexpr int CH = NACC < 32 ? NACC : 32;
        float v[CH];
#pragma unroll
        for (int i = 0; i < CH; ++i) v[i] = sf_ld_relaxed_f32(slot + (c0 + i) * PART_STRIDE);
        bool pending = true;
#ifdef SF_HANG_GUARD
        u32 polls = 0;
#endif
        while (__any_sync(0xffffffffu, pending)) {
#ifdef SF_HANG_GUARD
            if (++polls == (1u << 28)) __trap();
#endif
            pending = false;
#pragma unroll
            for (int i = 0; i < CH; ++i) {
                if (__float_as_uint(v[i]) == SF_WS_EMPTY) {
                    v[i] = sf_ld_relaxed_f32(slot + (c0 + i) * PART_STRIDE);
                    pending = true;
                }
            }
        }
#pragma unroll
        for (int i = 0; i < CH; ++i) {
            d[c0 + i] += v[i];
            slot[(c0 + i) * PART_STRIDE] = __uint_as_float(SF_WS_EMPTY);
        }
    }
}

// Consumer side of K stage `kt`: waits for its copies, loads this warp's A and metadata
// registers (into the set `a`/`e` no stage in flight is using), issues its wgmmas, then waits
// for the stage SF_WGMMA_INFLIGHT before it and releases that stage to the producer.
__device__ __forceinline__ void consume_stage(int j, int local, int kt, int KS, u32 ring, u32 bars, int rbl,
                                              int lane, float (&d)[NACC], u32 (&a)[KSTEPS][4], u32 (&e)[KPS]) {
    // j: this CTA's stage count (ring slot and phase); local: the stage's index in its tile (0:
    // the accumulators start from zero; below SF_WGMMA_INFLIGHT no earlier stage of this tile to
    // release); kt: the K stage it holds.
    const bool first = local == 0;
    const int s = j % STAGES;
    const int nks = min(KSTEPS, KS - kt * KSTEPS);
    sf_mbar_wait(bars + 8 * s, (j / STAGES) & 1);
    const u32 st = ring + s * STAGE_BYTES;
    const u32 ev = st + X_BYTES + A_BYTES + rbl * KPS * SF_META_BLOCK_BYTES + lane * 4;
#if SF_A_SMEM
    (void)a;
    // This warpgroup's 64 weight rows of the stage's A tile.
    const u32 a_tile = st + X_BYTES + (rbl / 4) * 64 * TILE_K;
#else
    const u32 av = st + X_BYTES + rbl * KSTEPS * SF_VAL_BLOCK_BYTES + lane * 16;
#pragma unroll
    for (int kk = 0; kk < KSTEPS; ++kk) {
        const uint4 a4 = sf_lds128(av + kk * SF_VAL_BLOCK_BYTES);
        a[kk][0] = a4.x;
        a[kk][1] = a4.y;
        a[kk][2] = a4.z;
        a[kk][3] = a4.w;
    }
#endif
#pragma unroll
    for (int p = 0; p < KPS; ++p) e[p] = sf_lds32(ev + p * SF_META_BLOCK_BYTES);
    sf_wgmma_fence();
#ifndef SF_DEV_SKIP_MMA  // development only: times the load pipeline without tensor work
#pragma unroll
    for (int kk = 0; kk < KSTEPS; ++kk) {
        // Only a K tail shorter than TILE_K (K/64 odd with TILE_K 128) skips steps.
#if SF_ASYNC_MAINLOOP
        if (kk < nks) {  // always true but for a K tail; as a run-time test ptxas pipelines
#else
        if (KSTEPS == 2 || kk < nks) {
#endif
            const unsigned long long desc = sf_desc_sw128(st + (kk / 2) * X_HALF_BYTES + (kk % 2) * 64);
            const int scale_d = (!first || kk > 0) ? 1 : 0;
#if SF_A_SMEM
            // k32 step kk: the rows' next 16 compressed elements, 32 bytes on (the swizzle is a
            // function of the address, so the start address moves as in a dense K-major tile).
            const unsigned long long desc_a = sf_desc_a(a_tile + kk * 32);
            if (kk % 2 == 0)
                sf_wgmma_sp_ss<0>(d, desc_a, desc, e[kk / 2], scale_d);
            else
                sf_wgmma_sp_ss<1>(d, desc_a, desc, e[kk / 2], scale_d);
#else
            if (kk % 2 == 0)
                sf_wgmma_sp<0>(d, a[kk], desc, e[kk / 2], scale_d);
            else
                sf_wgmma_sp<1>(d, a[kk], desc, e[kk / 2], scale_d);
#endif
        }
    }
#endif
    sf_wgmma_commit();
#if SF_WGMMA_INFLIGHT == 0
    sf_wgmma_wait<0>();
    __syncwarp();
    sf_release_slot(bars + 8 * (STAGES + s), lane);
#else
    if (local >= SF_WGMMA_INFLIGHT) {
        // Stage j-SF_WGMMA_INFLIGHT is done: its shared memory and registers are free. (No
        // accumulator fence here: later stages are still in flight, and touching d would make
        // ptxas serialize.)
        sf_wgmma_wait<SF_WGMMA_INFLIGHT>();
        __syncwarp();
        sf_release_slot(bars + 8 * (STAGES + (j - SF_WGMMA_INFLIGHT) % STAGES), lane);
    }
#endif
}

extern "C" __global__ void __launch_bounds__(THREADS, 1)
    SF_KERNEL_NAME(const __grid_constant__ sf_tensor_map x_map, const __grid_constant__ sf_tensor_map w_map,
                   const __grid_constant__ sf_tensor_map e_map, const sf_t* __restrict__ bias, sf_t* __restrict__ y,
                   float* workspace, int M, int N, int K) {
    extern __shared__ __align__(1024) u8 smem_raw[];
    // The 128-byte swizzle repeats every 1024 bytes: align the ring to it (the host asks for
    // 1 KiB more than the ring needs).
    const u32 raw0 = sf_smem_addr(smem_raw);
    const u32 ring = (raw0 + 1023) & ~1023u;
    const u32 bars = ring + STAGES * STAGE_BYTES;  // full[STAGES], empty[STAGES]

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int wg = threadIdx.x >> 7;
    const int tiles = ((N + TILE_N * SF_CLUSTER_N - 1) / (TILE_N * SF_CLUSTER_N)) * ((M + TILE_M - 1) / TILE_M);
    // Persistent: tiles blockIdx.x, + gridDim.x, ... (with clusters, per cluster: the CTAs of a
    // cluster are adjacent block ids and share each tile); otherwise the one tile of this CTA
    // (a tile's split_k CTAs are adjacent, its reducer last) and a step past the end.
    const int first_tile = SF_PERSISTENT ? blockIdx.x / SF_CLUSTER_N : blockIdx.x / SPLIT_K;
    const int tile_step = SF_PERSISTENT ? gridDim.x / SF_CLUSTER_N : tiles;
    const int rank = SF_CLUSTER_N > 1 ? (int)sf_cluster_rank() : 0;  // this CTA's feature tile in a tile
    const int KP = (K + 63) / 64, KS = 2 * KP;
    const int KT = (KS + KSTEPS - 1) / KSTEPS;  // stages of K
    // Split-K: this CTA's K stages [split_kb, split_ke) (possibly none when SPLIT_K does not
    // divide KT).
    const int split = blockIdx.x % SPLIT_K, per = (KT + SPLIT_K - 1) / SPLIT_K;
    const int split_kb = min(KT, split * per), split_ke = min(KT, split_kb + per);

    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; ++s) {
            sf_mbar_init(bars + 8 * s, 1);                     // the producer's arrive + bytes
            sf_mbar_init(bars + 8 * (STAGES + s), 4 * CWG * SF_CLUSTER_N);  // each consumer warp of the cluster
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
#if SF_CLUSTER_N > 1
    sf_cluster_sync();  // every barrier of the cluster is initialised before any copy or arrive
#else
    __syncthreads();
#endif
    sf_wait_prior_grid();

    if (wg == 0) {
#if CWG == 2 || SF_ASYNC_MAINLOOP
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
#endif
#if SF_CLUSTER_N > 1
        if (warp != 0) {
            sf_cluster_sync();  // peers may still arrive on this CTA's barriers until then
            return;
        }
#else
        if (warp != 0) return;
#endif
        // g counts this CTA's stages over all its tiles: ring slot and phase.
        int g = 0;
        sf_sched sched = sf_sched_begin(first_tile, tile_step, tiles, KT, split_kb, split_ke);
        sf_unit u;
        while (sf_sched_next(sched, u)) {
            int n_tile, m_tile;
            sf_tile_coords(u.tile, M, N, n_tile, m_tile);
            n_tile += rank;
            const int m0 = m_tile * TILE_M, rb0 = n_tile * TILE_N / 16;
            for (int kt = u.kb; kt < u.ke; ++kt, ++g) {
                const int s = g % STAGES;
                if (g >= STAGES) sf_mbar_wait(bars + 8 * (STAGES + s), ((g / STAGES) - 1) & 1);
                const int ks0 = kt * KSTEPS, kp0 = ks0 / 2;
                const u32 full = bars + 8 * s;
                const u32 st = ring + s * STAGE_BYTES;
#ifdef SF_DEV_SKIP_LOADS  // development only: times the consumers without memory traffic
                if (lane == 0) sf_mbar_arrive(full);
                continue;
#endif
                // Three tensor copies per stage (a bulk copy per 16-row block measured the load
                // pipeline at ~1 us per stage whatever its size: the copy count, not the bytes,
                // set the pace). The box is always whole: K past the end arrives as zeros.
                if (lane == 0) {
                    // The whole X tile arrives (each CTA's slice from its own multicast).
                    sf_mbar_expect_tx(full, X_BYTES + A_BYTES + E_BYTES);
#if SF_CLUSTER_N > 1
                    for (int h = 0; h < KPS; ++h)
                        sf_tma_load_x_multicast(st + h * X_HALF_BYTES + rank * X_SLICE_ROWS * 128, &x_map, full,
                                                (kp0 + h) * 64, m0 + rank * X_SLICE_ROWS, (1 << SF_CLUSTER_N) - 1);
#else
                    for (int h = 0; h < KPS; ++h) sf_tma_load_2d(st + h * X_HALF_BYTES, &x_map, full, (kp0 + h) * 64, m0);
#endif
#if SF_A_SMEM
                    sf_tma_load_2d(st + X_BYTES, &w_map, full, kt * (TILE_K / 2), rb0 * 16);
#else
                    sf_tma_load_3d(st + X_BYTES, &w_map, full, 0, ks0, rb0);
#endif
                    sf_tma_load_3d(st + X_BYTES + A_BYTES, &e_map, full, 0, kp0, rb0);
                }
            }
        }
#if SF_CLUSTER_N > 1
        sf_cluster_sync();
#endif
        return;
    }

#if CWG == 2 || SF_ASYNC_MAINLOOP
    // Two consumer warpgroups: 168 at launch -> 232 (the producer's 128 spare registers per
    // thread cover them). One: ptxas then allocates 232 at launch and this keeps them; its
    // being warpgroup-aligned is what lets ptxas pipeline the wgmmas (C7520 without it).
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
#endif
    const int c = wg - 1;             // consumer warpgroup: features n0 + 64c ..
    const int rbl = c * 4 + (warp & 3);  // this warp's 16-row block within the CTA
    float d[NACC];
#pragma unroll
    for (int i = 0; i < NACC; ++i) d[i] = 0.0f;
    sf_fence_acc(d);  // the zeros are materialized here, not between the first wgmmas

    // One stage of wgmmas stays in flight: stage kt is issued before stage kt-1 is waited for, so
    // the tensor cores never idle on a barrier or a shared-memory load. Its A and metadata
    // registers therefore alternate between two sets (the loop is unrolled by two so each set
    // is a fixed group of registers).
    u32 a0[KSTEPS][4], e0[KPS], a1[KSTEPS][4], e1[KPS];
#if SF_WGMMA_INFLIGHT == 2
    u32 a2[KSTEPS][4], e2[KPS];
#endif
    int g = 0;  // as the producer's
#if SF_PERSISTENT
    sf_sched sched = sf_sched_begin(first_tile, tile_step, tiles, KT, split_kb, split_ke);
    sf_unit u;
    while (sf_sched_next(sched, u)) {
        const int tile = u.tile, kt0 = u.kb, nkt = u.ke - u.kb;
#else
    // One tile: no loop, so ptxas keeps nothing of one live across the split-K hand-off (the
    // loop form spilled the 256-token split-2 kernels).
    {
        const int tile = first_tile, kt0 = split_kb, nkt = split_ke - split_kb;
#endif
        int n_tile, m_tile;
        sf_tile_coords(tile, M, N, n_tile, m_tile);
        n_tile += rank;
        const int n0 = n_tile * TILE_N, m0 = m_tile * TILE_M;
#if SF_ASYNC_MAINLOOP && SF_WGMMA_INFLIGHT == 2
        // Whole triples (one per register set), then the one or two stages left.
        int j = 0;
        for (; j + 2 < nkt; j += 3) {
            consume_stage(g + j, j, kt0 + j, KS, ring, bars, rbl, lane, d, a0, e0);
            consume_stage(g + j + 1, j + 1, kt0 + j + 1, KS, ring, bars, rbl, lane, d, a1, e1);
            consume_stage(g + j + 2, j + 2, kt0 + j + 2, KS, ring, bars, rbl, lane, d, a2, e2);
        }
        if (j < nkt) consume_stage(g + j, j, kt0 + j, KS, ring, bars, rbl, lane, d, a0, e0);
        if (j + 1 < nkt) consume_stage(g + j + 1, j + 1, kt0 + j + 1, KS, ring, bars, rbl, lane, d, a1, e1);
#elif SF_ASYNC_MAINLOOP
        // Whole pairs, then an odd last stage: no conditional stage inside the loop body.
        int j = 0;
        for (; j + 1 < nkt; j += 2) {
            consume_stage(g + j, j, kt0 + j, KS, ring, bars, rbl, lane, d, a0, e0);
            consume_stage(g + j + 1, j + 1, kt0 + j + 1, KS, ring, bars, rbl, lane, d, a1, e1);
        }
        if (j < nkt) consume_stage(g + j, j, kt0 + j, KS, ring, bars, rbl, lane, d, a0, e0);
#else
        if (nkt > 0) consume_stage(g, 0, kt0, KS, ring, bars, rbl, lane, d, a0, e0);
        for (int j = 1; j < nkt; j += 2) {
            consume_stage(g + j, j, kt0 + j, KS, ring, bars, rbl, lane, d, a1, e1);
            if (j + 1 < nkt) consume_stage(g + j + 1, j + 1, kt0 + j + 1, KS, ring, bars, rbl, lane, d, a0, e0);
        }
#endif
        g += nkt;
        sf_wgmma_wait<0>();
        sf_fence_acc(d);
#if SF_PERSISTENT
        // The tile's last stages are done too: hand them back for the next tile's loads.
        __syncwarp();
        for (int r = nkt > SF_WGMMA_INFLIGHT ? nkt - SF_WGMMA_INFLIGHT : 0; r < nkt; ++r)
            sf_release_slot(bars + 8 * (STAGES + (g - nkt + r) % STAGES), lane);
#endif

#if SPLIT_K > 1
        // Split-K hand-off: a peer hands its partial to the tile's last split (highest block id,
        // so its peers were dispatched first), which adds them in split order. Slots:
        // [tile][peer].
        {
            float* ws = workspace + (size_t)(blockIdx.x / SPLIT_K) * (SPLIT_K - 1) * PART_FLOATS + (threadIdx.x - 128);
            if (split != SPLIT_K - 1) {
                sf_store_partial(d, ws + (size_t)split * PART_FLOATS);
                return;
            }
            for (int p = 0; p < SPLIT_K - 1; ++p) sf_add_partial(d, ws + (size_t)p * PART_FLOATS);
        }
#elif SF_STREAM_K
        // A tile cut between CTAs: the CTAs after the first hold its later K stages at the start
        // of their ranges and hand those partials (one slot per CTA: only a range's first unit
        // can start inside a tile) to the CTA holding its first stages, at the end of its range
        // — by then they are long written. A CTA only waits on later ones, which wait on none
        // before their hand-off; with blocks dispatched in order (the grid is at most one CTA
        // per SM, so normally all are resident at once) every wait ends. A CTA whose range is
        // empty (a grid above tiles x KT) hands over nothing and is not waited for.
        {
            float* ws = workspace + (threadIdx.x - 128);
            if (kt0 > 0) {
                sf_store_partial(d, ws + (size_t)blockIdx.x * PART_FLOATS);
                continue;
            }
            if (nkt < KT) {
                const long long iters = (long long)tiles * KT, tile_end = (long long)(tile + 1) * KT;
                for (int p = blockIdx.x + 1; p < (int)gridDim.x && sf_sk_start(p, iters) < tile_end; ++p)
                    if (sf_sk_start(p + 1, iters) > sf_sk_start(p, iters)) sf_add_partial(d, ws + (size_t)p * PART_FLOATS);
            }
        }
#else
        (void)workspace;
#endif

#if SF_ASYNC_MAINLOOP
        // Per warp, from its own staging buffer after the barriers (16-byte aligned): the ring
        // may already hold the next tile's stages.
        const u32 epi = ((bars + 16 * STAGES + 127) & ~127u) + rbl * EPI_WARP_BYTES;
        sf_epilogue_warp(d, epi, bias, y, m0, n0 + rbl * 16, M, N, lane);
#else
        // Every consumer is past the ring (the producer issued nothing beyond the last stage,
        // and every stage was waited for): reuse it for the Y tile. Named barrier 1 = consumers.
        asm volatile("bar.sync 1, %0;\n" ::"n"(CWG * 128) : "memory");
        sf_t* ys = reinterpret_cast<sf_t*>(smem_raw + (ring - raw0));
        const int g4 = lane >> 2, t = lane & 3;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int nl = rbl * 16 + g4 + 8 * h;
            const float bv = n0 + nl < N ? sf_load_bias(bias, n0 + nl) : 0.0f;
#pragma unroll
            for (int jm = 0; jm < TILE_M / 8; ++jm) {
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int ml = jm * 8 + 2 * t + e;
                    ys[ml * Y_STRIDE + nl] = sf_from_float(SF_EPILOGUE(d[4 * jm + 2 * h + e], bv));
                }
            }
        }
        asm volatile("bar.sync 1, %0;\n" ::"n"(CWG * 128) : "memory");
        sf_store_y_tile<TILE_M, TILE_N, Y_STRIDE, CWG * 128>(y, ys, m0, n0, M, N, threadIdx.x - 128);
#endif
    }
#if SF_CLUSTER_N > 1
    sf_cluster_sync();  // no CTA leaves while a peer may still release a slot on its barriers
#endif
}
