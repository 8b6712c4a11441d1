// Family "decode": small M (token generation). Weight streaming on sparse tensor cores.
//
// The layer is bound by reading W once, so everything serves the weight stream:
//  * W is the sparse A operand (out-features on the MMA's 16 rows), X the dense B operand
//    (tokens on its n8 side; TILE_M = 8 or 16 tokens = 1 or 2 MMA columns).
//  * W is pre-shuffled at upload into fragment order (kernels/README.md), so each lane streams
//    its A registers straight from global memory with 16-byte ld.global.nc.L1::no_allocate
//    loads, a warp reading 512 contiguous bytes per 16x32 block. No shared memory hop for W.
//  * A CTA owns TILE_N out-features; its 4 warps interleave over the 64-wide K pairs of the
//    CTA's K slice, and each warp keeps STAGES K pairs of loads in flight: the weight fragments
//    in a register ring, the X tile of each pair in the warp's own STAGES-slot shared ring via
//    cp.async (no registers: X in the register ring cost 25-30% of the registers at TILE_M 16,
//    and moving it out measured 3-8% faster at M = 16 on the H100, 0.5-3% at M <= 8). A CTA
//    has STAGES * WARPS * TILE_N * 64 bytes of weight requests outstanding.
//  * The warps' partial tiles are summed through shared memory. With SPLIT_K > 1 the CTAs of
//    one output tile (grid.y) hand fp32 partials to the tile's last split, the reducer, through
//    `workspace` slots that hold a sentinel (every bit set) when empty: a peer stores its
//    partial and exits — no fence, no atomic — and the reducer polls its peers' slots, sums
//    them in split order with its own, applies the fused epilogue, writes Y and empties the
//    slots again for the next launch (see the split-K block below).
//
// Spliced by crates/codegen: SF_KERNEL_NAME, SF_DTYPE_*, TILE_M, TILE_N, TILE_K, WARPS, STAGES,
// SPLIT_K, SF_USES_BIAS, SF_EPILOGUE(acc, bias).

#define THREADS (WARPS * 32)
#define RB (TILE_N / 16)   // 16-row MMA blocks per CTA (every warp covers all of them)
#define NT (TILE_M / 8)    // 8-token MMA columns
#define XL (TILE_M / 4)    // 16-byte X chunks per lane per K pair (TILE_M rows x 128 bytes / 32 lanes)
#define TILE_ELEMS (TILE_M * TILE_N)
#define X_SLOT_BYTES (TILE_M * 128)  // one K pair of X: TILE_M rows x 64 halves

static_assert(WARPS == 4, "decode uses 4 warps");
static_assert(TILE_K == WARPS * 64, "TILE_K is one 64-wide K pair per warp");
static_assert(TILE_M == 8 || TILE_M == 16, "decode covers 8 or 16 tokens per CTA");
static_assert(128 % TILE_N == 0, "upload pads N to 128; TILE_N must divide it");
static_assert(TILE_ELEMS % THREADS == 0, "reduction assigns whole elements per thread");
static_assert(TILE_N % 8 == 0 && TILE_N / 8 <= THREADS, "one 16-byte bias chunk per thread");

struct Stage {
    uint4 a[RB][2];  // A fragments of both K steps of the pair, per row block
    u32 meta[RB];    // metadata register per row block (selector = K step)
};

// 16-byte chunk `ch` (0..7) of token row `row` sits at chunk ch ^ (row & 7) (conflict-free ldmatrix).
__device__ __forceinline__ u32 x_swz(int row, int ch) { return row * 128 + ((ch ^ (row & 7)) << 4); }

