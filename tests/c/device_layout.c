/*
 * The device layout through the C ABI (1.3): sparseflow_device_layout_sizes,
 * sparseflow_layout_to_device_order (checked byte for byte against docs/FORMAT.md's
 * permutation, written again here from the document), and
 * sparseflow_kernel_create_from_device_layout: on a GPU it runs on the caller's buffers (checked
 * against the float64 reference, and a later write to the caller's bias is seen: no copy); on
 * the CPU backend it is a clear UNSUPPORTED, never a crash.
 * Usage: device_layout [device]   (-1 = CPU backend, default; >= 0 needs -DSPARSEFLOW_TEST_CUDA)
 */
#include "common.h"

static int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

/* docs/FORMAT.md, "The device layout": N padded to 128 rows and K to 64 (values 0, metadata
 * byte 0x44); values of row 16rb + 8rbit + g, compressed column 16ks + 8cbit + 2t + hf go to
 * [rb, ks, g, t, cbit, rbit, hf]; metadata byte 8p + 4s + 2h + i2 of row 16rb + 8half + g goes to
 * [rb, p, g, s, h, half, i2]; an odd K/4 leaves a padding nibble, stored as code 0x4. */
static void reference_layout(const void *values, const uint8_t *meta, size_t es, int64_t n,
                             int64_t k, uint8_t *v_out, uint8_t *m_out) {
    int64_t np = round_up(n, 128), kp = round_up(k, 64), half_k = k / 2, mb = (k / 4 + 1) / 2;
    int64_t row, col, b;
    memset(v_out, 0, (size_t)(np * kp / 2) * es);
    for (row = 0; row < n; row++)
        for (col = 0; col < half_k; col++) {
            int64_t rb = row / 16, rbit = row % 16 / 8, g = row % 8;
            int64_t ks = col / 16, cbit = col % 16 / 8, t = col % 8 / 2, hf = col % 2;
            int64_t dst = (((((rb * (kp / 32) + ks) * 8 + g) * 4 + t) * 2 + cbit) * 2 + rbit) * 2 + hf;
            memcpy(v_out + (size_t)dst * es, (const uint8_t *)values + (size_t)(row * half_k + col) * es, es);
        }
    for (row = 0; row < np; row++)
        for (b = 0; b < kp / 8; b++) {
            int64_t rb = row / 16, half = row % 16 / 8, g = row % 8;
            int64_t p = b / 8, s = b % 8 / 4, h = b % 4 / 2, i2 = b % 2;
            int64_t dst = (((((rb * (kp / 64) + p) * 8 + g) * 2 + s) * 2 + h) * 2 + half) * 2 + i2;
            uint8_t byte = row < n && b < mb ? meta[row * mb + b] : 0x44;
            if (row < n && b == mb - 1 && (k / 4) % 2 == 1) byte = (uint8_t)((byte & 0x0f) | 0x40);
            m_out[dst] = byte;
        }
}

/* A pruned, compressed random weight and its float64 reference. */
struct weight {
    void *dense, *values;
    uint8_t *meta;
    double *w_ref;
    int64_t values_bytes, meta_bytes; /* in the device layout */
};

static struct weight make_weight(SparseFlowDType dt, int64_t n, int64_t k, uint64_t seed) {
    struct weight w;
    int64_t values_len, meta_len;
    w.dense = random_buffer(dt, (size_t)(n * k), seed);
    w.w_ref = prune_reference(w.dense, dt, n, k);
    REQUIRE_OK(sparseflow_compressed_sizes(n, k, &values_len, &meta_len));
    w.values = malloc((size_t)values_len * dtype_size(dt));
    w.meta = malloc((size_t)meta_len);
    REQUIRE_OK(sparseflow_compress_2to4(dt, n, k, w.dense, SPARSEFLOW_COMPRESS_PRUNE, w.values, w.meta));
    REQUIRE_OK(sparseflow_device_layout_sizes(n, k, &w.values_bytes, &w.meta_bytes));
    return w;
}

static void free_weight(struct weight *w) {
    free(w->dense);
    free(w->values);
    free(w->meta);
    free(w->w_ref);
}

