// Element-wise and row-wise float32 ops on activations. Each op is one function over raw rows,
// mirroring the PyTorch expression it replaces (named in the comment).
#pragma once
#include <cstdint>

#include "tensor/context.h"
#include "tensor/tensor.h"

namespace edgevl::ops {

// y[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w   (T rows of n); w == nullptr means no scale.
// Gemma's (1 + w) form is handled at load time (kNormPlusOneHf), so one kernel serves both.
void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps);

void add(float* acc, const float* x, int64_t n);                   // acc += x
void add_scaled(float* acc, const float* x, float s, int64_t n);   // acc += s * x
void scale(float* x, float s, int64_t n);                          // x *= s
void add_bias(float* y, const float* bias, int64_t rows, int64_t n);

// out = act(gate) * up, the gated MLP's middle (SwiGLU / GeGLU).
enum class Activation { Silu, GeluTanh, Gelu };
Activation activation_from_name(const char* hf_name);  // "silu", "gelu_pytorch_tanh", "gelu", ...
void gated_act(Activation act, const float* gate, const float* up, float* out, int64_t n);

void softmax(float* x, int64_t n);
// log Σ exp(x) (max-shifted; the sum in float, exact to a few ulp for any vocabulary size we meet).
float log_sum_exp(const float* x, int64_t n);
// acc += s · exp(x - shift): a softmax row scaled into a gradient without materialising it.
void add_exp_scaled(float* acc, const float* x, float shift, float s, int64_t n);
void softcap(float* x, float cap, int64_t n);  // x = cap * tanh(x / cap)

// y[T, N] = x[T, K] · Wᵀ (+ bias): a linear layer with any weight dtype.
void linear(Context& ctx, const WeightRef& w, const float* x, int64_t rows, float* y, const float* bias = nullptr);
// A float32 matrix [rows, cols] in memory as a WeightRef (LoRA factors, tests).
WeightRef f32_weight(const float* data, int64_t rows, int64_t cols);

// Row `id` of an embedding table of any dtype, as floats.
void embedding_row(const WeightRef& table, int64_t id, float* out);

}  // namespace edgevl::ops
