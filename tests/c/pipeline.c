/*
 * Full pipeline through the C ABI, checked against a float64 reference computed here in C:
 * prune + compress + kernel (both create paths), every epilogue, f32/f16/bf16, several M.
 * Usage: pipeline [device]   (-1 = CPU backend, default; >= 0 needs -DSPARSEFLOW_TEST_CUDA)
 */
#include "common.h"

/* Checks the compressed form against the pruned reference: every meta code is one of the six
 * valid ones, and values placed at the coded positions rebuild the pruned matrix exactly. */
static void check_compressed(const void *values, const uint8_t *meta, const double *w_ref,
                             SparseFlowDType dt, int64_t n, int64_t k) {
    int64_t row, g, bytes_per_row = (k / 4 + 1) / 2, bad = 0;
    for (row = 0; row < n; row++)
        for (g = 0; g < k / 4; g++) {
            unsigned code = (meta[row * bytes_per_row + g / 2] >> (4 * (g % 2))) & 0xfu;
            unsigned i0 = code & 3u, i1 = code >> 2, p;
            double rebuilt[4] = {0, 0, 0, 0};
            if (i0 >= i1) {
                bad++;
                continue;
            }
            rebuilt[i0] = get(values, dt, (size_t)(row * k / 2 + 2 * g));
            rebuilt[i1] = get(values, dt, (size_t)(row * k / 2 + 2 * g + 1));
            for (p = 0; p < 4; p++)
                if (rebuilt[p] != w_ref[row * k + 4 * g + p]) bad++;
        }
    EXPECT(bad == 0, "%s [%lld, %lld]: %lld mismatches between compressed form and pruned weight",
           dtype_name(dt), (long long)n, (long long)k, (long long)bad);
}