static void check_sizes(void) {
    int64_t v = -1, m = -1;
    REQUIRE_OK(sparseflow_device_layout_sizes(4096, 14336, &v, &m));
    EXPECT(v == 4096LL * 14336 && m == 4096LL * 14336 / 8, "aligned shape: %lld / %lld", (long long)v, (long long)m);
    REQUIRE_OK(sparseflow_device_layout_sizes(8, 16, &v, &m));
    EXPECT(v == 128 * 64 && m == 128 * 64 / 8, "padded shape: %lld / %lld", (long long)v, (long long)m);
    EXPECT_STATUS(sparseflow_device_layout_sizes(8, 18, &v, &m), SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_device_layout_sizes(0, 16, &v, &m), SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_device_layout_sizes(8, 16, NULL, &m), SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_MESSAGE("sparseflow_device_layout_sizes", "NULL");
}

/* The converter equals the documented permutation, for padded shapes and an odd K/4. */
static void check_converter(SparseFlowDType dt, int64_t n, int64_t k, uint64_t seed) {
    struct weight w = make_weight(dt, n, k, seed);
    uint8_t *v = malloc((size_t)w.values_bytes), *m = malloc((size_t)w.meta_bytes);
    uint8_t *v_ref = malloc((size_t)w.values_bytes), *m_ref = malloc((size_t)w.meta_bytes);
    REQUIRE_OK(sparseflow_layout_to_device_order(dt, n, k, w.values, w.meta, v, m));
    reference_layout(w.values, w.meta, dtype_size(dt), n, k, v_ref, m_ref);
    EXPECT(memcmp(v, v_ref, (size_t)w.values_bytes) == 0, "%s [%lld, %lld]: values differ from FORMAT.md's layout",
           dtype_name(dt), (long long)n, (long long)k);
    EXPECT(memcmp(m, m_ref, (size_t)w.meta_bytes) == 0, "%s [%lld, %lld]: meta differs from FORMAT.md's layout",
           dtype_name(dt), (long long)n, (long long)k);
    free(v);
    free(m);
    free(v_ref);
    free(m_ref);
    free_weight(&w);
}

static void check_converter_errors(void) {
    SparseFlowDType dt = SPARSEFLOW_DTYPE_F16;
    struct weight w = make_weight(dt, 8, 16, 5);
    uint8_t *v = malloc((size_t)w.values_bytes), *m = malloc((size_t)w.meta_bytes);
    float f32_values[8 * 8];
    memset(f32_values, 0, sizeof f32_values);
    memset(v, 0xAB, (size_t)w.values_bytes);
    EXPECT_STATUS(sparseflow_layout_to_device_order(SPARSEFLOW_DTYPE_F32, 8, 16, f32_values, w.meta, v, m),
                  SPARSEFLOW_STATUS_UNSUPPORTED);
    EXPECT_MESSAGE("sparseflow_layout_to_device_order", "f16 or bf16");
    EXPECT_STATUS(sparseflow_layout_to_device_order(dt, 8, 16, NULL, w.meta, v, m),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_layout_to_device_order(dt, 8, 16, w.values, w.meta, w.values, m),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_MESSAGE("sparseflow_layout_to_device_order", "overlaps");
    w.meta[3] = 0xff; /* positions (3, 3): not two distinct increasing positions */
    EXPECT_STATUS(sparseflow_layout_to_device_order(dt, 8, 16, w.values, w.meta, v, m),
                  SPARSEFLOW_STATUS_NOT_2TO4);
    EXPECT(v[0] == 0xAB && v[w.values_bytes - 1] == 0xAB, "nothing is written on failure");
    free(v);
    free(m);
    free_weight(&w);
}

/* A CPU context cannot adopt device memory: UNSUPPORTED with a message, out stays NULL. */
static void check_cpu_refuses(void) {
    SparseFlowContext cpu = NULL;
    SparseFlowKernel k = (SparseFlowKernel)(uintptr_t)1;
    uint8_t v[128 * 64 * 2], m[128 * 64 / 8];
    memset(v, 0, sizeof v);
    memset(m, 0x44, sizeof m);
    REQUIRE_OK(sparseflow_context_create(-1, &cpu));
    EXPECT_STATUS(sparseflow_kernel_create_from_device_layout(cpu, SPARSEFLOW_DTYPE_F16, 8, 16, v, m, NULL,
                                                              SPARSEFLOW_EPILOGUE_NONE, &k),
                  SPARSEFLOW_STATUS_UNSUPPORTED);
    EXPECT_MESSAGE("sparseflow_kernel_create_from_device_layout", "CPU context");
    EXPECT(k == NULL, "out is NULL on failure");
    EXPECT_STATUS(sparseflow_kernel_create_from_device_layout(cpu, SPARSEFLOW_DTYPE_F16, 8, 16, v, m, NULL,
                                                              SPARSEFLOW_EPILOGUE_NONE, NULL),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_kernel_create_from_device_layout(NULL, SPARSEFLOW_DTYPE_F16, 8, 16, v, m, NULL,
                                                              SPARSEFLOW_EPILOGUE_NONE, &k),
                  SPARSEFLOW_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(sparseflow_context_destroy(cpu), SPARSEFLOW_STATUS_OK);
}

/* GPU: a kernel on the caller's device buffers computes the reference, and sees later writes. */
static void check_adopted(SparseFlowContext ctx, SparseFlowDType dt, int64_t n, int64_t k, uint32_t epi,
                          uint64_t seed) {
    static const int64_t ms[] = {1, 7, 100};
    size_t es = dtype_size(dt), mi;
    struct weight w = make_weight(dt, n, k, seed);
    int bias_epi = epilogue_has_bias(epi);
    void *bias = bias_epi ? random_buffer(dt, (size_t)n, seed + 1) : NULL;
    uint8_t *v = malloc((size_t)w.values_bytes), *m = malloc((size_t)w.meta_bytes);
    void *dv = mem_alloc((size_t)w.values_bytes), *dm = mem_alloc((size_t)w.meta_bytes);
    void *db = bias ? mem_alloc((size_t)n * es) : NULL;
    SparseFlowKernel kern = NULL;

    REQUIRE_OK(sparseflow_layout_to_device_order(dt, n, k, w.values, w.meta, v, m));
    mem_upload(dv, v, (size_t)w.values_bytes);
    mem_upload(dm, m, (size_t)w.meta_bytes);
    if (db) mem_upload(db, bias, (size_t)n * es);
    REQUIRE_OK(sparseflow_kernel_create_from_device_layout(ctx, dt, n, k, dv, dm, db, epi, &kern));
    for (mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
        int64_t mm = ms[mi];
        void *x = random_buffer(dt, (size_t)(mm * k), seed + 100 + (uint64_t)mm);
        double *y_ref = gemm_reference(x, w.w_ref, bias, dt, mm, n, k, epi);
        void *dx = mem_alloc((size_t)(mm * k) * es), *dy = mem_alloc((size_t)(mm * n) * es);
        void *y = malloc((size_t)(mm * n) * es);
        double worst;
        mem_upload(dx, x, (size_t)(mm * k) * es);
        EXPECT_STATUS(sparseflow_kernel_run(kern, dx, mm, dy, NULL), SPARSEFLOW_STATUS_OK);
        mem_download(y, dy, (size_t)(mm * n) * es);
        worst = worst_error(y, y_ref, dt, (size_t)(mm * n));
        EXPECT(worst <= 1.0, "adopted %s n=%lld k=%lld m=%lld epilogue=%u: error %.3g of tolerance",
               dtype_name(dt), (long long)n, (long long)k, (long long)mm, epi, worst);
        if (db && mi + 1 == sizeof ms / sizeof ms[0]) {
            /* The kernel reads the caller's bias at every run: a new one is seen, no re-create. */
            void *bias2 = random_buffer(dt, (size_t)n, seed + 2);
            double *y_ref2 = gemm_reference(x, w.w_ref, bias2, dt, mm, n, k, epi);
            mem_upload(db, bias2, (size_t)n * es);
            EXPECT_STATUS(sparseflow_kernel_run(kern, dx, mm, dy, NULL), SPARSEFLOW_STATUS_OK);
            mem_download(y, dy, (size_t)(mm * n) * es);
            worst = worst_error(y, y_ref2, dt, (size_t)(mm * n));
            EXPECT(worst <= 1.0, "a write to the caller's bias must be seen: error %.3g of tolerance", worst);
            free(bias2);
            free(y_ref2);
        }
        mem_free(dx);
        mem_free(dy);
        free(x);
        free(y);
        free(y_ref);
    }
    EXPECT_STATUS(sparseflow_kernel_destroy(kern), SPARSEFLOW_STATUS_OK);
    /* The caller owns the buffers: they are freed here, after the kernel. */
    mem_free(dv);
    mem_free(dm);
    if (db) mem_free(db);
    free(v);
    free(m);
    free(bias);
    free_weight(&w);
}

/* GPU: what adoption refuses (host memory, misaligned, NULL, F32, bias mismatch). */
static void check_adopt_errors(SparseFlowContext ctx) {
    int64_t vb, mb;
    void *dv, *dm;
    uint8_t host[128 * 64 * 2];
    SparseFlowKernel k = NULL;
    SparseFlowDType dt = SPARSEFLOW_DTYPE_F16;
    REQUIRE_OK(sparseflow_device_layout_sizes(8, 16, &vb, &mb));
    dv = mem_alloc((size_t)vb);
    dm = mem_alloc((size_t)mb);
    memset(host, 0, sizeof host);
    EXPECT_STATUS(sparseflow_kernel_create_from_device_layout(ctx, dt, 8, 16, host, dm, NULL, 0, &k),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_MESSAGE("sparseflow_kernel_create_from_device_layout", "weight values");
    EXPECT_STATUS(sparseflow_kernel_create_from_device_layout(ctx, dt, 8, 16, (uint8_t *)dv + 2, dm, NULL, 0, &k),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_kernel_create_from_device_layout(ctx, dt, 8, 16, dv, NULL, NULL, 0, &k),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_kernel_create_from_device_layout(ctx, SPARSEFLOW_DTYPE_F32, 8, 16, dv, dm, NULL, 0, &k),
                  SPARSEFLOW_STATUS_UNSUPPORTED);
    EXPECT_STATUS(sparseflow_kernel_create_from_device_layout(ctx, dt, 8, 16, dv, dm, dv, SPARSEFLOW_EPILOGUE_NONE, &k),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_kernel_create_from_device_layout(ctx, dt, 8, 16, dv, dm, NULL, SPARSEFLOW_EPILOGUE_BIAS, &k),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT(k == NULL, "out stays NULL on failure");
    mem_free(dv);
    mem_free(dm);
}

int main(int argc, char **argv) {
    static const SparseFlowDType dtypes[] = {SPARSEFLOW_DTYPE_F16, SPARSEFLOW_DTYPE_BF16};
    size_t d;
    test_init(argc, argv);
    check_sizes();
    for (d = 0; d < 2; d++) {
        check_converter(dtypes[d], 8, 16, 10 + d);    /* both dims padded */
        check_converter(dtypes[d], 136, 72, 20 + d);  /* two row blocks of 128, K pair padded */
        check_converter(dtypes[d], 33, 20, 30 + d);   /* K/4 = 5: a padding nibble per row */
        check_converter(dtypes[d], 256, 128, 40 + d); /* aligned: no padding */
    }
    check_converter_errors();
    check_cpu_refuses();
    if (g_device >= 0) {
        SparseFlowContext ctx = NULL;
        REQUIRE_OK(sparseflow_context_create(g_device, &ctx));
        for (d = 0; d < 2; d++) {
            check_adopted(ctx, dtypes[d], 136, 72, SPARSEFLOW_EPILOGUE_NONE, 100 + d);
            check_adopted(ctx, dtypes[d], 256, 100, SPARSEFLOW_EPILOGUE_BIAS_SILU, 200 + d);
        }
        check_adopt_errors(ctx);
        EXPECT_STATUS(sparseflow_context_destroy(ctx), SPARSEFLOW_STATUS_OK);
    }
    return finish("device_layout");
}