// Weights into the register ring; this lane's share of the X tile (TILE_M tokens x 64 K)
// straight into the warp's shared slot `xs` with cp.async (zero-filled outside M and K). The
// caller commits one cp.async group per slot, loaded or not.
__device__ __forceinline__ void load_stage(Stage& s, u32 xs, const sf_t* __restrict__ x, const u8* __restrict__ wvals,
                                           const u8* __restrict__ wmeta, int rb0, int kp, int KS, int KP, int m0,
                                           int M, int K, int lane) {
#pragma unroll
    for (int i = 0; i < RB; ++i) {
        const u8* va = wvals + ((size_t)(rb0 + i) * KS + 2 * kp) * SF_VAL_BLOCK_BYTES + lane * 16;
        s.a[i][0] = sf_ldg_stream128(va);
        s.a[i][1] = sf_ldg_stream128(va + SF_VAL_BLOCK_BYTES);
        s.meta[i] = sf_ldg_stream32(wmeta + ((size_t)(rb0 + i) * KP + kp) * SF_META_BLOCK_BYTES + lane * 4);
    }
    const bool k8 = (K & 7) == 0;
#pragma unroll
    for (int j = 0; j < XL; ++j) {
        const int c = lane + 32 * j;
        const int row = c >> 3, ch = c & 7;
        const int m = m0 + row, kk = kp * 64 + ch * 8;
        const u32 dst = xs + x_swz(row, ch);
        // A copy of 0 bytes reads nothing but still needs a valid address: offset 0.
        const size_t at = (size_t)m * K + kk;
        if (k8) {
            const bool ok = m < M && kk < K;
            sf_cp_async16(dst, x + (ok ? at : 0), ok);
        } else {
            // K % 8 == 4: rows are only 8-byte aligned; copy the chunk as two halves.
            const bool lo = m < M && kk < K, hi = m < M && kk + 4 < K;
            sf_cp_async8(dst, x + (lo ? at : 0), lo);
            sf_cp_async8(dst + 8, x + (hi ? at + 4 : 0), hi);
        }
    }
}

// The slot's X group must have landed: STAGES - 1 newer groups may still be in flight.
__device__ __forceinline__ void compute_stage(const Stage& s, float (&acc)[RB][NT][4], u32 xs, int lane) {
    sf_cp_async_wait<STAGES - 1>();
    __syncwarp();  // every lane's copies are visible to the warp
#pragma unroll
    for (int ks = 0; ks < 2; ++ks) {
        u32 b[NT][4];
#pragma unroll
        for (int j = 0; j < NT; ++j) sf_ldmatrix_x4(b[j], xs + x_swz(j * 8 + (lane & 7), ks * 4 + (lane >> 3)));
#pragma unroll
        for (int i = 0; i < RB; ++i) {
            const u32 a[4] = {s.a[i][ks].x, s.a[i][ks].y, s.a[i][ks].z, s.a[i][ks].w};
#pragma unroll
            for (int j = 0; j < NT; ++j) {
                if (ks == 0)
                    sf_mma_sp<0>(acc[i][j], a, b[j], s.meta[i]);
                else
                    sf_mma_sp<1>(acc[i][j], a, b[j], s.meta[i]);
            }
        }
    }
    __syncwarp();  // the next load overwrites this slot
}

