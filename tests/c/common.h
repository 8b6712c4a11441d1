/*
 * Shared helpers of the C ABI tests: checks, fp16/bf16 bit conversions, a deterministic
 * generator, the float64 reference, and memory on the tested device.
 *
 * Every program takes an optional device argument: -1 (default) = CPU backend with host
 * buffers; 0, 1, ... = that CUDA device with device buffers. GPU support is compiled in with
 * -DSPARSEFLOW_TEST_CUDA; it reaches the CUDA driver API through dlopen("libcuda.so.1"), so it
 * needs no CUDA headers or link-time libraries (scripts/device/capi_check.sh runs it).
 */
#ifndef SPARSEFLOW_TEST_COMMON_H
#define SPARSEFLOW_TEST_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sparseflow.h"

#ifdef SPARSEFLOW_TEST_CUDA
#include <dlfcn.h>
#endif

/* ---- checks ------------------------------------------------------------------------------ */

static int g_checks = 0;
static int g_failures = 0;

#define EXPECT(cond, ...)                                                              \
    do {                                                                               \
        g_checks++;                                                                    \
        if (!(cond)) {                                                                 \
            g_failures++;                                                              \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                       \
            fprintf(stderr, __VA_ARGS__);                                              \
            fprintf(stderr, "\n    last error: %s\n", sparseflow_last_error());        \
        }                                                                              \
    } while (0)

#define EXPECT_STATUS(call, want)                                                      \
    do {                                                                               \
        SparseFlowStatus st_ = (call);                                                 \
        EXPECT(st_ == (SparseFlowStatus)(want), "%s returned %s, expected %s", #call,  \
               sparseflow_status_string(st_),                                          \
               sparseflow_status_string((SparseFlowStatus)(want)));                    \
    } while (0)

/* The last error names the failing function and contains `needle`. */
#define EXPECT_MESSAGE(func, needle)                                                      \
    EXPECT(strncmp(sparseflow_last_error(), func ": ", strlen(func) + 2) == 0 &&          \
               strstr(sparseflow_last_error(), needle) != NULL,                           \
           "message should start with '%s: ' and mention '%s'", func, needle)

