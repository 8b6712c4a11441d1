// Shared device helpers of every SparseFlow kernel family: element type, the sparse MMA,
// ldmatrix, cp.async and streaming loads. Inline PTX only, so NVRTC needs no CUDA headers.
//
// Spliced before this file by the code generator: SF_DTYPE_F16 or SF_DTYPE_BF16.
#pragma once

// NVRTC ships no cuda_fp16.h / cuda_bf16.h, so the element type is a 16-bit storage struct
// with PTX conversions (the kernel ABI only sees pointers: __half / __nv_bfloat16 are the same bits).
struct __align__(2) sf_t {
    unsigned short bits;
};

#if defined(SF_DTYPE_F16)
#define SF_MMA_TYPE "f16"
__device__ __forceinline__ float sf_to_float(sf_t v) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.bits));
    return f;
}
__device__ __forceinline__ sf_t sf_from_float(float f) {
    sf_t v;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(v.bits) : "f"(f));
    return v;
}
#elif defined(SF_DTYPE_BF16)
#define SF_MMA_TYPE "bf16"
__device__ __forceinline__ float sf_to_float(sf_t v) { return __int_as_float(((int)v.bits) << 16); }
__device__ __forceinline__ sf_t sf_from_float(float f) {
    sf_t v;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(v.bits) : "f"(f));
    return v;
}
#else
#error "define SF_DTYPE_F16 or SF_DTYPE_BF16"
#endif

typedef unsigned int u32;
typedef unsigned char u8;

// sm_90 ptxas asks for ::ordered_metadata; SparseFlow's metadata codes are always one of the
// six increasing pairs, valid for both forms (kernels/README.md, "Sparse MMA facts").
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define SF_MMA_SP "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32."
#else
#define SF_MMA_SP "mma.sp.sync.aligned.m16n8k32.row.col.f32."
#endif

// D += A(16x32, 2:4, compressed 16x16) * B(32x8). `sel` chooses which thread pair of each
// quad supplies the metadata register (0: t=0,1; 1: t=2,3).
template <int SEL>
__device__ __forceinline__ void sf_mma_sp(float (&d)[4], const u32 (&a)[4], const u32 (&b)[4], u32 meta) {
    asm volatile(SF_MMA_SP SF_MMA_TYPE "." SF_MMA_TYPE ".f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9,%10,%11}, {%0,%1,%2,%3}, %12, %13;\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]),
                   "r"(meta), "n"(SEL));
}

__device__ __forceinline__ u32 sf_smem_addr(const void* p) {
    return static_cast<u32>(__cvta_generic_to_shared(p));
}

// Four 8x8 b16 matrices; lane i gives the row address of row (i & 7) of matrix (i >> 3).
__device__ __forceinline__ void sf_ldmatrix_x4(u32 (&r)[4], u32 addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

__device__ __forceinline__ uint4 sf_lds128(u32 addr) {
    uint4 v;
    asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];\n" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(addr));
    return v;
}

__device__ __forceinline__ u32 sf_lds32(u32 addr) {
    u32 v;
    asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(v) : "r"(addr));
    return v;
}

// cp.async with zero fill: src_bytes = 0 writes zeros and reads nothing.
__device__ __forceinline__ void sf_cp_async16(u32 dst, const void* src, bool pred) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(pred ? 16 : 0));
}
// As sf_cp_async16, but copies only the first `src_bytes` (0..16) and zero-fills the rest.
__device__ __forceinline__ void sf_cp_async16_partial(u32 dst, const void* src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void sf_cp_async8(u32 dst, const void* src, bool pred) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(dst), "l"(src), "r"(pred ? 8 : 0));
}
__device__ __forceinline__ void sf_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void sf_cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// Weight streaming: read once per launch, so keep it out of L1 (ptxas on CUDA 13 rejects
// .L2::evict_first on 128-bit loads; L1::no_allocate is the accepted form).
__device__ __forceinline__ uint4 sf_ldg_stream128(const void* p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}
__device__ __forceinline__ u32 sf_ldg_stream32(const void* p) {
    u32 v;
    asm volatile("ld.global.nc.L1::no_allocate.u32 %0, [%1];\n" : "=r"(v) : "l"(p));
    return v;
}

// Writes a [TM tokens][TN features] output tile staged in shared memory (rows STRIDE elements
// apart) to row-major Y: 16-byte stores where N allows, predicated on M and N. Thread `tid` of
// the NT taking part handles every NT-th 8-element chunk. The sm80 and sm90 epilogues share it.
template <int TM, int TN, int STRIDE, int NT>
__device__ __forceinline__ void sf_store_y_tile(sf_t* __restrict__ y, const sf_t* ys, int m0, int n0, int M, int N,
                                                int tid) {
    const bool vec_ok = (N & 7) == 0;
    for (int c = tid; c < TM * (TN / 8); c += NT) {
        const int ml = c / (TN / 8), nl = (c % (TN / 8)) * 8;
        const int m = m0 + ml, n = n0 + nl;
        if (m >= M) continue;
        const sf_t* src = ys + ml * STRIDE + nl;
        sf_t* dst = y + (size_t)m * N + n;
        if (vec_ok && n + 8 <= N) {
            *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
        } else {
            for (int q = 0; q < 8 && n + q < N; ++q) dst[q] = src[q];
        }
    }
}

__device__ __forceinline__ float sf_load_bias(const sf_t* bias, int n) {
#if SF_USES_BIAS
    return sf_to_float(bias[n]);
#else
    (void)bias;
    (void)n;
    return 0.0f;
#endif
}

// Programmatic dependent launch (sm_90+; the runtime launches with programmatic stream
// serialization there): the CTA may start before the previous kernel on the stream has
// finished, and this waits until it has (and its memory is visible). Every kernel calls it
// before its first memory access. Without the launch attribute, and before sm_90, it returns
// at once.
__device__ __forceinline__ void sf_wait_prior_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// Split-K hand-off (decode family): a workspace word holds SF_WS_EMPTY (every bit set — a
// NaN pattern arithmetic never produces: GPU NaN results are 0x7fffffff) until a peer CTA stores
// its partial there. Relaxed gpu-scope accesses are single-copy atomic and go to L2, so a
// reader sees either the sentinel or the whole partial, never a stale L1 copy.
#define SF_WS_EMPTY 0xffffffffu
__device__ __forceinline__ void sf_st_relaxed_f32(float* p, float v) {
    asm volatile("st.relaxed.gpu.global.f32 [%0], %1;\n" ::"l"(p), "f"(v) : "memory");
}
__device__ __forceinline__ float sf_ld_relaxed_f32(const float* p) {
    float v;
    asm volatile("ld.relaxed.gpu.global.f32 %0, [%1];\n" : "=f"(v) : "l"(p) : "memory");
    return v;
}

// Upload layout (crates/codegen/src/layout.rs, kernels/README.md): per 16-row block `rb` and
// 32-wide K step `ks`, 512 bytes of values in lane order (16 bytes = the lane's four A
// registers); per 16-row block and 64-wide K pair `kp`, 128 bytes of metadata (one u32 per
// lane; selector s = t >> 1 picks the K step 2kp + s).
#define SF_VAL_BLOCK_BYTES 512
#define SF_META_BLOCK_BYTES 128