extern "C" __global__ void __launch_bounds__(THREADS) SF_KERNEL_NAME(
    const sf_t* __restrict__ x, const u8* __restrict__ wvals, const u8* __restrict__ wmeta,
    const sf_t* __restrict__ bias, sf_t* __restrict__ y, float* workspace, int M, int N, int K) {
    __shared__ __align__(128) u8 xbuf[WARPS][STAGES][X_SLOT_BYTES];
    __shared__ float red[WARPS][TILE_ELEMS];  // [warp][token][feature]
    __shared__ __align__(16) sf_t bias_s[TILE_N];  // cp.async'd in the prologue (see below)

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int n0 = blockIdx.x * TILE_N, m0 = blockIdx.z * TILE_M;
    const int rb0 = n0 / 16;
    const int KP = (K + 63) / 64, KS = 2 * KP;
    const int per = (KP + SPLIT_K - 1) / SPLIT_K;
    const int kp_begin = blockIdx.y * per;
    const int kp_end = min(KP, kp_begin + per);
    const u32 xs0 = sf_smem_addr(xbuf[warp][0]);  // slot s at xs0 + s * X_SLOT_BYTES
    (void)workspace;

    float acc[RB][NT][4];
#pragma unroll
    for (int i = 0; i < RB; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.0f;

    // Under programmatic dependent launch the CTA starts while the previous kernel finishes; wait
    // for it before any memory access. (Issuing the weight prologue before the wait measured no
    // faster on the H100 — the gain is the hidden launch — and slowed M = 16 by delaying X.)
    sf_wait_prior_grid();
    Stage ring[STAGES];
#pragma unroll
    for (int s = 0; s < STAGES; ++s) {
        const int kp = kp_begin + warp + WARPS * s;
        if (kp < kp_end) load_stage(ring[s], xs0 + s * X_SLOT_BYTES, x, wvals, wmeta, rb0, kp, KS, KP, m0, M, K, lane);
#if SF_USES_BIAS
        // The bias goes straight to shared memory with cp.async (no register to hold), only in
        // the CTA that applies the epilogue, and rides in the first X group behind the first
        // weight loads: no extra group, nothing ahead of the weight stream. (Issued first in its
        // own group, the fused epilogue measured up to +3.9% on 1024x4096 at M <= 8; here
        // <= 1% on the chosen configs.) The runtime's bias allocation is 16-byte aligned and n0
        // is a multiple of 16 elements; the N tail is zero-filled.
        if (s == 0 && blockIdx.y == SPLIT_K - 1 && threadIdx.x < TILE_N / 8) {
            const int n = n0 + (int)threadIdx.x * 8;
            const int bytes = max(0, min(8, N - n)) * 2;
            sf_cp_async16_partial(sf_smem_addr(&bias_s[threadIdx.x * 8]), bytes > 0 ? bias + n : bias, bytes);
        }
#endif
        sf_cp_async_commit();
    }
    for (int base = kp_begin + warp; base < kp_end; base += WARPS * STAGES) {
#pragma unroll
        for (int s = 0; s < STAGES; ++s) {
            const int kp = base + WARPS * s;
            if (kp < kp_end) compute_stage(ring[s], acc, xs0 + s * X_SLOT_BYTES, lane);
            const int nk = kp + WARPS * STAGES;
            if (nk < kp_end) load_stage(ring[s], xs0 + s * X_SLOT_BYTES, x, wvals, wmeta, rb0, nk, KS, KP, m0, M, K, lane);
            sf_cp_async_commit();
        }
    }

    // Sum the 4 warps' partial tiles. c0,c1 = feature g, tokens 2t,2t+1; c2,c3 = feature g+8.
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int i = 0; i < RB; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                const int nl = i * 16 + g + 8 * (r >> 1), ml = j * 8 + 2 * t + (r & 1);
                red[warp][ml * TILE_N + nl] = acc[i][j][r];
            }
#if SF_USES_BIAS
    sf_cp_async_wait<0>();  // this thread's bias chunk; the barrier publishes all of them
#endif
    __syncthreads();

    constexpr int PER_THREAD = TILE_ELEMS / THREADS;
    float v[PER_THREAD];
#pragma unroll
    for (int q = 0; q < PER_THREAD; ++q) {
        const int e = threadIdx.x + q * THREADS;
        v[q] = red[0][e] + red[1][e] + red[2][e] + red[3][e];
    }

    if (SPLIT_K > 1) {
        // Split-K hand-off. The reducer is the tile's last split (blockIdx.y == SPLIT_K - 1);
        // its peers have lower linear block indices, so the hardware dispatched them before it
        // (CTAs are dispatched in index order, which CUTLASS's serial split-K and stream-K
        // fix-up rely on too): the reducer may wait for them, they never wait for anything, so
        // this cannot deadlock. Slot s of the tile holds split s's partial, one fp32 per thread
        // and output (the same thread index on both sides), and is EMPTY outside a launch.
        // Every word is handed over by itself with relaxed gpu-scope accesses (single-copy
        // atomic), so the peers need no fence or counter; the old counter + last-arriver
        // protocol (fence, atomic, re-read) measured 8-17% slower on the H100.
        const int tile = blockIdx.z * gridDim.x + blockIdx.x;
        float* slots = workspace + (size_t)tile * (SPLIT_K - 1) * TILE_ELEMS + threadIdx.x;
        if (blockIdx.y != SPLIT_K - 1) {
#pragma unroll
            for (int q = 0; q < PER_THREAD; ++q) {
                // A NaN partial is stored as the canonical NaN, never as the sentinel.
                const float p = v[q] != v[q] ? __uint_as_float(0x7fffffffu) : v[q];
                sf_st_relaxed_f32(slots + (size_t)blockIdx.y * TILE_ELEMS + q * THREADS, p);
            }
            return;
        }
        // Outputs per batch: at most ~32 partials in registers at once. (PEERS is kept >= 1 so
        // that the SPLIT_K == 1 instantiation of this dead block still compiles.)
        constexpr int PEERS = SPLIT_K > 1 ? SPLIT_K - 1 : 1;
        constexpr int FIT = PEERS >= 32 ? 1 : PEERS >= 16 ? 2 : PEERS >= 8 ? 4 : PEERS >= 4 ? 8 : 16;
        constexpr int G = FIT < PER_THREAD ? FIT : PER_THREAD;
#pragma unroll
        for (int q0 = 0; q0 < PER_THREAD; q0 += G) {
            float w[PEERS][G];
#pragma unroll
            for (int s = 0; s < PEERS; ++s)
#pragma unroll
                for (int j = 0; j < G; ++j) w[s][j] = sf_ld_relaxed_f32(slots + (size_t)s * TILE_ELEMS + (q0 + j) * THREADS);
            // Re-read every slot still empty together: one round trip per retry, not one per
            // slot (polling slot by slot measured up to 3x slower with 16-32 splits).
            for (;;) {
                bool empty = false;
#pragma unroll
                for (int s = 0; s < PEERS; ++s)
#pragma unroll
                    for (int j = 0; j < G; ++j) empty |= __float_as_uint(w[s][j]) == SF_WS_EMPTY;
                if (!empty) break;
#pragma unroll
                for (int s = 0; s < PEERS; ++s)
#pragma unroll
                    for (int j = 0; j < G; ++j)
                        if (__float_as_uint(w[s][j]) == SF_WS_EMPTY)
                            w[s][j] = sf_ld_relaxed_f32(slots + (size_t)s * TILE_ELEMS + (q0 + j) * THREADS);
            }
            // Fixed summation order (split 0 first, the reducer's own last): results do not
            // depend on timing.
#pragma unroll
            for (int j = 0; j < G; ++j) {
                float sum = 0.0f;
#pragma unroll
                for (int s = 0; s < PEERS; ++s) sum += w[s][j];
                v[q0 + j] = sum + v[q0 + j];
            }
#pragma unroll
            for (int s = 0; s < PEERS; ++s)
#pragma unroll
                for (int j = 0; j < G; ++j)
                    sf_st_relaxed_f32(slots + (size_t)s * TILE_ELEMS + (q0 + j) * THREADS, __uint_as_float(SF_WS_EMPTY));
        }
    }

    // The epilogue of every output first, then the stores: independent math the scheduler can
    // overlap (per-output compute-then-store measured up to +2.5% at M = 16 on the H100; this
    // tail runs after the last split arrives, on the critical path). Row-major Y: consecutive
    // threads write consecutive features of one token.
    sf_t out[PER_THREAD];
#pragma unroll
    for (int q = 0; q < PER_THREAD; ++q) {
        const float bv = SF_USES_BIAS ? sf_to_float(bias_s[(threadIdx.x + q * THREADS) % TILE_N]) : 0.0f;
        out[q] = sf_from_float(SF_EPILOGUE(v[q], bv));
    }
#pragma unroll
    for (int q = 0; q < PER_THREAD; ++q) {
        const int e = threadIdx.x + q * THREADS;
        const int m = m0 + e / TILE_N, n = n0 + e % TILE_N;
        if (m < M && n < N) y[(size_t)m * N + n] = out[q];
    }
}
