#include "tensor/ops.h"

#include <cmath>
#include <cstring>
#include <string_view>

#include "core/error.h"
#include "kernels/exp_approx.h"
#include "kernels/quants.h"

namespace edgevl::ops {

// Hot element-wise loops are also built for AVX-512 and AVX2 on x86 and picked at load time
// (GCC function multi-versioning); the plain build is the portable path (NEON is baseline on ARM).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define EV_VECTORIZED __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define EV_VECTORIZED
#endif


void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    double ss = 0;  // double: the goldens' float32 tolerance leaves no room for a sloppy mean
    for (int64_t i = 0; i < n; ++i) ss += (double)xr[i] * xr[i];
    const float inv = (float)(1.0 / std::sqrt(ss / n + eps));
    if (w) {
      for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] * inv * w[i];
    } else {
      for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] * inv;
    }
  }
}

void add(float* acc, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += x[i];
}

void add_scaled(float* acc, const float* x, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += s * x[i];
}

void scale(float* x, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

void add_bias(float* y, const float* bias, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) add(y + r * n, bias, n);
}

Activation activation_from_name(const char* hf_name) {
  std::string_view s = hf_name;
  if (s == "silu" || s == "swish") return Activation::Silu;
  if (s == "gelu_pytorch_tanh" || s == "gelu_new" || s == "gelu_fast") return Activation::GeluTanh;
  if (s == "gelu") return Activation::Gelu;
  fail("unsupported activation '", s, "'");
}

namespace {
// tanh(u) = 1 - 2 / (exp(2u) + 1), on exp_approx so loops over it vectorize; ±1 in the limits.
inline float tanh_approx(float u) { return 1.0f - 2.0f / (exp_approx(2.0f * u) + 1.0f); }
inline float silu(float v) { return v / (1.0f + exp_approx(-v)); }
inline float gelu_tanh(float v) {
  // torch.nn.functional.gelu(approximate="tanh").
  const float k = 0.7978845608028654f;  // sqrt(2/pi)
  const float u = k * (v + 0.044715f * v * v * v);
  return 0.5f * v * (1.0f + tanh_approx(u));
}
inline float gelu_erf(float v) { return 0.5f * v * (1.0f + std::erf(v * 0.7071067811865476f)); }
}  // namespace

EV_VECTORIZED
void gated_act(Activation act, const float* gate, const float* up, float* out, int64_t n) {
  switch (act) {
    case Activation::Silu:
      for (int64_t i = 0; i < n; ++i) out[i] = silu(gate[i]) * up[i];
      break;
    case Activation::GeluTanh:
      for (int64_t i = 0; i < n; ++i) out[i] = gelu_tanh(gate[i]) * up[i];
      break;
    case Activation::Gelu:
      for (int64_t i = 0; i < n; ++i) out[i] = gelu_erf(gate[i]) * up[i];
      break;
  }
}

EV_VECTORIZED
void softmax(float* x, int64_t n) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = exp_approx(x[i] - mx);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

EV_VECTORIZED
float log_sum_exp(const float* x, int64_t n) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  if (mx == -INFINITY) return mx;
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += exp_approx(x[i] - mx);
  return mx + std::log(sum);
}

EV_VECTORIZED
void add_exp_scaled(float* acc, const float* x, float shift, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += s * exp_approx(x[i] - shift);
}

EV_VECTORIZED
void softcap(float* x, float cap, int64_t n) {
  const float inv = 1.0f / cap;
  for (int64_t i = 0; i < n; ++i) x[i] = cap * tanh_approx(x[i] * inv);
}

void linear(Context& ctx, const WeightRef& w, const float* x, int64_t rows, float* y, const float* bias) {
  MatmulArgs a;
  a.wtype = w.dtype;
  a.w = w.data;
  a.w_row_bytes = w.row_bytes;
  a.n = w.rows();
  a.k = w.cols();
  a.x = x;
  a.ldx = a.k;
  a.m = rows;
  a.y = y;
  a.ldy = a.n;
  a.packed = w.packed;
  a.layout = w.layout;
  matmul(ctx.kernels, ctx.pool, a);
  if (bias) add_bias(y, bias, rows, a.n);
  if (const LowRankDelta* d = w.delta) {
    std::vector<float> u(rows * d->r), dy(rows * a.n);
    linear(ctx, f32_weight(d->A, d->r, a.k), x, rows, u.data());
    linear(ctx, f32_weight(d->B, a.n, d->r), u.data(), rows, dy.data());
    add_scaled(y, dy.data(), d->scaling, rows * a.n);
  }
}

WeightRef f32_weight(const float* data, int64_t rows, int64_t cols) {
  WeightRef w;
  w.dtype = DType::F32;
  w.shape = {rows, cols};
  w.data = data;
  w.row_bytes = cols * sizeof(float);
  return w;
}

void embedding_row(const WeightRef& table, int64_t id, float* out) {
  EV_ASSERT(id >= 0 && id < table.rows());
  dequantize_row(table.dtype, static_cast<const uint8_t*>(table.data) + id * table.row_bytes, out, table.cols());
}

}  // namespace edgevl::ops