static void run_case(SparseFlowContext ctx, SparseFlowDType dt, int64_t n, int64_t k,
                     uint32_t epi, uint64_t seed) {
    static const int64_t ms[] = {1, 7, 33, 100};
    size_t sz = dtype_size(dt), mi, i;
    int64_t values_len = 0, meta_len = 0;
    void *dense = random_buffer(dt, (size_t)(n * k), seed);
    void *bias = epilogue_has_bias(epi) ? random_buffer(dt, (size_t)n, seed + 1) : NULL;
    double *w_ref = prune_reference(dense, dt, n, k);
    void *pruned = malloc((size_t)(n * k) * sz), *values;
    uint8_t *meta;
    SparseFlowKernel from_dense = NULL, from_parts = NULL;

    for (i = 0; i < (size_t)(n * k); i++) put(pruned, dt, i, (float)w_ref[i]);
    EXPECT_STATUS(sparseflow_validate_2to4(dt, n, k, dense), SPARSEFLOW_STATUS_NOT_2TO4);
    EXPECT_STATUS(sparseflow_validate_2to4(dt, n, k, pruned), SPARSEFLOW_STATUS_OK);

    REQUIRE_OK(sparseflow_compressed_sizes(n, k, &values_len, &meta_len));
    EXPECT(values_len == n * k / 2 && meta_len == n * ((k / 4 + 1) / 2),
           "compressed sizes %lld / %lld", (long long)values_len, (long long)meta_len);
    values = malloc((size_t)values_len * sz);
    meta = malloc((size_t)meta_len);
    EXPECT_STATUS(sparseflow_compress_2to4(dt, n, k, dense, 0, values, meta),
                  SPARSEFLOW_STATUS_NOT_2TO4);
    REQUIRE_OK(sparseflow_compress_2to4(dt, n, k, dense, SPARSEFLOW_COMPRESS_PRUNE, values, meta));
    check_compressed(values, meta, w_ref, dt, n, k);
    /* An already 2:4 weight compresses to the same thing without the prune flag. */
    {
        void *values2 = malloc((size_t)values_len * sz);
        uint8_t *meta2 = malloc((size_t)meta_len);
        REQUIRE_OK(sparseflow_compress_2to4(dt, n, k, pruned, 0, values2, meta2));
        EXPECT(memcmp(values, values2, (size_t)values_len * sz) == 0 &&
                   memcmp(meta, meta2, (size_t)meta_len) == 0,
               "compressing the pruned weight differs from compress with PRUNE");
        free(values2);
        free(meta2);
    }

    REQUIRE_OK(sparseflow_kernel_create_from_dense(ctx, dt, n, k, dense, bias, epi, &from_dense));
    REQUIRE_OK(sparseflow_kernel_create(ctx, dt, n, k, values, meta, bias, epi, &from_parts));

    for (mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
        int64_t m = ms[mi];
        void *x = random_buffer(dt, (size_t)(m * k), seed + 100 + (uint64_t)m);
        double *y_ref = gemm_reference(x, w_ref, bias, dt, m, n, k, epi);
        void *dx = mem_alloc((size_t)(m * k) * sz), *dy = mem_alloc((size_t)(m * n) * sz);
        void *dy2 = mem_alloc((size_t)(m * n) * sz);
        void *y = malloc((size_t)(m * n) * sz), *y2 = malloc((size_t)(m * n) * sz);
        /* Odd M runs on an explicit stream (a new CUstream on a GPU), even M on NULL. */
        void *stream = m % 2 ? stream_create() : NULL;
        double worst, worst2;

        mem_upload(dx, x, (size_t)(m * k) * sz);
        EXPECT_STATUS(sparseflow_kernel_run(from_dense, dx, m, dy, stream), SPARSEFLOW_STATUS_OK);
        EXPECT_STATUS(sparseflow_kernel_run(from_parts, dx, m, dy2, stream), SPARSEFLOW_STATUS_OK);
        stream_sync(stream);
        mem_download(y, dy, (size_t)(m * n) * sz);
        mem_download(y2, dy2, (size_t)(m * n) * sz);
        worst = worst_error(y, y_ref, dt, (size_t)(m * n));
        worst2 = worst_error(y2, y_ref, dt, (size_t)(m * n));
        EXPECT(worst <= 1.0 && worst2 <= 1.0,
               "%s n=%lld k=%lld m=%lld epilogue=%u: error %.3g / %.3g of tolerance",
               dtype_name(dt), (long long)n, (long long)k, (long long)m, epi, worst, worst2);
        if (g_device < 0)
            EXPECT(memcmp(y, y2, (size_t)(m * n) * sz) == 0,
                   "both create paths must give identical results on the CPU backend");

        if (stream) stream_destroy(stream);
        mem_free(dx);
        mem_free(dy);
        mem_free(dy2);
        free(x);
        free(y);
        free(y2);
        free(y_ref);
    }
    EXPECT_STATUS(sparseflow_kernel_destroy(from_dense), SPARSEFLOW_STATUS_OK);
    EXPECT_STATUS(sparseflow_kernel_destroy(from_parts), SPARSEFLOW_STATUS_OK);
    free(dense);
    free(bias);
    free(w_ref);
    free(pruned);
    free(values);
    free(meta);
}

/* The worked examples of the metadata encoding in docs/FORMAT.md. */
static void known_encodings(void) {
    float row8[8] = {0, 0, 0, 0, 0, 0, 5, 0}, row4[4] = {0, 0, 0, 7}, values[4];
    uint8_t meta[1];
    REQUIRE_OK(sparseflow_compress_2to4(SPARSEFLOW_DTYPE_F32, 1, 8, row8, 0, values, meta));
    /* all-zero group -> positions (0,1) = 0x4; only position 2 -> (0,2) = 0x8, high nibble */
    EXPECT(meta[0] == 0x84 && values[0] == 0 && values[1] == 0 && values[2] == 0 &&
               values[3] == 5,
           "encoding of [0 0 0 0 | 0 0 5 0]: meta %#x", meta[0]);
    REQUIRE_OK(sparseflow_compress_2to4(SPARSEFLOW_DTYPE_F32, 1, 4, row4, 0, values, meta));
    /* (0,3) = 0xC, then the padding nibble of an odd group count is the zero code 0x4 */
    EXPECT(meta[0] == 0x4c && values[0] == 0 && values[1] == 7,
           "encoding of [0 0 0 7]: meta %#x", meta[0]);
}

