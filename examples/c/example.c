/*
 * The smallest complete use of libsparseflow: one 2:4 sparse linear layer with a fused
 * bias + ReLU, run on the CPU backend. Build: see Makefile (or docs/C_API.md).
 */
#include <stdio.h>
#include <stdlib.h>

#include "sparseflow.h"

/* Every call returns a status; on failure sparseflow_last_error() says what and why. */
#define TRY(call)                                                                      \
    do {                                                                               \
        SparseFlowStatus status_ = (call);                                             \
        if (status_ != SPARSEFLOW_STATUS_OK) {                                         \
            fprintf(stderr, "%s failed: %s\n  %s\n", #call,                            \
                    sparseflow_status_string(status_), sparseflow_last_error());       \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

int main(void) {
    enum { N = 4, K = 8, M = 2 }; /* out_features, in_features, tokens */
    /* nn.Linear layout: weight [N, K], row-major. Not 2:4 yet: it is magnitude-pruned. */
    static const float weight[N * K] = {
        0.5f, -1.0f, 0.25f, 2.0f,  1.0f,  0.0f, -3.0f, 0.5f,  /* row 0 */
        -2.0f, 0.5f, 1.5f,  0.0f,  0.0f,  1.0f, 1.0f,  -1.0f, /* row 1 */
        1.0f,  1.0f, 1.0f,  1.0f,  -0.5f, 0.5f, 2.0f,  -2.0f, /* row 2 */
        0.0f,  0.0f, 0.0f,  4.0f,  3.0f,  0.0f, 0.0f,  0.0f,  /* row 3 */
    };
    static const float bias[N] = {0.5f, -0.5f, 0.0f, 1.0f};
    static const float x[M * K] = {1, 2, 3, 4, 5, 6, 7, 8, -1, 0, 1, 0, -1, 0, 1, 0};
    float y[M * N];
    SparseFlowContext ctx = NULL;
    SparseFlowKernel layer = NULL;
    uint32_t version = sparseflow_abi_version();
    int i;

    if (version >> 16 != SPARSEFLOW_ABI_VERSION_MAJOR) {
        fprintf(stderr, "libsparseflow ABI %u.x, built against %d.x\n", version >> 16,
                SPARSEFLOW_ABI_VERSION_MAJOR);
        return 1;
    }
    TRY(sparseflow_context_create(-1, &ctx)); /* -1: CPU backend; 0: first CUDA GPU */
    /* F32 runs on the CPU backend; GPU contexts take SPARSEFLOW_DTYPE_F16 / BF16 (uint16_t). */
    TRY(sparseflow_kernel_create_from_dense(ctx, SPARSEFLOW_DTYPE_F32, N, K, weight, bias,
                                            SPARSEFLOW_EPILOGUE_BIAS_RELU, &layer));
    /* The layer keeps its own copy of the weight; the context handle may go now. */
    TRY(sparseflow_context_destroy(ctx));
    TRY(sparseflow_kernel_run(layer, x, M, y, NULL)); /* y = relu(x . W^T + bias) */
    for (i = 0; i < M * N; i++) printf("y[%d] = %g\n", i, y[i]);
    TRY(sparseflow_kernel_destroy(layer));
    return 0;
}
