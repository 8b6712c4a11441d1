/*
 * Every error path of the C ABI: each must return its documented status, leave out-pointers
 * NULL, set a message for sparseflow_last_error(), and never crash.
 * Usage: errors [device]   (-1 = CPU backend, default; >= 0 needs -DSPARSEFLOW_TEST_CUDA)
 */
#define _DEFAULT_SOURCE /* mmap's MAP_ANONYMOUS / MAP_NORESERVE under -std=c99 */
#include "common.h"
#if defined(__linux__)
#include <sys/mman.h>
#endif

#define N 8
#define K 16

static void status_strings(void) {
    static const char *names[] = {
        "SPARSEFLOW_STATUS_OK",          "SPARSEFLOW_STATUS_INVALID_ARGUMENT",
        "SPARSEFLOW_STATUS_INVALID_HANDLE", "SPARSEFLOW_STATUS_NOT_2TO4",
        "SPARSEFLOW_STATUS_UNSUPPORTED", "SPARSEFLOW_STATUS_CUDA_ERROR",
        "SPARSEFLOW_STATUS_OUT_OF_MEMORY", "SPARSEFLOW_STATUS_INTERNAL"};
    uint32_t s;
    for (s = 0; s < 8; s++)
        EXPECT(strcmp(sparseflow_status_string(s), names[s]) == 0, "status %u is %s", s,
               sparseflow_status_string(s));
    EXPECT(strcmp(sparseflow_status_string(8), "SPARSEFLOW_STATUS_UNKNOWN") == 0, "unknown 8");
    EXPECT(strcmp(sparseflow_status_string(0xffffffffu), "SPARSEFLOW_STATUS_UNKNOWN") == 0,
           "unknown max");
    EXPECT(SPARSEFLOW_STATUS_INTERNAL == 7 && SPARSEFLOW_EPILOGUE_BIAS_GELU == 7 &&
               SPARSEFLOW_DTYPE_F32 == 2,
           "enum values are the documented ABI");
    EXPECT(sparseflow_abi_version() == ((SPARSEFLOW_ABI_VERSION_MAJOR << 16) |
                                        SPARSEFLOW_ABI_VERSION_MINOR),
           "abi version %#x", sparseflow_abi_version());
    {
        /* sparseflow_epilogue_info (ABI 1.2) describes the header's values from the library's
           table, and refuses what is not in it. */
        const char *name = NULL, *activation = NULL;
        int32_t uses_bias = -1;
        EXPECT_STATUS(sparseflow_epilogue_info(SPARSEFLOW_EPILOGUE_BIAS_RELU2, &name, &activation,
                                               &uses_bias),
                      SPARSEFLOW_STATUS_OK);
        EXPECT(name && activation && strcmp(name, "bias_relu2") == 0 &&
                   strcmp(activation, "relu2") == 0 && uses_bias == 1,
               "bias_relu2 info: %s %s %d", name ? name : "(null)",
               activation ? activation : "(null)", uses_bias);
        EXPECT_STATUS(sparseflow_epilogue_info(SPARSEFLOW_EPILOGUE_NONE, &name, &activation,
                                               &uses_bias),
                      SPARSEFLOW_STATUS_OK);
        EXPECT(strcmp(name, "none") == 0 && strcmp(activation, "none") == 0 && uses_bias == 0,
               "none info");
        EXPECT_STATUS(sparseflow_epilogue_info((SparseFlowEpilogue)epilogue_count(), &name,
                                               &activation, &uses_bias),
                      SPARSEFLOW_STATUS_INVALID_ARGUMENT);
        EXPECT_MESSAGE("sparseflow_epilogue_info", "unknown epilogue");
        EXPECT_STATUS(sparseflow_epilogue_info(SPARSEFLOW_EPILOGUE_RELU, NULL, &activation,
                                               &uses_bias),
                      SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    }
}

static void context_errors(void) {
    SparseFlowContext ctx = (SparseFlowContext)(uintptr_t)0x1234;
    int local = 0;
    EXPECT_STATUS(sparseflow_context_create(g_device, NULL), SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_MESSAGE("sparseflow_context_create", "NULL");
    EXPECT_STATUS(sparseflow_context_create(-2, &ctx), SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT(ctx == NULL, "out is set to NULL on failure");
    EXPECT_MESSAGE("sparseflow_context_create", "-2");
    /* A device that does not exist: INVALID_ARGUMENT with a driver, CUDA_ERROR without one. */
    ctx = (SparseFlowContext)(uintptr_t)0x1234;
    {
        SparseFlowStatus s = sparseflow_context_create(4096, &ctx);
        EXPECT(s == SPARSEFLOW_STATUS_INVALID_ARGUMENT || s == SPARSEFLOW_STATUS_CUDA_ERROR,
               "device 4096 returned %s", sparseflow_status_string(s));
        EXPECT(ctx == NULL && strlen(sparseflow_last_error()) > 0, "device 4096 explained");
        printf("  device 4096: %s\n", sparseflow_last_error());
    }
    EXPECT_STATUS(sparseflow_context_destroy(NULL), SPARSEFLOW_STATUS_INVALID_HANDLE);
    EXPECT_MESSAGE("sparseflow_context_destroy", "NULL");
    EXPECT_STATUS(sparseflow_context_destroy((SparseFlowContext)(void *)&local),
                  SPARSEFLOW_STATUS_INVALID_HANDLE);
    EXPECT_MESSAGE("sparseflow_context_destroy", "not a SparseFlow context handle");
    REQUIRE_OK(sparseflow_context_create(g_device, &ctx));
    EXPECT_STATUS(sparseflow_context_destroy(ctx), SPARSEFLOW_STATUS_OK);
    EXPECT_STATUS(sparseflow_context_destroy(ctx), SPARSEFLOW_STATUS_INVALID_HANDLE);
    EXPECT_MESSAGE("sparseflow_context_destroy", "already destroyed");
}

static void create_errors(SparseFlowContext ctx, SparseFlowKernel some_kernel) {
    SparseFlowDType dt = SPARSEFLOW_DTYPE_F16;
    void *w = random_buffer(dt, N * K, 1), *bias = random_buffer(dt, N, 2);
    SparseFlowKernel k = NULL;
    SparseFlowContext dead = NULL;
    int local = 0;
    int64_t values_len = 0, meta_len = 0;
    void *values, *meta;

#define CREATE(c, dtype, n, kk, wp, bp, e)                                                 \
    (k = (SparseFlowKernel)(uintptr_t)0x1234,                                             \
     sparseflow_kernel_create_from_dense(c, dtype, n, kk, wp, bp, e, &k))
#define EXPECT_CREATE(c, dtype, n, kk, wp, bp, e, want, needle)                            \
    do {                                                                                  \
        EXPECT_STATUS(CREATE(c, dtype, n, kk, wp, bp, e), want);                           \
        EXPECT(k == NULL, "out is set to NULL on failure");                               \
        EXPECT_MESSAGE("sparseflow_kernel_create_from_dense", needle);                    \
    } while (0)

    /* handles */
    EXPECT_CREATE(NULL, dt, N, K, w, NULL, 0, SPARSEFLOW_STATUS_INVALID_HANDLE, "NULL");
    EXPECT_CREATE((SparseFlowContext)(void *)&local, dt, N, K, w, NULL, 0,
                  SPARSEFLOW_STATUS_INVALID_HANDLE, "not a SparseFlow context");
    EXPECT_CREATE((SparseFlowContext)(void *)some_kernel, dt, N, K, w, NULL, 0,
                  SPARSEFLOW_STATUS_INVALID_HANDLE, "not a SparseFlow context");
    REQUIRE_OK(sparseflow_context_create(g_device, &dead));
    REQUIRE_OK(sparseflow_context_destroy(dead));
    EXPECT_CREATE(dead, dt, N, K, w, NULL, 0, SPARSEFLOW_STATUS_INVALID_HANDLE,
                  "already destroyed");
    /* out-pointer */
    EXPECT_STATUS(sparseflow_kernel_create_from_dense(ctx, dt, N, K, w, NULL, 0, NULL),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_kernel_create(ctx, dt, N, K, w, w, NULL, 0, NULL),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    /* sizes */
    EXPECT_CREATE(ctx, dt, 0, K, w, NULL, 0, SPARSEFLOW_STATUS_INVALID_ARGUMENT, "positive");
    EXPECT_CREATE(ctx, dt, -3, K, w, NULL, 0, SPARSEFLOW_STATUS_INVALID_ARGUMENT, "-3");
    EXPECT_CREATE(ctx, dt, N, -16, w, NULL, 0, SPARSEFLOW_STATUS_INVALID_ARGUMENT, "-16");
    EXPECT_CREATE(ctx, dt, N, 6, w, NULL, 0, SPARSEFLOW_STATUS_INVALID_ARGUMENT, "multiple of 4");
    EXPECT_CREATE(ctx, dt, INT64_MAX / 2, 8, w, NULL, 0, SPARSEFLOW_STATUS_INVALID_ARGUMENT,
                  "overflow");
    EXPECT_CREATE(ctx, dt, (int64_t)1 << 32, (int64_t)1 << 32, w, NULL, 0,
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT, "overflow");
    /* enums out of range */
    EXPECT_CREATE(ctx, (SparseFlowDType)3, N, K, w, NULL, 0, SPARSEFLOW_STATUS_INVALID_ARGUMENT,
                  "unknown dtype 3");
    EXPECT_CREATE(ctx, (SparseFlowDType)0xffffffffu, N, K, w, NULL, 0,
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT, "unknown dtype");
    EXPECT_CREATE(ctx, dt, N, K, w, NULL, (SparseFlowEpilogue)epilogue_count(),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT, "unknown epilogue");
    EXPECT_CREATE(ctx, dt, N, K, w, NULL, (SparseFlowEpilogue)0x80000000u,
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT, "unknown epilogue");
    /* data pointers */
    EXPECT_CREATE(ctx, dt, N, K, NULL, NULL, 0, SPARSEFLOW_STATUS_INVALID_ARGUMENT,
                  "dense_weight is NULL");
    EXPECT_CREATE(ctx, dt, N, K, (char *)w + 1, NULL, 0, SPARSEFLOW_STATUS_INVALID_ARGUMENT,
                  "aligned");
    EXPECT_CREATE(ctx, dt, N, K, w, NULL, SPARSEFLOW_EPILOGUE_BIAS_RELU,
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT, "bias_or_null is NULL");
    EXPECT_CREATE(ctx, dt, N, K, w, bias, SPARSEFLOW_EPILOGUE_RELU,
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT, "takes no bias");
    /* non-finite weights */
    {
        uint16_t saved = ((uint16_t *)w)[5];
        ((uint16_t *)w)[5] = 0x7e00; /* f16 NaN */
        EXPECT_CREATE(ctx, dt, N, K, w, NULL, 0, SPARSEFLOW_STATUS_INVALID_ARGUMENT, "column 5");
        ((uint16_t *)w)[5] = saved;
    }

    /* The compressed path: bad metadata is NOT_2TO4; missing buffers are INVALID_ARGUMENT. */
    REQUIRE_OK(sparseflow_compressed_sizes(N, K, &values_len, &meta_len));
    values = calloc((size_t)values_len, 2);
    meta = malloc((size_t)meta_len);
    memset(meta, 0x44, (size_t)meta_len); /* every group keeps (0, 1): valid */
    REQUIRE_OK(sparseflow_kernel_create(ctx, dt, N, K, values, meta, NULL, 0, &k));
    REQUIRE_OK(sparseflow_kernel_destroy(k));
    ((uint8_t *)meta)[3] = 0x54; /* high nibble 0x5 = (1, 1): not two distinct positions */
    k = (SparseFlowKernel)(uintptr_t)0x1234;
    EXPECT_STATUS(sparseflow_kernel_create(ctx, dt, N, K, values, meta, NULL, 0, &k),
                  SPARSEFLOW_STATUS_NOT_2TO4);
    EXPECT(k == NULL, "out is NULL after NOT_2TO4");
    EXPECT_MESSAGE("sparseflow_kernel_create", "metadata code");
    ((uint8_t *)meta)[3] = 0x0e; /* low nibble 0xE is valid, high nibble 0x0 = (0, 0) is not */
    EXPECT_STATUS(sparseflow_kernel_create(ctx, dt, N, K, values, meta, NULL, 0, &k),
                  SPARSEFLOW_STATUS_NOT_2TO4);
    ((uint8_t *)meta)[3] = 0x44;
    EXPECT_STATUS(sparseflow_kernel_create(ctx, dt, N, K, values, NULL, NULL, 0, &k),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_MESSAGE("sparseflow_kernel_create", "meta is NULL");
    EXPECT_STATUS(sparseflow_kernel_create(ctx, dt, N, K, NULL, meta, NULL, 0, &k),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_MESSAGE("sparseflow_kernel_create", "values is NULL");
    EXPECT_STATUS(sparseflow_kernel_create(NULL, dt, N, K, values, meta, NULL, 0, &k),
                  SPARSEFLOW_STATUS_INVALID_HANDLE);
    free(values);
    free(meta);
    free(w);
    free(bias);
#undef CREATE
#undef EXPECT_CREATE
}

static void format_errors(void) {
    SparseFlowDType dt = SPARSEFLOW_DTYPE_F32;
    float w[8] = {1, 2, 3, 0, 1, 0, 0, 0}, values[4];
    uint8_t meta[1];
    int64_t vl = 0, ml = 0;
    EXPECT_STATUS(sparseflow_validate_2to4(dt, 1, 8, w), SPARSEFLOW_STATUS_NOT_2TO4);
    EXPECT_MESSAGE("sparseflow_validate_2to4", "row 0, group 0");
    EXPECT_STATUS(sparseflow_validate_2to4(dt, 1, 8, NULL), SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_validate_2to4(dt, 1, 7, w), SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_validate_2to4(9, 1, 8, w), SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_compress_2to4(dt, 1, 8, w, 0, values, meta),
                  SPARSEFLOW_STATUS_NOT_2TO4);
    EXPECT_MESSAGE("sparseflow_compress_2to4", "prune it first");
    EXPECT_STATUS(sparseflow_compress_2to4(dt, 1, 8, w, 2, values, meta),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_MESSAGE("sparseflow_compress_2to4", "unknown flags");
    EXPECT_STATUS(sparseflow_compress_2to4(dt, 1, 8, w, SPARSEFLOW_COMPRESS_PRUNE, NULL, meta),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_compress_2to4(dt, 1, 8, w, SPARSEFLOW_COMPRESS_PRUNE, values, NULL),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_compress_2to4(dt, 1, 8, w, SPARSEFLOW_COMPRESS_PRUNE, values, meta),
                  SPARSEFLOW_STATUS_OK);
    EXPECT_STATUS(sparseflow_compressed_sizes(1, 8, NULL, &ml), SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_compressed_sizes(1, 8, &vl, NULL), SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_compressed_sizes(1, 10, &vl, &ml), SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_compressed_sizes(INT64_MAX, INT64_MAX - 3, &vl, &ml),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_compressed_sizes(3, 12, &vl, &ml), SPARSEFLOW_STATUS_OK);
    EXPECT(vl == 18 && ml == 6, "sizes of [3, 12]: %lld, %lld", (long long)vl, (long long)ml);
}

static void run_errors(SparseFlowContext ctx) {
    SparseFlowDType dt = SPARSEFLOW_DTYPE_F16;
    void *w = random_buffer(dt, N * K, 3);
    SparseFlowKernel k = NULL, forged;
    void *dx = mem_alloc(4 * K * 2), *dy = mem_alloc(4 * N * 2), *x = random_buffer(dt, 4 * K, 4);
    int local = 0;
    REQUIRE_OK(sparseflow_kernel_create_from_dense(ctx, dt, N, K, w, NULL, 0, &k));
    mem_upload(dx, x, 4 * K * 2);

    EXPECT_STATUS(sparseflow_kernel_run(k, dx, 4, dy, NULL), SPARSEFLOW_STATUS_OK);
    EXPECT_STATUS(sparseflow_kernel_run(NULL, dx, 4, dy, NULL), SPARSEFLOW_STATUS_INVALID_HANDLE);
    EXPECT_MESSAGE("sparseflow_kernel_run", "NULL");
    EXPECT_STATUS(sparseflow_kernel_run((SparseFlowKernel)(void *)&local, dx, 4, dy, NULL),
                  SPARSEFLOW_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(sparseflow_kernel_run((SparseFlowKernel)(void *)ctx, dx, 4, dy, NULL),
                  SPARSEFLOW_STATUS_INVALID_HANDLE);
    /* A forged token with a kernel's tag byte that was never issued. */
    forged = (SparseFlowKernel)(uintptr_t)(((uintptr_t)0xabcdef << 8) | ((uintptr_t)k & 0xffu));
    EXPECT_STATUS(sparseflow_kernel_run(forged, dx, 4, dy, NULL), SPARSEFLOW_STATUS_INVALID_HANDLE);
    EXPECT_MESSAGE("sparseflow_kernel_run", "not live");

    EXPECT_STATUS(sparseflow_kernel_run(k, dx, -1, dy, NULL), SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_MESSAGE("sparseflow_kernel_run", "m must be >= 0");
    EXPECT_STATUS(sparseflow_kernel_run(k, NULL, 0, NULL, NULL), SPARSEFLOW_STATUS_OK);
    EXPECT_STATUS(sparseflow_kernel_run(k, NULL, 4, dy, NULL), SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_MESSAGE("sparseflow_kernel_run", "x is NULL");
    EXPECT_STATUS(sparseflow_kernel_run(k, dx, 4, NULL, NULL), SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_MESSAGE("sparseflow_kernel_run", "y is NULL");
    EXPECT_STATUS(sparseflow_kernel_run(k, dx, INT64_MAX, dy, NULL),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_MESSAGE("sparseflow_kernel_run", "overflow");
    EXPECT_STATUS(sparseflow_kernel_run(k, (char *)dx + 1, 4, dy, NULL),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_MESSAGE("sparseflow_kernel_run", "aligned");
    EXPECT_STATUS(sparseflow_kernel_run(k, dx, 4, dx, NULL), SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_MESSAGE("sparseflow_kernel_run", "overlap");
    if (g_device < 0) {
        EXPECT_STATUS(sparseflow_kernel_run(k, dx, 4, dy, (void *)&local),
                      SPARSEFLOW_STATUS_INVALID_ARGUMENT);
        EXPECT_MESSAGE("sparseflow_kernel_run", "stream must be NULL");
    } else {
        /* GPU kernels load 16 bytes at a time: element-aligned is not enough. */
        EXPECT_STATUS(sparseflow_kernel_run(k, (char *)dx + 2, 4, dy, NULL),
                      SPARSEFLOW_STATUS_INVALID_ARGUMENT);
        /* A host pointer where device memory is expected. */
        EXPECT_STATUS(sparseflow_kernel_run(k, x, 4, dy, NULL), SPARSEFLOW_STATUS_INVALID_ARGUMENT);
        printf("  host pointer on a GPU context: %s\n", sparseflow_last_error());
    }

    /* Success leaves the last error alone (errno-like). */
    EXPECT_STATUS(sparseflow_kernel_run(k, dx, 4, dy, NULL), SPARSEFLOW_STATUS_OK);
    EXPECT(strlen(sparseflow_last_error()) > 0, "success does not clear the last error");

    /* Use after destroy and double destroy. */
    EXPECT_STATUS(sparseflow_kernel_destroy(k), SPARSEFLOW_STATUS_OK);
    EXPECT_STATUS(sparseflow_kernel_run(k, dx, 4, dy, NULL), SPARSEFLOW_STATUS_INVALID_HANDLE);
    EXPECT_MESSAGE("sparseflow_kernel_run", "already destroyed");
    EXPECT_STATUS(sparseflow_kernel_destroy(k), SPARSEFLOW_STATUS_INVALID_HANDLE);
    EXPECT_MESSAGE("sparseflow_kernel_destroy", "double destroy");
    EXPECT_STATUS(sparseflow_kernel_destroy(NULL), SPARSEFLOW_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(sparseflow_kernel_destroy((SparseFlowKernel)(void *)ctx),
                  SPARSEFLOW_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(sparseflow_context_destroy((SparseFlowContext)(void *)k),
                  SPARSEFLOW_STATUS_INVALID_HANDLE);

    mem_free(dx);
    mem_free(dy);
    free(x);
    free(w);
}

/* A 2 TB weight: the library must answer OUT_OF_MEMORY, not abort the process. The buffers are
 * reserved address space (never touched, so they cost no memory); the library refuses to copy
 * them before reading a byte. */
static void huge_kernel(SparseFlowContext ctx) {
#if defined(__linux__)
    const int64_t n = (int64_t)1 << 20, k = (int64_t)1 << 21;
    const size_t vbytes = (size_t)n * (size_t)(k / 2) * 2, mbytes = (size_t)n * (size_t)(k / 8);
    SparseFlowKernel huge = NULL;
    void *v = mmap(NULL, vbytes, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    void *m = mmap(NULL, mbytes, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (v == MAP_FAILED || m == MAP_FAILED) {
        printf("huge_kernel: skipped, 2.3 TB of address space could not be reserved\n");
    } else {
        EXPECT_STATUS(sparseflow_kernel_create(ctx, SPARSEFLOW_DTYPE_F16, n, k, v, m, NULL, 0,
                                               &huge),
                      SPARSEFLOW_STATUS_OUT_OF_MEMORY);
        EXPECT(huge == NULL, "out is NULL after OUT_OF_MEMORY");
        EXPECT_MESSAGE("sparseflow_kernel_create", "out of memory");
    }
    if (v != MAP_FAILED) munmap(v, vbytes);
    if (m != MAP_FAILED) munmap(m, mbytes);
#else
    (void)ctx;
#endif
}

int main(int argc, char **argv) {
    SparseFlowContext ctx = NULL;
    SparseFlowKernel kernel = NULL;
    void *w;
    test_init(argc, argv);
    status_strings();
    context_errors();
    REQUIRE_OK(sparseflow_context_create(g_device, &ctx));
    w = random_buffer(SPARSEFLOW_DTYPE_F16, N * K, 9);
    REQUIRE_OK(sparseflow_kernel_create_from_dense(ctx, SPARSEFLOW_DTYPE_F16, N, K, w, NULL, 0,
                                                   &kernel));
    create_errors(ctx, kernel);
    format_errors();
    run_errors(ctx);
    huge_kernel(ctx);
    EXPECT_STATUS(sparseflow_kernel_destroy(kernel), SPARSEFLOW_STATUS_OK);
    EXPECT_STATUS(sparseflow_context_destroy(ctx), SPARSEFLOW_STATUS_OK);
    EXPECT_STATUS(sparseflow_context_destroy(ctx), SPARSEFLOW_STATUS_INVALID_HANDLE);
    free(w);
    return finish("errors");
}
