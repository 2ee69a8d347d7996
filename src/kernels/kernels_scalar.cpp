// The scalar reference table: the test oracle for every SIMD table. The quantized dot products
// follow ggml's generic vec_dot_*: integer sums per block, then one float multiply by the product
// of the two block scales (plus the min term for the _1 and K formats), so results match
// llama.cpp's to float rounding.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "kernels/blocks.h"
#include "kernels/exp_approx.h"
#include "kernels/quants.h"
#include "kernels/table.h"

namespace edgevl::kern {

namespace {

inline float h2f(uint16_t h) { return f16_to_f32(h); }

// ---- float types (double accumulation, as ggml's scalar path does) ----

float dot_f32_f32(int64_t k, const void* w, const void* a) {
  auto* x = static_cast<const float*>(w);
  auto* y = static_cast<const float*>(a);
  double s = 0;
  for (int64_t i = 0; i < k; ++i) s += (double)(x[i] * y[i]);
  return (float)s;
}

float dot_f16_f32(int64_t k, const void* w, const void* a) {
  auto* x = static_cast<const uint16_t*>(w);
  auto* y = static_cast<const float*>(a);
  double s = 0;
  for (int64_t i = 0; i < k; ++i) s += (double)(h2f(x[i]) * y[i]);
  return (float)s;
}

float dot_bf16_bf16(int64_t k, const void* w, const void* a) {
  auto* x = static_cast<const uint16_t*>(w);
  auto* y = static_cast<const uint16_t*>(a);
  double s = 0;
  for (int64_t i = 0; i < k; ++i) s += (double)(bf16_to_f32(x[i]) * bf16_to_f32(y[i]));
  return (float)s;
}

// ---- legacy formats against Q8_0 / Q8_1 ----

float dot_q4_0_q8_0(int64_t k, const void* w, const void* a) {
  auto* x = static_cast<const BlockQ4_0*>(w);
  auto* y = static_cast<const BlockQ8_0*>(a);
  float sumf = 0;
  for (int64_t ib = 0; ib < k / QK; ++ib) {
    int sumi0 = 0, sumi1 = 0;
    for (int j = 0; j < QK / 2; ++j) {
      sumi0 += ((x[ib].qs[j] & 0x0F) - 8) * y[ib].qs[j];
      sumi1 += ((x[ib].qs[j] >> 4) - 8) * y[ib].qs[j + QK / 2];
    }
    sumf += (sumi0 + sumi1) * h2f(x[ib].d) * h2f(y[ib].d);
  }
  return sumf;
}

float dot_q4_1_q8_1(int64_t k, const void* w, const void* a) {
  auto* x = static_cast<const BlockQ4_1*>(w);
  auto* y = static_cast<const BlockQ8_1*>(a);
  float sumf = 0;
  for (int64_t ib = 0; ib < k / QK; ++ib) {
    int sumi0 = 0, sumi1 = 0;
    for (int j = 0; j < QK / 2; ++j) {
      sumi0 += (x[ib].qs[j] & 0x0F) * y[ib].qs[j];
      sumi1 += (x[ib].qs[j] >> 4) * y[ib].qs[j + QK / 2];
    }
    sumf += (h2f(x[ib].d) * h2f(y[ib].d)) * (sumi0 + sumi1) + h2f(x[ib].m) * h2f(y[ib].s);
  }
  return sumf;
}

float dot_q5_0_q8_0(int64_t k, const void* w, const void* a) {
  auto* x = static_cast<const BlockQ5_0*>(w);
  auto* y = static_cast<const BlockQ8_0*>(a);
  float sumf = 0;
  for (int64_t ib = 0; ib < k / QK; ++ib) {
    uint32_t qh;
    std::memcpy(&qh, x[ib].qh, 4);
    int sumi0 = 0, sumi1 = 0;
    for (int j = 0; j < QK / 2; ++j) {
      const uint8_t xh0 = ((qh >> j) << 4) & 0x10, xh1 = (qh >> (j + 12)) & 0x10;
      sumi0 += (((x[ib].qs[j] & 0x0F) | xh0) - 16) * y[ib].qs[j];
      sumi1 += (((x[ib].qs[j] >> 4) | xh1) - 16) * y[ib].qs[j + QK / 2];
    }
    sumf += (h2f(x[ib].d) * h2f(y[ib].d)) * (sumi0 + sumi1);
  }
  return sumf;
}

float dot_q5_1_q8_1(int64_t k, const void* w, const void* a) {
  auto* x = static_cast<const BlockQ5_1*>(w);
  auto* y = static_cast<const BlockQ8_1*>(a);
  float sumf = 0;
  for (int64_t ib = 0; ib < k / QK; ++ib) {
    uint32_t qh;
    std::memcpy(&qh, x[ib].qh, 4);
    int sumi0 = 0, sumi1 = 0;
    for (int j = 0; j < QK / 2; ++j) {
      const uint8_t xh0 = ((qh >> j) << 4) & 0x10, xh1 = (qh >> (j + 12)) & 0x10;
      sumi0 += ((x[ib].qs[j] & 0x0F) | xh0) * y[ib].qs[j];
      sumi1 += ((x[ib].qs[j] >> 4) | xh1) * y[ib].qs[j + QK / 2];
    }
    sumf += (h2f(x[ib].d) * h2f(y[ib].d)) * (sumi0 + sumi1) + h2f(x[ib].m) * h2f(y[ib].s);
  }
  return sumf;
}

float dot_q8_0_q8_0(int64_t k, const void* w, const void* a) {
  auto* x = static_cast<const BlockQ8_0*>(w);
  auto* y = static_cast<const BlockQ8_0*>(a);
  float sumf = 0;
  for (int64_t ib = 0; ib < k / QK; ++ib) {
    int sumi = 0;
    for (int j = 0; j < QK; ++j) sumi += x[ib].qs[j] * y[ib].qs[j];
    sumf += sumi * (h2f(x[ib].d) * h2f(y[ib].d));
  }
  return sumf;
}

// ---- K-quants against Q8_K ----
// Per super-block: integer sum of scale_j * dot(sub-block j) times d_w * d_a, minus
// dmin_w * d_a * sum_j min_j * (sum of the activation quants of sub-block j) (from bsums).

float dot_q4_K_q8_K(int64_t k, const void* w, const void* a) {
  auto* x = static_cast<const BlockQ4_K*>(w);
  auto* y = static_cast<const BlockQ8_K*>(a);
  float sumf = 0;
  for (int64_t i = 0; i < k / QK_K; ++i) {
    int sumi = 0, summ = 0;
    const uint8_t* q4 = x[i].qs;
    const int8_t* q8 = y[i].qs;
    for (int j = 0; j < QK_K / 64; ++j, q4 += 32, q8 += 64) {
      uint8_t sc0, m0, sc1, m1;
      get_scale_min_k4(2 * j, x[i].scales, &sc0, &m0);
      get_scale_min_k4(2 * j + 1, x[i].scales, &sc1, &m1);
      int s0 = 0, s1 = 0;
      for (int l = 0; l < 32; ++l) {
        s0 += (q4[l] & 0xF) * q8[l];
        s1 += (q4[l] >> 4) * q8[l + 32];
      }
      sumi += sc0 * s0 + sc1 * s1;
      summ += m0 * (y[i].bsums[4 * j] + y[i].bsums[4 * j + 1]) + m1 * (y[i].bsums[4 * j + 2] + y[i].bsums[4 * j + 3]);
    }
    const float d = h2f(x[i].d) * y[i].d;
    const float dmin = h2f(x[i].dmin) * y[i].d;
    sumf += d * sumi - dmin * summ;
  }
  return sumf;
}

float dot_q5_K_q8_K(int64_t k, const void* w, const void* a) {
  auto* x = static_cast<const BlockQ5_K*>(w);
  auto* y = static_cast<const BlockQ8_K*>(a);
  float sumf = 0;
  for (int64_t i = 0; i < k / QK_K; ++i) {
    int sumi = 0, summ = 0;
    const uint8_t* ql = x[i].qs;
    const uint8_t* qh = x[i].qh;
    const int8_t* q8 = y[i].qs;
    for (int j = 0; j < QK_K / 64; ++j, ql += 32, q8 += 64) {
      uint8_t sc0, m0, sc1, m1;
      get_scale_min_k4(2 * j, x[i].scales, &sc0, &m0);
      get_scale_min_k4(2 * j + 1, x[i].scales, &sc1, &m1);
      const uint8_t u0 = 1 << (2 * j), u1 = 2 << (2 * j);
      int s0 = 0, s1 = 0;
      for (int l = 0; l < 32; ++l) {
        s0 += ((ql[l] & 0xF) + (qh[l] & u0 ? 16 : 0)) * q8[l];
        s1 += ((ql[l] >> 4) + (qh[l] & u1 ? 16 : 0)) * q8[l + 32];
      }
      sumi += sc0 * s0 + sc1 * s1;
      summ += m0 * (y[i].bsums[4 * j] + y[i].bsums[4 * j + 1]) + m1 * (y[i].bsums[4 * j + 2] + y[i].bsums[4 * j + 3]);
    }
    const float d = h2f(x[i].d) * y[i].d;
    const float dmin = h2f(x[i].dmin) * y[i].d;
    sumf += d * sumi - dmin * summ;
  }
  return sumf;
}

float dot_q6_K_q8_K(int64_t k, const void* w, const void* a) {
  auto* x = static_cast<const BlockQ6_K*>(w);
  auto* y = static_cast<const BlockQ8_K*>(a);
  float sumf = 0;
  for (int64_t i = 0; i < k / QK_K; ++i) {
    const uint8_t* ql = x[i].ql;
    const uint8_t* qh = x[i].qh;
    const int8_t* q8 = y[i].qs;
    int sumi = 0;
    for (int n0 = 0; n0 < QK_K; n0 += 128, ql += 64, qh += 32, q8 += 128) {
      const int8_t* sc = x[i].scales + n0 / 16;
      int s[8] = {};  // one per 16-element sub-block of this 128-element half
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        s[is + 0] += q1 * q8[l];
        s[is + 2] += q2 * q8[l + 32];
        s[is + 4] += q3 * q8[l + 64];
        s[is + 6] += q4 * q8[l + 96];
      }
      for (int j = 0; j < 8; ++j) sumi += sc[j] * s[j];
    }
    sumf += h2f(x[i].d) * y[i].d * sumi;
  }
  return sumf;
}

float dot_f32_plain(const float* a, const float* b, int64_t n) { return dot_f32_f32(n, a, b); }

void gelu_tanh_mul_plain(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = gate[i];
    const float u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
    out[i] = 0.5f * v * (2.0f - 2.0f / (exp_approx(2.0f * u) + 1.0f)) * up[i];
  }
}

