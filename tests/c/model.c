/*
 * SparseFlow model directories through the C ABI (1.1). Reads, never writes, the models that
 * crates/capi/tests/c_programs.rs writes with sparseflow-model:
 *
 *   GOOD     two sparse layers built from random_buffer() weights by magnitude pruning:
 *            model.layers.0.mlp.up_proj   f16  [16, 40] epilogue none (k/4 odd: padding nibble)
 *            model.layers.0.mlp.down_proj bf16 [8, 32]  epilogue bias_relu, bias [8]
 *            plus a dense model.embed_tokens.weight;
 *   OUTSIDE  an index whose shard names ../GOOD/model.safetensors (outside its directory);
 *   CORRUPT  GOOD with model.safetensors truncated.
 *
 * Each layer loaded from GOOD must equal sparseflow_compress_2to4(PRUNE) of the same dense
 * weights, and a kernel built from the model must match the float64 reference. Then every model
 * entry point gets NULL, garbage and destroyed handles, names that are not sparse layers, short,
 * misaligned and overlapping buffers, and the OUTSIDE / CORRUPT / missing directories.
 *
 * Usage: model DEVICE GOOD OUTSIDE CORRUPT
 */
#include "common.h"

#define UP "model.layers.0.mlp.up_proj"
#define DOWN "model.layers.0.mlp.down_proj"

struct layer {
    const char *name;
    SparseFlowDType dtype;
    int64_t n, k;
    uint32_t epilogue;
    uint64_t seed, bias_seed;
};

/* Must match c_programs.rs: same names, shapes, dtypes, epilogues and seeds. */
static const struct layer LAYERS[2] = {
    {DOWN, SPARSEFLOW_DTYPE_BF16, 8, 32, SPARSEFLOW_EPILOGUE_BIAS_RELU, 21, 23},
    {UP, SPARSEFLOW_DTYPE_F16, 16, 40, SPARSEFLOW_EPILOGUE_NONE, 11, 0},
};

static SparseFlowContext g_ctx;

static void check_layer(SparseFlowModel model, const struct layer *L) {
    int64_t n = 0, k = 0, vlen = 0, mlen = 0;
    SparseFlowDType dt = 99;
    SparseFlowEpilogue e = 99;
    size_t es = dtype_size(L->dtype);
    void *dense, *values, *want_values, *bias = NULL, *want_bias = NULL;
    uint8_t *meta, *want_meta;
    SparseFlowKernel kern = NULL;
    const int64_t m = 3;

    REQUIRE_OK(sparseflow_model_layer_info(model, L->name, &n, &k, &dt, &e));
    EXPECT(n == L->n && k == L->k && dt == L->dtype && e == L->epilogue,
           "%s: info n=%lld k=%lld dtype=%u epilogue=%u", L->name, (long long)n, (long long)k,
           (unsigned)dt, (unsigned)e);
    REQUIRE_OK(sparseflow_compressed_sizes(n, k, &vlen, &mlen));

    /* From-dense pruning of the same weights is what the model must hold. */
    dense = random_buffer(L->dtype, (size_t)(n * k), L->seed);
    want_values = malloc((size_t)vlen * es);
    want_meta = malloc((size_t)mlen);
    REQUIRE_OK(sparseflow_compress_2to4(L->dtype, n, k, dense, SPARSEFLOW_COMPRESS_PRUNE,
                                        want_values, want_meta));
    values = malloc((size_t)vlen * es);
    meta = malloc((size_t)mlen);
    if (epilogue_has_bias(e)) {
        bias = malloc((size_t)n * es);
        want_bias = random_buffer(L->dtype, (size_t)n, L->bias_seed);
    }
    REQUIRE_OK(sparseflow_model_load_layer(model, L->name, values, vlen * (int64_t)es, meta, mlen,
                                           bias, bias ? n * (int64_t)es : 0));
    EXPECT(memcmp(values, want_values, (size_t)vlen * es) == 0, "%s: values differ", L->name);
    EXPECT(memcmp(meta, want_meta, (size_t)mlen) == 0, "%s: metadata differs", L->name);
    if (bias) EXPECT(memcmp(bias, want_bias, (size_t)n * es) == 0, "%s: bias differs", L->name);

    /* A kernel straight from the model computes the pruned layer. */
    REQUIRE_OK(sparseflow_kernel_create_from_model(g_ctx, model, L->name, &kern));
    {
        void *x = random_buffer(L->dtype, (size_t)(m * k), L->seed + 100);
        void *y = malloc((size_t)(m * n) * es);
        void *dx = mem_alloc((size_t)(m * k) * es), *dy = mem_alloc((size_t)(m * n) * es);
        double *w = prune_reference(dense, L->dtype, n, k);
        double *want = gemm_reference(x, w, want_bias, L->dtype, m, n, k, e);
        void *stream = stream_create();
        double worst;
        mem_upload(dx, x, (size_t)(m * k) * es);
        REQUIRE_OK(sparseflow_kernel_run(kern, dx, m, dy, stream));
        stream_sync(stream);
        mem_download(y, dy, (size_t)(m * n) * es);
        worst = worst_error(y, want, L->dtype, (size_t)(m * n));
        EXPECT(worst <= 1.0, "%s: kernel from model, worst error %.3g of tolerance", L->name,
               worst);
        stream_destroy(stream);
        mem_free(dx);
        mem_free(dy);
        free(x);
        free(y);
        free(w);
        free(want);
    }
    EXPECT_STATUS(sparseflow_kernel_destroy(kern), SPARSEFLOW_STATUS_OK);
    free(dense);
    free(want_values);
    free(want_meta);
    free(values);
    free(meta);
    free(bias);
    free(want_bias);
}

