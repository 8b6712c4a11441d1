// Family "sm80": Y[M,N] = epilogue(X[M,K] * W^T + bias) with W 2:4-sparse, for any M.
//
// mma.sp.m16n8k32: W is the sparse A operand (16 out-features per MMA), X the dense B operand
// (8 tokens per MMA), so each CTA computes a TILE_N x TILE_M tile of Y^T and writes it back
// transposed. W arrives pre-shuffled in fragment order (kernels/README.md): a warp's A
// fragment for one 16x32 block is 512 contiguous bytes, 16 per lane, so shared memory holds it
// verbatim and each lane reads its four registers with one conflict-free 128-bit load. X goes
// through a STAGES-deep cp.async ring with an XOR swizzle and is read with ldmatrix.x4.
//
// Spliced by crates/codegen: SF_KERNEL_NAME, SF_DTYPE_*, TILE_M, TILE_N, TILE_K, WARPS, STAGES,
// SF_USES_BIAS, SF_EPILOGUE(acc, bias).

#define THREADS (WARPS * 32)
#define WARPS_N 2
#define WARPS_M (WARPS / WARPS_N)
#define WT_N (TILE_N / WARPS_N)  // out-features per warp
#define WT_M (TILE_M / WARPS_M)  // tokens per warp
#define RBW (WT_N / 16)          // 16-row MMA blocks per warp
#define NTW (WT_M / 8)           // 8-token MMA columns per warp

static_assert(TILE_K == 64, "sm80 streams one 64-wide K pair per stage");
static_assert(WT_M % 8 == 0 && WT_N % 16 == 0, "warp tile must be whole MMAs");
static_assert(128 % TILE_N == 0, "upload pads N to 128; TILE_N must divide it");

// Shared memory per stage: A values, metadata, X (row = token, 128 bytes = 64 halves).
#define A_STAGE_BYTES (TILE_N / 16 * 2 * SF_VAL_BLOCK_BYTES)
#define M_STAGE_BYTES (TILE_N / 16 * SF_META_BLOCK_BYTES)
#define X_STAGE_BYTES (TILE_M * 128)
#define STAGE_BYTES (A_STAGE_BYTES + M_STAGE_BYTES + X_STAGE_BYTES)
// The output tile is staged in the (drained) pipeline buffers; +8 halves per row keeps rows
// 16-byte aligned and spreads the accumulator stores over banks.
#define Y_STRIDE (TILE_N + 8)
static_assert(TILE_M * Y_STRIDE * 2 <= STAGES * STAGE_BYTES, "output tile must fit the pipeline buffers");

// 16-byte chunk `ch` (0..7) of token row `row` lives at chunk ch ^ (row & 7): ldmatrix reads
// 8 rows of one chunk column, which then fall into 8 distinct bank groups.
__device__ __forceinline__ u32 x_swz(int row, int ch) { return row * 128 + ((ch ^ (row & 7)) << 4); }

__device__ __forceinline__ void load_stage(u32 st, const sf_t* __restrict__ x, const u8* __restrict__ wvals,
                                           const u8* __restrict__ wmeta, int rb0, int m0, int kp, int KS, int KP,
                                           int M, int K) {
    const int tid = threadIdx.x;
    // A: per 16-row block the two K steps of this pair are 1024 contiguous bytes.
    for (int c = tid; c < TILE_N * 4; c += THREADS) {
        const int rb = c >> 6, rem = c & 63;
        const u8* src = wvals + ((size_t)(rb0 + rb) * KS + 2 * kp) * SF_VAL_BLOCK_BYTES + rem * 16;
        sf_cp_async16(st + rb * 1024 + rem * 16, src, true);
    }
    const u32 ms = st + A_STAGE_BYTES;
    for (int c = tid; c < TILE_N / 2; c += THREADS) {
        const int rb = c >> 3, rem = c & 7;
        const u8* src = wmeta + ((size_t)(rb0 + rb) * KP + kp) * SF_META_BLOCK_BYTES + rem * 16;
        sf_cp_async16(ms + rb * SF_META_BLOCK_BYTES + rem * 16, src, true);
    }
    const u32 xs = ms + M_STAGE_BYTES;
    const bool k8 = (K & 7) == 0;
    for (int c = tid; c < TILE_M * 8; c += THREADS) {
        const int row = c >> 3, ch = c & 7;
        const int m = m0 + row, kk = kp * 64 + ch * 8;
        const u32 dst = xs + x_swz(row, ch);
        if (k8) {
            const bool p = m < M && kk < K;
            sf_cp_async16(dst, p ? (const void*)(x + (size_t)m * K + kk) : (const void*)x, p);
        } else {
            // K % 8 == 4: rows are only 8-byte aligned; copy halves of the chunk separately.
            const bool p0 = m < M && kk < K, p1 = m < M && kk + 4 < K;
            sf_cp_async8(dst, p0 ? (const void*)(x + (size_t)m * K + kk) : (const void*)x, p0);
            sf_cp_async8(dst + 8, p1 ? (const void*)(x + (size_t)m * K + kk + 4) : (const void*)x, p1);
        }
    }
}