int main(int argc, char **argv) {
    static const SparseFlowDType dtypes[] = {SPARSEFLOW_DTYPE_F16, SPARSEFLOW_DTYPE_BF16,
                                             SPARSEFLOW_DTYPE_F32};
    SparseFlowContext ctx = NULL;
    SparseFlowKernel survivor = NULL;
    size_t d;
    uint32_t epi;
    test_init(argc, argv);
    EXPECT(strcmp(sparseflow_last_error(), "") == 0, "last error starts empty");
    REQUIRE_OK(sparseflow_context_create(g_device, &ctx));
    known_encodings();

    for (d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++) {
        SparseFlowDType dt = dtypes[d];
        if (dt == SPARSEFLOW_DTYPE_F32 && g_device >= 0) {
            /* Documented: F32 is host-only (CPU backend); a GPU context refuses it. */
            float w[16] = {1, 2, 0, 0};
            SparseFlowKernel k = NULL;
            EXPECT_STATUS(sparseflow_kernel_create_from_dense(ctx, dt, 4, 4, w, NULL, 0, &k),
                          SPARSEFLOW_STATUS_UNSUPPORTED);
            EXPECT(k == NULL, "out stays NULL on failure");
            continue;
        }
        for (epi = 0; epi < epilogue_count(); epi++) {
            /* k = 36: nine groups per row, so every meta row ends in a padding nibble. */
            run_case(ctx, dt, 24, 36, epi, 1000 * d + epi);
            if (epi == SPARSEFLOW_EPILOGUE_NONE || epi == SPARSEFLOW_EPILOGUE_BIAS_RELU ||
                epi == SPARSEFLOW_EPILOGUE_BIAS_GELU_TANH)
                run_case(ctx, dt, 64, 128, epi, 7000 + 1000 * d + epi);
        }
    }

    /* A kernel outlives its context's handle: destroy the context first, then run. */
    {
        SparseFlowDType dt = SPARSEFLOW_DTYPE_F16;
        void *w = random_buffer(dt, 8 * 16, 42), *x = random_buffer(dt, 2 * 16, 43);
        double *w_ref = prune_reference(w, dt, 8, 16);
        double *y_ref = gemm_reference(x, w_ref, NULL, dt, 2, 8, 16, SPARSEFLOW_EPILOGUE_NONE);
        void *dx = mem_alloc(2 * 16 * 2), *dy = mem_alloc(2 * 8 * 2), *y = malloc(2 * 8 * 2);
        REQUIRE_OK(sparseflow_kernel_create_from_dense(ctx, dt, 8, 16, w, NULL,
                                                       SPARSEFLOW_EPILOGUE_NONE, &survivor));
        EXPECT_STATUS(sparseflow_context_destroy(ctx), SPARSEFLOW_STATUS_OK);
        mem_upload(dx, x, 2 * 16 * 2);
        EXPECT_STATUS(sparseflow_kernel_run(survivor, dx, 2, dy, NULL), SPARSEFLOW_STATUS_OK);
        mem_download(y, dy, 2 * 8 * 2);
        EXPECT(worst_error(y, y_ref, dt, 16) <= 1.0, "kernel after its context was destroyed");
        EXPECT_STATUS(sparseflow_kernel_destroy(survivor), SPARSEFLOW_STATUS_OK);
        mem_free(dx);
        mem_free(dy);
        free(w);
        free(x);
        free(y);
        free(w_ref);
        free(y_ref);
    }
    return finish("pipeline");
}