bool softmax_f32_plain(float* x, int64_t n) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  if (mx == -INFINITY) return false;
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = exp_approx(x[i] - mx);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
  return true;
}

template <DType T>
void quantize_as(const float* x, void* out, int64_t k) {
  quantize_row(T, x, out, k);
}

template <DType Act, VecDotFn Dot>
WeightKernels entry() {
  return WeightKernels{Act, &quantize_as<Act>, Dot, &gemm_from_dot<Dot>, PanelKernels{}, PackedKernels{}};
}

KernelTable make_scalar_table() {
  KernelTable t;
  t.isa = Isa::Scalar;
  t.w[kF32] = entry<DType::F32, dot_f32_f32>();
  // F16 weights take float activations: no activation rounding, and the SIMD kernels convert
  // only the weight (one F16C conversion per weight element, reused across activation rows).
  t.w[kF16] = entry<DType::F32, dot_f16_f32>();
  // BF16 weights take BF16 activations (like llama.cpp), for AVX-512 BF16's vdpbf16ps.
  t.w[kBF16] = entry<DType::BF16, dot_bf16_bf16>();
  t.w[kQ4_0] = entry<DType::Q8_0, dot_q4_0_q8_0>();
  t.w[kQ4_1] = entry<DType::Q8_1, dot_q4_1_q8_1>();
  t.w[kQ5_0] = entry<DType::Q8_0, dot_q5_0_q8_0>();
  t.w[kQ5_1] = entry<DType::Q8_1, dot_q5_1_q8_1>();
  t.w[kQ8_0] = entry<DType::Q8_0, dot_q8_0_q8_0>();
  t.w[kQ4_K] = entry<DType::Q8_K, dot_q4_K_q8_K>();
  t.w[kQ5_K] = entry<DType::Q8_K, dot_q5_K_q8_K>();
  t.w[kQ6_K] = entry<DType::Q8_K, dot_q6_K_q8_K>();
  t.dot_f32 = &dot_f32_plain;
  t.softmax_f32 = &softmax_f32_plain;
  t.gelu_tanh_mul_f32 = &gelu_tanh_mul_plain;
  t.gemm_mr = 4;
  t.gemm_nr = 4;
  return t;
}

}  // namespace

int weight_slot(DType t) {
  switch (t) {
    case DType::F32: return kF32;
    case DType::F16: return kF16;
    case DType::BF16: return kBF16;
    case DType::Q4_0: return kQ4_0;
    case DType::Q4_1: return kQ4_1;
    case DType::Q5_0: return kQ5_0;
    case DType::Q5_1: return kQ5_1;
    case DType::Q8_0: return kQ8_0;
    case DType::Q4_K: return kQ4_K;
    case DType::Q5_K: return kQ5_K;
    case DType::Q6_K: return kQ6_K;
    default: return -1;
  }
}

const KernelTable& scalar_table() {
  static const KernelTable t = make_scalar_table();
  return t;
}

}  // namespace edgevl::kern