/* A call whose failure makes the rest of the program meaningless. */
#define REQUIRE_OK(call)                                                               \
    do {                                                                               \
        SparseFlowStatus st_ = (call);                                                 \
        if (st_ != SPARSEFLOW_STATUS_OK) {                                             \
            fprintf(stderr, "FATAL %s:%d: %s returned %s: %s\n", __FILE__, __LINE__,   \
                    #call, sparseflow_status_string(st_), sparseflow_last_error());    \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

static inline int finish(const char *program) {
    printf("%s: %d checks, %d failed\n", program, g_checks, g_failures);
    return g_failures == 0 ? 0 : 1;
}

/* ---- element types ----------------------------------------------------------------------- */

static inline uint32_t f32_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    return x;
}

static inline float bits_f32(uint32_t x) {
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

/* float -> IEEE half, round to nearest even (finite inputs). */
static inline uint16_t f32_to_f16(float f) {
    uint32_t x = f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    int32_t exp = (int32_t)((x >> 23) & 0xffu) - 127 + 15;
    uint32_t mant = x & 0x7fffffu;
    if (exp >= 31) return (uint16_t)(sign | 0x7c00u);
    if (exp <= 0) {
        uint32_t shift, h, rem, halfway;
        if (exp < -10) return (uint16_t)sign;
        mant |= 0x800000u;
        shift = (uint32_t)(14 - exp);
        h = mant >> shift;
        rem = mant & ((1u << shift) - 1u);
        halfway = 1u << (shift - 1u);
        if (rem > halfway || (rem == halfway && (h & 1u))) h++;
        return (uint16_t)(sign | h);
    } else {
        uint32_t h = sign | ((uint32_t)exp << 10) | (mant >> 13);
        uint32_t rem = mant & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
        return (uint16_t)h;
    }
}

static inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0) {
        float f = ldexpf((float)mant, -24);
        return sign ? -f : f;
    }
    if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
    return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

static inline uint16_t f32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

static inline float bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

static inline size_t dtype_size(SparseFlowDType dt) { return dt == SPARSEFLOW_DTYPE_F32 ? 4 : 2; }

static inline const char *dtype_name(SparseFlowDType dt) {
    return dt == SPARSEFLOW_DTYPE_F32 ? "f32" : dt == SPARSEFLOW_DTYPE_F16 ? "f16" : "bf16";
}

/* Stores v at element i of a buffer of dtype dt. */
static inline void put(void *buf, SparseFlowDType dt, size_t i, float v) {
    if (dt == SPARSEFLOW_DTYPE_F32)
        ((float *)buf)[i] = v;
    else if (dt == SPARSEFLOW_DTYPE_F16)
        ((uint16_t *)buf)[i] = f32_to_f16(v);
    else
        ((uint16_t *)buf)[i] = f32_to_bf16(v);
}

static inline double get(const void *buf, SparseFlowDType dt, size_t i) {
    if (dt == SPARSEFLOW_DTYPE_F32) return ((const float *)buf)[i];
    if (dt == SPARSEFLOW_DTYPE_F16) return f16_to_f32(((const uint16_t *)buf)[i]);
    return bf16_to_f32(((const uint16_t *)buf)[i]);
}

/* ---- data and the float64 reference ------------------------------------------------------ */

/* Multiples of 1/32 in [-2, 2]: exact in f32, f16 and bf16, so the reference sees exactly the
 * values the library does, and equal magnitudes are common (exercises prune tie-breaking). */
static inline float next_value(uint64_t *state) {
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((int)((*state >> 33) % 129u) - 64) / 32.0f;
}

static inline void *random_buffer(SparseFlowDType dt, size_t len, uint64_t seed) {
    void *buf = malloc(len * dtype_size(dt) + 1);
    size_t i;
    for (i = 0; i < len; i++) put(buf, dt, i, next_value(&seed));
    return buf;
}

/* Magnitude pruning as the library documents it: keep the two largest |w| of each group of 4
 * along K, ties to the lower index. Returns a new float64 [n, k] matrix. */
static inline double *prune_reference(const void *w, SparseFlowDType dt, int64_t n, int64_t k) {
    double *out = calloc((size_t)(n * k), sizeof(double));
    int64_t g, i;
    for (g = 0; g < n * k; g += 4) {
        int a = 0, b = -1;
        for (i = 1; i < 4; i++)
            if (fabs(get(w, dt, (size_t)(g + i))) > fabs(get(w, dt, (size_t)(g + a)))) a = (int)i;
        for (i = 0; i < 4; i++)
            if (i != a && (b < 0 || fabs(get(w, dt, (size_t)(g + i))) >
                                        fabs(get(w, dt, (size_t)(g + b)))))
                b = (int)i;
        out[g + a] = get(w, dt, (size_t)(g + a));
        out[g + b] = get(w, dt, (size_t)(g + b));
    }
    return out;
}

/* ---- the epilogue table, read from the library ------------------------------------------ */

/* How many epilogues the library knows (values 0 .. count-1): sparseflow_epilogue_info fails
   past the last one. */
static inline uint32_t epilogue_count(void) {
    const char *name, *activation;
    int32_t uses_bias;
    uint32_t e = 0;
    while (sparseflow_epilogue_info((SparseFlowEpilogue)e, &name, &activation, &uses_bias) ==
           SPARSEFLOW_STATUS_OK)
        e++;
    return e;
}

static inline int epilogue_has_bias(uint32_t e) {
    const char *name, *activation;
    int32_t uses_bias;
    REQUIRE_OK(sparseflow_epilogue_info((SparseFlowEpilogue)e, &name, &activation, &uses_bias));
    return uses_bias;
}

/* This test's own float64 definition of each activation, by the table's name: an independent
   check of the library's. An activation the library has and this function lacks stops the
   program, so a new one cannot go untested. */
static inline double apply_activation(const char *activation, double x) {
    if (strcmp(activation, "none") == 0) return x;
    if (strcmp(activation, "relu") == 0) return x > 0 ? x : 0;
    if (strcmp(activation, "silu") == 0) return x / (1.0 + exp(-x));
    if (strcmp(activation, "gelu") == 0) return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    if (strcmp(activation, "gelu_tanh") == 0)
        return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
    if (strcmp(activation, "relu2") == 0) return x > 0 ? x * x : 0;
    fprintf(stderr, "FATAL: no C reference for activation '%s': add it to tests/c/common.h\n",
            activation);
    exit(1);
}

/* y[m, n] = epilogue(x[m, k] . W^T + bias) in float64. */
static inline double *gemm_reference(const void *x, const double *w, const void *bias,
                              SparseFlowDType dt, int64_t m, int64_t n, int64_t k, uint32_t e) {
    double *y = malloc((size_t)(m * n) * sizeof(double));
    const char *name, *activation;
    int32_t uses_bias;
    int64_t i, j, l;
    REQUIRE_OK(sparseflow_epilogue_info((SparseFlowEpilogue)e, &name, &activation, &uses_bias));
    for (i = 0; i < m; i++)
        for (j = 0; j < n; j++) {
            double acc = 0;
            for (l = 0; l < k; l++) acc += get(x, dt, (size_t)(i * k + l)) * w[j * k + l];
            if (uses_bias) acc += get(bias, dt, (size_t)j);
            y[i * n + j] = apply_activation(activation, acc);
        }
    return y;
}

/* Largest |got - want| / (atol + rtol |want|) over the output; <= 1 passes. */
static inline double worst_error(const void *got, const double *want, SparseFlowDType dt, size_t len) {
    double tol = dt == SPARSEFLOW_DTYPE_F32 ? 1e-4 : dt == SPARSEFLOW_DTYPE_F16 ? 5e-3 : 2e-2;
    double worst = 0;
    size_t i;
    for (i = 0; i < len; i++) {
        double g = get(got, dt, i), r = fabs(g - want[i]) / (tol + tol * fabs(want[i]));
        if (!(r <= worst)) worst = r; /* NaN counts as worst */
    }
    return worst;
}

/* ---- memory on the tested device --------------------------------------------------------- */

static int g_device = -1;

#ifdef SPARSEFLOW_TEST_CUDA
typedef int CUresult;
static struct {
    CUresult (*init)(unsigned);
    CUresult (*device_get)(int *, int);
    CUresult (*primary_retain)(void **, int);
    CUresult (*ctx_set_current)(void *);
    CUresult (*mem_alloc)(unsigned long long *, size_t);
    CUresult (*mem_free)(unsigned long long);
    CUresult (*htod)(unsigned long long, const void *, size_t);
    CUresult (*dtoh)(void *, unsigned long long, size_t);
    CUresult (*ctx_sync)(void);
    CUresult (*stream_create)(void **, unsigned);
    CUresult (*stream_sync)(void *);
    CUresult (*stream_destroy)(void *);
    void *primary;
} cu;

static inline void cu_sym(void *lib, const char *name, void *fn_slot, size_t fn_size) {
    void *sym = dlsym(lib, name);
    if (!sym) {
        fprintf(stderr, "FATAL: libcuda has no %s\n", name);
        exit(1);
    }
    memcpy(fn_slot, &sym, fn_size); /* POSIX: data and function pointers share a size */
}
#define CU_SYM(lib, field, name) cu_sym(lib, name, &cu.field, sizeof cu.field)

static inline void cu_check(CUresult r, const char *what) {
    if (r != 0) {
        fprintf(stderr, "FATAL: %s failed with CUresult %d\n", what, r);
        exit(1);
    }
}

/* Makes the device's primary context (the one SparseFlow uses) current on this thread. */
static inline void device_thread_init(void) {
    if (g_device >= 0) cu_check(cu.ctx_set_current(cu.primary), "cuCtxSetCurrent");
}

static inline void device_init(int device) {
    void *lib;
    int dev;
    g_device = device;
    if (device < 0) return;
    lib = dlopen("libcuda.so.1", RTLD_NOW);
    if (!lib) {
        fprintf(stderr, "FATAL: cannot load libcuda.so.1: %s\n", dlerror());
        exit(1);
    }
    CU_SYM(lib, init, "cuInit");
    CU_SYM(lib, device_get, "cuDeviceGet");
    CU_SYM(lib, primary_retain, "cuDevicePrimaryCtxRetain");
    CU_SYM(lib, ctx_set_current, "cuCtxSetCurrent");
    CU_SYM(lib, mem_alloc, "cuMemAlloc_v2");
    CU_SYM(lib, mem_free, "cuMemFree_v2");
    CU_SYM(lib, htod, "cuMemcpyHtoD_v2");
    CU_SYM(lib, dtoh, "cuMemcpyDtoH_v2");
    CU_SYM(lib, ctx_sync, "cuCtxSynchronize");
    CU_SYM(lib, stream_create, "cuStreamCreate");
    CU_SYM(lib, stream_sync, "cuStreamSynchronize");
    CU_SYM(lib, stream_destroy, "cuStreamDestroy_v2");
    cu_check(cu.init(0), "cuInit");
    cu_check(cu.device_get(&dev, device), "cuDeviceGet");
    cu_check(cu.primary_retain(&cu.primary, dev), "cuDevicePrimaryCtxRetain");
    device_thread_init();
}

static inline void *mem_alloc(size_t bytes) {
    unsigned long long p = 0;
    if (g_device < 0) return malloc(bytes);
    cu_check(cu.mem_alloc(&p, bytes), "cuMemAlloc");
    return (void *)(uintptr_t)p;
}

static inline void mem_free(void *p) {
    if (g_device < 0)
        free(p);
    else
        cu_check(cu.mem_free((unsigned long long)(uintptr_t)p), "cuMemFree");
}

static inline void mem_upload(void *dst, const void *src, size_t bytes) {
    if (g_device < 0)
        memcpy(dst, src, bytes);
    else
        cu_check(cu.htod((unsigned long long)(uintptr_t)dst, src, bytes), "cuMemcpyHtoD");
}

/* Waits for all queued work on the device first (runs are asynchronous on a GPU). */
static inline void mem_download(void *dst, const void *src, size_t bytes) {
    if (g_device < 0) {
        memcpy(dst, src, bytes);
        return;
    }
    cu_check(cu.ctx_sync(), "cuCtxSynchronize");
    cu_check(cu.dtoh(dst, (unsigned long long)(uintptr_t)src, bytes), "cuMemcpyDtoH");
}

/* A stream to run on: NULL on the CPU backend (which requires NULL), a new CUstream on a GPU. */
static inline void *stream_create(void) {
    void *s = NULL;
    if (g_device >= 0) cu_check(cu.stream_create(&s, 0), "cuStreamCreate");
    return s;
}

static inline void stream_sync(void *s) {
    if (g_device >= 0) cu_check(cu.stream_sync(s), "cuStreamSynchronize");
}

static inline void stream_destroy(void *s) {
    if (g_device >= 0) cu_check(cu.stream_destroy(s), "cuStreamDestroy");
}
#else
static inline void device_thread_init(void) {}

static inline void device_init(int device) {
    g_device = device;
    if (device >= 0) {
        fprintf(stderr, "FATAL: device %d requested, but this test was built without "
                        "-DSPARSEFLOW_TEST_CUDA (see scripts/device/capi_check.sh)\n",
                device);
        exit(2);
    }
}

static inline void *mem_alloc(size_t bytes) { return malloc(bytes); }
static inline void mem_free(void *p) { free(p); }
static inline void mem_upload(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
static inline void mem_download(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
static inline void *stream_create(void) { return NULL; }
static inline void stream_sync(void *s) { (void)s; }
static inline void stream_destroy(void *s) { (void)s; }
#endif

/* Parses the optional device argument, checks the ABI version, prepares device memory. */
static inline void test_init(int argc, char **argv) {
    uint32_t v = sparseflow_abi_version();
    int device = argc > 1 ? atoi(argv[1]) : -1;
    /* The library's minor must be >= the header's (+1 on both sides keeps -Wtype-limits quiet
     * while MINOR is 0). */
    if (v >> 16 != SPARSEFLOW_ABI_VERSION_MAJOR ||
        (v & 0xffffu) + 1u < (uint32_t)SPARSEFLOW_ABI_VERSION_MINOR + 1u) {
        fprintf(stderr, "FATAL: library ABI %u.%u, header %d.%d\n", v >> 16, v & 0xffffu,
                SPARSEFLOW_ABI_VERSION_MAJOR, SPARSEFLOW_ABI_VERSION_MINOR);
        exit(1);
    }
    device_init(device);
    printf("%s: device %d (%s), ABI %u.%u\n", argv[0], device, device < 0 ? "CPU backend" : "CUDA",
           v >> 16, v & 0xffffu);
}

#endif
