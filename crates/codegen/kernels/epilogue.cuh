// Epilogue device functions. The expression spliced as SF_EPILOGUE(acc, bias) comes from
// sparseflow_core's EPILOGUES table (EpilogueSpec::cuda_expr); it may call only these.
// All math in fp32; the result is rounded once to the output dtype by the caller.
#pragma once

__device__ __forceinline__ float sf_relu(float x) { return x > 0.0f ? x : 0.0f; }

// x * sigmoid(x). __expf and __fdividef (2 ulp while the divisor is at most 2^126) keep it cheap
// and are exact enough for fp16/bf16 outputs. The IEEE division it replaces measured +1–4% on
// the split-K decode kernels on the H100, whose reducer CTA runs the epilogue on the critical path.
// Limits (checked on the H100 against torch): +inf → inf, NaN → NaN, -inf → NaN, x < -88.7 → -0.
// One band differs: for x in (-88.7, -87.3] the divisor exceeds 2^126 and __fdividef returns -0
// where torch gives -3e-37 to -1e-36 (representable in bf16) — an absolute error below 1e-36.
__device__ __forceinline__ float sf_silu(float x) { return __fdividef(x, 1.0f + __expf(-x)); }

// Exact (erf) GELU, as torch.nn.functional.gelu(approximate="none").
__device__ __forceinline__ float sf_gelu(float x) {
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}

// tanh-approximated GELU, as torch.nn.functional.gelu(approximate="tanh").
__device__ __forceinline__ float sf_gelu_tanh(float x) {
    const float c = 0.79788456080286536f;  // sqrt(2/pi)
    return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
}

// Squared ReLU, max(x, 0)^2, as torch.relu(x).square() (transformers' ReLUSquaredActivation).
// Squared in fp32 and rounded once, so a large x gives +inf exactly when its square exceeds the
// output dtype's range, as the unfused torch op does.
__device__ __forceinline__ float sf_relu2(float x) {
    const float r = sf_relu(x);
    return r * r;
}