static void listing(SparseFlowModel model) {
    int64_t count = -1;
    const char *name = (const char *)"x";
    int i;
    REQUIRE_OK(sparseflow_model_layer_count(model, &count));
    EXPECT(count == 2, "layer count %lld", (long long)count);
    for (i = 0; i < 2; i++) {
        REQUIRE_OK(sparseflow_model_layer_name(model, i, &name));
        EXPECT(strcmp(name, LAYERS[i].name) == 0, "layer %d is %s", i, name);
    }
    EXPECT_STATUS(sparseflow_model_layer_name(model, 2, &name), SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT(name == NULL, "name is NULL after a failure");
    EXPECT_MESSAGE("sparseflow_model_layer_name", "outside [0, 2)");
    EXPECT_STATUS(sparseflow_model_layer_name(model, -1, &name), SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_model_layer_name(model, 0, NULL), SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_model_layer_count(model, NULL), SPARSEFLOW_STATUS_INVALID_ARGUMENT);
}

static void open_errors(const char *good, const char *outside, const char *corrupt) {
    SparseFlowModel model = (SparseFlowModel)(uintptr_t)0x1234;
    char path[4096];

    EXPECT_STATUS(sparseflow_model_open(NULL, &model), SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT(model == NULL, "out is NULL after a failure");
    EXPECT_MESSAGE("sparseflow_model_open", "path is NULL");
    EXPECT_STATUS(sparseflow_model_open(good, NULL), SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_model_open("", &model), SPARSEFLOW_STATUS_INVALID_ARGUMENT);

    snprintf(path, sizeof path, "%s/no-such-model", good);
    EXPECT_STATUS(sparseflow_model_open(path, &model), SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_MESSAGE("sparseflow_model_open", "no-such-model");

    /* A file, not a directory. */
    snprintf(path, sizeof path, "%s/sparseflow.json", good);
    EXPECT_STATUS(sparseflow_model_open(path, &model), SPARSEFLOW_STATUS_INVALID_ARGUMENT);

    EXPECT_STATUS(sparseflow_model_open(outside, &model), SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT(model == NULL, "no handle for a model naming files outside its directory");
    EXPECT_MESSAGE("sparseflow_model_open", "outside the model directory");

    EXPECT_STATUS(sparseflow_model_open(corrupt, &model), SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT(model == NULL, "no handle for a truncated model");
    EXPECT_MESSAGE("sparseflow_model_open", "model.safetensors");
}

static void handle_errors(SparseFlowModel model) {
    SparseFlowModel garbage = (SparseFlowModel)(uintptr_t)0x1234;
    SparseFlowModel as_model = (SparseFlowModel)(void *)g_ctx;
    SparseFlowKernel kern = (SparseFlowKernel)(uintptr_t)0x99;
    int64_t n, k, count;
    SparseFlowDType dt;
    SparseFlowEpilogue e;
    uint16_t v[4];
    uint8_t meta[4];

    EXPECT_STATUS(sparseflow_model_layer_count(NULL, &count), SPARSEFLOW_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(sparseflow_model_layer_count(garbage, &count), SPARSEFLOW_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(sparseflow_model_layer_count(as_model, &count),
                  SPARSEFLOW_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(sparseflow_model_layer_info(garbage, UP, &n, &k, &dt, &e),
                  SPARSEFLOW_STATUS_INVALID_HANDLE);
    EXPECT_MESSAGE("sparseflow_model_layer_info", "not a SparseFlow model handle");
    EXPECT_STATUS(sparseflow_model_load_layer(garbage, UP, v, 8, meta, 4, NULL, 0),
                  SPARSEFLOW_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(sparseflow_kernel_create_from_model(g_ctx, garbage, UP, &kern),
                  SPARSEFLOW_STATUS_INVALID_HANDLE);
    EXPECT(kern == NULL, "kernel out is NULL after a failure");
    EXPECT_STATUS(sparseflow_kernel_create_from_model((SparseFlowContext)(void *)model, model, UP,
                                                      &kern),
                  SPARSEFLOW_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(sparseflow_kernel_create_from_model(g_ctx, model, UP, NULL),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_model_destroy(NULL), SPARSEFLOW_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(sparseflow_model_destroy(garbage), SPARSEFLOW_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(sparseflow_model_destroy(as_model), SPARSEFLOW_STATUS_INVALID_HANDLE);
}

static void name_errors(SparseFlowModel model) {
    int64_t n, k;
    SparseFlowDType dt;
    SparseFlowEpilogue e;
    SparseFlowKernel kern;
    uint16_t v[4];
    uint8_t meta[4];
    const char *names[] = {"nope", "model.embed_tokens.weight", UP ".values", ""};
    size_t i;

    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        EXPECT_STATUS(sparseflow_model_layer_info(model, names[i], &n, &k, &dt, &e),
                      SPARSEFLOW_STATUS_INVALID_ARGUMENT);
        EXPECT_MESSAGE("sparseflow_model_layer_info", "no sparse layer");
        EXPECT_STATUS(sparseflow_model_load_layer(model, names[i], v, 8, meta, 4, NULL, 0),
                      SPARSEFLOW_STATUS_INVALID_ARGUMENT);
        EXPECT_STATUS(sparseflow_kernel_create_from_model(g_ctx, model, names[i], &kern),
                      SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    }
    EXPECT_MESSAGE("sparseflow_kernel_create_from_model", DOWN); /* lists the layers it has */
    EXPECT_STATUS(sparseflow_model_layer_info(model, NULL, &n, &k, &dt, &e),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_model_layer_info(model, UP, NULL, &k, &dt, &e),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_model_layer_info(model, UP, &n, &k, &dt, NULL),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_model_load_layer(model, NULL, v, 8, meta, 4, NULL, 0),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_kernel_create_from_model(g_ctx, model, NULL, &kern),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
}

/* Short, NULL, misaligned and overlapping buffers: refused, nothing written. */
static void buffer_errors(SparseFlowModel model) {
    const struct layer *up = &LAYERS[1], *down = &LAYERS[0];
    int64_t vb = up->n * up->k, mb = up->n * ((up->k + 7) / 8); /* values bytes: n*k/2*2 */
    int64_t dvb = down->n * down->k, dmb = down->n * ((down->k + 7) / 8), db = down->n * 2;
    uint8_t *buf = malloc((size_t)(vb + mb + dvb + dmb + db + 64));
    uint8_t *values = buf, *meta = buf + vb, *bias = buf + vb + mb + 32;
    int64_t i, untouched = 1;

    memset(buf, 0xAB, (size_t)(vb + mb + dvb + dmb + db + 64));
    EXPECT_STATUS(sparseflow_model_load_layer(model, UP, values, vb - 1, meta, mb, NULL, 0),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_MESSAGE("sparseflow_model_load_layer", "values_bytes");
    EXPECT_STATUS(sparseflow_model_load_layer(model, UP, values, vb, meta, mb - 1, NULL, 0),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_model_load_layer(model, UP, values, -1, meta, mb, NULL, 0),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_model_load_layer(model, UP, NULL, vb, meta, mb, NULL, 0),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_model_load_layer(model, UP, values, vb, NULL, mb, NULL, 0),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_model_load_layer(model, UP, values + 1, vb, meta, mb, NULL, 0),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_MESSAGE("sparseflow_model_load_layer", "aligned");
    EXPECT_STATUS(sparseflow_model_load_layer(model, UP, values, vb, values + 2, mb, NULL, 0),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_MESSAGE("sparseflow_model_load_layer", "overlap");
    /* up_proj has no bias: a bias buffer is a caller mistake. */
    EXPECT_STATUS(sparseflow_model_load_layer(model, UP, values, vb, meta, mb, bias, 64),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_MESSAGE("sparseflow_model_load_layer", "no bias");
    /* down_proj has one: it must be asked for, with room for n elements. */
    EXPECT_STATUS(sparseflow_model_load_layer(model, DOWN, values, dvb, meta, dmb, NULL, 0),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_MESSAGE("sparseflow_model_load_layer", "bias_out_or_null is NULL");
    EXPECT_STATUS(sparseflow_model_load_layer(model, DOWN, values, dvb, meta, dmb, bias, db - 2),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(sparseflow_model_load_layer(model, DOWN, values, dvb, meta, dmb, meta, db),
                  SPARSEFLOW_STATUS_INVALID_ARGUMENT);
    for (i = 0; i < vb + mb + dvb + dmb + db + 64; i++) untouched &= buf[i] == 0xAB;
    EXPECT(untouched, "a refused load writes nothing");
    free(buf);
}

int main(int argc, char **argv) {
    SparseFlowModel model = NULL;
    SparseFlowKernel kern = NULL;
    int64_t count;
    const char *name;
    int i;

    if (argc != 5) {
        fprintf(stderr, "usage: %s DEVICE GOOD OUTSIDE CORRUPT\n", argv[0]);
        return 2;
    }
    test_init(argc, argv);
    REQUIRE_OK(sparseflow_context_create(g_device, &g_ctx));
    REQUIRE_OK(sparseflow_model_open(argv[2], &model));

    listing(model);
    for (i = 0; i < 2; i++) check_layer(model, &LAYERS[i]);
    open_errors(argv[2], argv[3], argv[4]);
    handle_errors(model);
    name_errors(model);
    buffer_errors(model);

    /* Kernels outlive the model they came from; a destroyed model is an invalid handle. */
    REQUIRE_OK(sparseflow_kernel_create_from_model(g_ctx, model, UP, &kern));
    REQUIRE_OK(sparseflow_model_layer_name(model, 0, &name));
    EXPECT_STATUS(sparseflow_model_destroy(model), SPARSEFLOW_STATUS_OK);
    EXPECT_STATUS(sparseflow_model_destroy(model), SPARSEFLOW_STATUS_INVALID_HANDLE);
    EXPECT_MESSAGE("sparseflow_model_destroy", "not live");
    EXPECT_STATUS(sparseflow_model_layer_count(model, &count), SPARSEFLOW_STATUS_INVALID_HANDLE);
    {
        int64_t m = 2, n = 16, k = 40;
        void *dx = mem_alloc((size_t)(m * k) * 2), *dy = mem_alloc((size_t)(m * n) * 2);
        void *x = calloc((size_t)(m * k), 2);
        mem_upload(dx, x, (size_t)(m * k) * 2);
        EXPECT_STATUS(sparseflow_kernel_run(kern, dx, m, dy, NULL), SPARSEFLOW_STATUS_OK);
        mem_download(x, dy, (size_t)(m * n) * 2);
        mem_free(dx);
        mem_free(dy);
        free(x);
    }
    EXPECT_STATUS(sparseflow_kernel_destroy(kern), SPARSEFLOW_STATUS_OK);
    EXPECT_STATUS(sparseflow_context_destroy(g_ctx), SPARSEFLOW_STATUS_OK);
    return finish("model");
}
