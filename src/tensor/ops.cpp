#include "tensor/ops.h"

#include <cmath>
#include <cstring>
#include <string_view>

#include "core/error.h"
#include "kernels/quants.h"

namespace edgevl::ops {

void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps, float weight_offset) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    double ss = 0;  // double: the goldens' float32 tolerance leaves no room for a sloppy mean
    for (int64_t i = 0; i < n; ++i) ss += (double)xr[i] * xr[i];
    const float inv = (float)(1.0 / std::sqrt(ss / n + eps));
    if (w) {
      for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] * inv * (w[i] + weight_offset);
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
inline float silu(float v) { return v / (1.0f + std::exp(-v)); }
inline float gelu_tanh(float v) {
  // torch.nn.functional.gelu(approximate="tanh")
  const float k = 0.7978845608028654f;  // sqrt(2/pi)
  return 0.5f * v * (1.0f + std::tanh(k * (v + 0.044715f * v * v * v)));
}
inline float gelu_erf(float v) { return 0.5f * v * (1.0f + std::erf(v * 0.7071067811865476f)); }
}  // namespace

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

void softmax(float* x, int64_t n) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = (float)(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void softcap(float* x, float cap, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = cap * std::tanh(x[i] / cap);
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
  matmul(ctx.kernels, ctx.pool, a);
  if (bias) add_bias(y, bias, rows, a.n);
}

void embedding_row(const WeightRef& table, int64_t id, float* out) {
  EV_ASSERT(id >= 0 && id < table.rows());
  dequantize_row(table.dtype, static_cast<const uint8_t*>(table.data) + id * table.row_bytes, out, table.cols());
}

}  // namespace edgevl::ops