extern "C" __global__ void __launch_bounds__(THREADS) SF_KERNEL_NAME(
    const sf_t* __restrict__ x, const u8* __restrict__ wvals, const u8* __restrict__ wmeta,
    const sf_t* __restrict__ bias, sf_t* __restrict__ y, float* workspace, int M, int N, int K) {
    (void)workspace;
    extern __shared__ __align__(128) u8 smem[];
    const u32 smem0 = sf_smem_addr(smem);

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int wn = warp % WARPS_N, wm = warp / WARPS_N;
    const int n0 = blockIdx.x * TILE_N, m0 = blockIdx.y * TILE_M;
    const int rb0 = n0 / 16;
    const int KP = (K + 63) / 64, KS = 2 * KP;
    sf_wait_prior_grid();  // programmatic dependent launch: the previous kernel is done after this

    float acc[RBW][NTW][4];
#pragma unroll
    for (int i = 0; i < RBW; ++i)
#pragma unroll
        for (int j = 0; j < NTW; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.0f;

#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < KP) load_stage(smem0 + s * STAGE_BYTES, x, wvals, wmeta, rb0, m0, s, KS, KP, M, K);
        sf_cp_async_commit();
    }

    for (int kp = 0; kp < KP; ++kp) {
        sf_cp_async_wait<STAGES - 2>();
        __syncthreads();  // stage kp landed for everyone; stage kp-1 is free to refill
        {
            const int pf = kp + STAGES - 1;
            if (pf < KP) load_stage(smem0 + (pf % STAGES) * STAGE_BYTES, x, wvals, wmeta, rb0, m0, pf, KS, KP, M, K);
            sf_cp_async_commit();
        }
        const u32 st = smem0 + (kp % STAGES) * STAGE_BYTES;
        const u32 ms = st + A_STAGE_BYTES, xs = ms + M_STAGE_BYTES;
        u32 meta[RBW];
#pragma unroll
        for (int i = 0; i < RBW; ++i) meta[i] = sf_lds32(ms + (wn * RBW + i) * SF_META_BLOCK_BYTES + lane * 4);
#pragma unroll
        for (int ks = 0; ks < 2; ++ks) {
            u32 b[NTW][4];
#pragma unroll
            for (int j = 0; j < NTW; ++j) {
                const int row = wm * WT_M + j * 8 + (lane & 7);
                sf_ldmatrix_x4(b[j], xs + x_swz(row, ks * 4 + (lane >> 3)));
            }
#pragma unroll
            for (int i = 0; i < RBW; ++i) {
                const uint4 av = sf_lds128(st + ((wn * RBW + i) * 2 + ks) * SF_VAL_BLOCK_BYTES + lane * 16);
                const u32 a[4] = {av.x, av.y, av.z, av.w};
#pragma unroll
                for (int j = 0; j < NTW; ++j) {
                    if (ks == 0)
                        sf_mma_sp<0>(acc[i][j], a, b[j], meta[i]);
                    else
                        sf_mma_sp<1>(acc[i][j], a, b[j], meta[i]);
                }
            }
        }
    }
    sf_cp_async_wait<0>();
    __syncthreads();  // every warp is done with the pipeline buffers: reuse them for Y

    // Epilogue in fp32 on the accumulators (c0,c1 = feature g, tokens 2t,2t+1; c2,c3 = g+8),
    // staged as a row-major [token][feature] tile so Y is written with 16-byte stores.
    sf_t* ys = reinterpret_cast<sf_t*>(smem);
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int i = 0; i < RBW; ++i) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int nl = wn * WT_N + i * 16 + g + 8 * h;
            const float bv = n0 + nl < N ? sf_load_bias(bias, n0 + nl) : 0.0f;
#pragma unroll
            for (int j = 0; j < NTW; ++j) {
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int ml = wm * WT_M + j * 8 + 2 * t + e;
                    const float a = acc[i][j][2 * h + e];
                    ys[ml * Y_STRIDE + nl] = sf_from_float(SF_EPILOGUE(a, bv));
                }
            }
        }
    }
    __syncthreads();
    sf_store_y_tile<TILE_M, TILE_N, Y_STRIDE, THREADS>(y, ys, m0, n0, M, N, threadIdx.x);
}
