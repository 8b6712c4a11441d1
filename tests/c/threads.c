/*
 * 16 threads share one context and one kernel: concurrent runs (each thread its own buffers,
 * and on a GPU its own stream), concurrent kernel creation and destruction on the shared
 * context, and thread-local last errors that other threads' failures do not overwrite.
 * Usage: threads [device]   (-1 = CPU backend, default; >= 0 needs -DSPARSEFLOW_TEST_CUDA)
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "common.h"

#define THREADS 16
#define ITERS 20
#define N 48
#define K 64
#define M 5

static SparseFlowContext g_ctx;
static SparseFlowKernel g_kernel;
static SparseFlowDType g_dt = SPARSEFLOW_DTYPE_F16;
static void *g_x;          /* host x [M, K] */
static double *g_expected; /* float64 reference of the shared kernel on g_x */
static pthread_barrier_t g_barrier;

typedef struct {
    int id;
    int failures;
    char first_failure[256];
} Worker;

static void fail(Worker *w, const char *what) {
    if (w->failures++ == 0)
        snprintf(w->first_failure, sizeof w->first_failure, "%s (last error: %s)", what,
                 sparseflow_last_error());
}

static void *worker(void *arg) {
    Worker *w = arg;
    size_t sz = dtype_size(g_dt);
    void *dx, *dy, *y = malloc(M * N * sz), *stream, *own_w;
    SparseFlowKernel own = NULL;
    char needle[32];
    int i;
    device_thread_init();
    dx = mem_alloc(M * K * sz);
    dy = mem_alloc(M * N * sz);
    stream = stream_create();
    mem_upload(dx, g_x, M * K * sz);

    /* 1. A failure on this thread sets this thread's message only. */
    if (sparseflow_kernel_run(g_kernel, dx, -(int64_t)(w->id + 1), dy, stream) !=
        SPARSEFLOW_STATUS_INVALID_ARGUMENT)
        fail(w, "negative m was accepted");
    snprintf(needle, sizeof needle, "got %d", -(w->id + 1));
    pthread_barrier_wait(&g_barrier); /* every thread has failed differently by now */
    if (!strstr(sparseflow_last_error(), needle)) fail(w, "last error was overwritten");

    /* 2. Everyone runs the shared kernel at once, many times. */
    pthread_barrier_wait(&g_barrier);
    for (i = 0; i < ITERS; i++) {
        memset(y, 0xff, M * N * sz);
        if (sparseflow_kernel_run(g_kernel, dx, M, dy, stream) != SPARSEFLOW_STATUS_OK) {
            fail(w, "shared kernel run failed");
            break;
        }
        stream_sync(stream);
        mem_download(y, dy, M * N * sz);
        if (worst_error(y, g_expected, g_dt, M * N) > 1.0) {
            fail(w, "shared kernel gave a wrong result");
            break;
        }
    }

    /* 3. Kernels are created, run and destroyed concurrently on the shared context. */
    own_w = random_buffer(g_dt, N * K, 500 + (uint64_t)w->id);
    if (sparseflow_kernel_create_from_dense(g_ctx, g_dt, N, K, own_w, NULL,
                                            SPARSEFLOW_EPILOGUE_RELU, &own) != SPARSEFLOW_STATUS_OK)
        fail(w, "concurrent kernel create failed");
    else {
        double *w_ref = prune_reference(own_w, g_dt, N, K);
        double *y_ref = gemm_reference(g_x, w_ref, NULL, g_dt, M, N, K, SPARSEFLOW_EPILOGUE_RELU);
        if (sparseflow_kernel_run(own, dx, M, dy, stream) != SPARSEFLOW_STATUS_OK)
            fail(w, "own kernel run failed");
        stream_sync(stream);
        mem_download(y, dy, M * N * sz);
        if (worst_error(y, y_ref, g_dt, M * N) > 1.0) fail(w, "own kernel gave a wrong result");
        if (sparseflow_kernel_destroy(own) != SPARSEFLOW_STATUS_OK) fail(w, "destroy failed");
        if (sparseflow_kernel_destroy(own) != SPARSEFLOW_STATUS_INVALID_HANDLE)
            fail(w, "double destroy not detected");
        free(w_ref);
        free(y_ref);
    }

    stream_destroy(stream);
    mem_free(dx);
    mem_free(dy);
    free(y);
    free(own_w);
    return NULL;
}

int main(int argc, char **argv) {
    pthread_t tids[THREADS];
    Worker workers[THREADS];
    void *w, *bias;
    double *w_ref;
    int i;
    test_init(argc, argv);
    REQUIRE_OK(sparseflow_context_create(g_device, &g_ctx));
    w = random_buffer(g_dt, N * K, 77);
    bias = random_buffer(g_dt, N, 78);
    g_x = random_buffer(g_dt, M * K, 79);
    w_ref = prune_reference(w, g_dt, N, K);
    g_expected = gemm_reference(g_x, w_ref, bias, g_dt, M, N, K, SPARSEFLOW_EPILOGUE_BIAS_SILU);
    REQUIRE_OK(sparseflow_kernel_create_from_dense(g_ctx, g_dt, N, K, w, bias,
                                                   SPARSEFLOW_EPILOGUE_BIAS_SILU, &g_kernel));
    if (pthread_barrier_init(&g_barrier, NULL, THREADS) != 0) {
        fprintf(stderr, "FATAL: pthread_barrier_init\n");
        return 1;
    }
    for (i = 0; i < THREADS; i++) {
        workers[i].id = i;
        workers[i].failures = 0;
        workers[i].first_failure[0] = '\0';
        if (pthread_create(&tids[i], NULL, worker, &workers[i]) != 0) {
            fprintf(stderr, "FATAL: pthread_create\n");
            return 1;
        }
    }
    for (i = 0; i < THREADS; i++) {
        pthread_join(tids[i], NULL);
        EXPECT(workers[i].failures == 0, "thread %d: %d failures, first: %s", i,
               workers[i].failures, workers[i].first_failure);
    }
    /* The main thread's message is its own: still empty, whatever the workers did. */
    EXPECT(strcmp(sparseflow_last_error(), "") == 0, "main thread's last error: '%s'",
           sparseflow_last_error());
    pthread_barrier_destroy(&g_barrier);
    EXPECT_STATUS(sparseflow_kernel_destroy(g_kernel), SPARSEFLOW_STATUS_OK);
    EXPECT_STATUS(sparseflow_context_destroy(g_ctx), SPARSEFLOW_STATUS_OK);
    free(w);
    free(bias);
    free(g_x);
    free(w_ref);
    free(g_expected);
    return finish("threads");
}
