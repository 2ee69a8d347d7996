// NEON (AArch64, with the dot-product extension) kernel table. Signed int8 dot products map
// directly onto vdotq_s32 (s8 x s8), so no zero-point offset is needed here: Q4_0 nibbles are
// recentred to [-8, 7] and multiplied with the Q8_0 activations as they are. Entries not listed
// keep the scalar reference (the packed panel path is x86-only for now).
#include <arm_neon.h>

#include <cstring>

#include "core/fp16.h"
#include "kernels/blocks.h"
#include "kernels/table.h"

namespace edgevl::kern {

namespace {

inline float h2f(uint16_t h) {
  __fp16 v;
  std::memcpy(&v, &h, 2);
  return (float)v;
}

inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
  return vdotq_s32(acc, a, b);
#else
  const int16x8_t lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
  const int16x8_t hi = vmull_s8(vget_high_s8(a), vget_high_s8(b));
  return vaddq_s32(acc, vaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi)));
#endif
}

float dot_q8_0_q8_0(int64_t k, const void* w, const void* a) {
  auto* x = static_cast<const BlockQ8_0*>(w);
  auto* y = static_cast<const BlockQ8_0*>(a);
  float32x4_t acc = vdupq_n_f32(0.f);
  for (int64_t b = 0; b < k / 32; ++b) {
    int32x4_t s = vdupq_n_s32(0);
    s = dot16(s, vld1q_s8(x[b].qs), vld1q_s8(y[b].qs));
    s = dot16(s, vld1q_s8(x[b].qs + 16), vld1q_s8(y[b].qs + 16));
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), h2f(x[b].d) * h2f(y[b].d));
  }
  return vaddvq_f32(acc);
}

float dot_q4_0_q8_0(int64_t k, const void* w, const void* a) {
  auto* x = static_cast<const BlockQ4_0*>(w);
  auto* y = static_cast<const BlockQ8_0*>(a);
  const uint8x16_t m4 = vdupq_n_u8(0x0F);
  const int8x16_t s8 = vdupq_n_s8(8);
  float32x4_t acc = vdupq_n_f32(0.f);
  for (int64_t b = 0; b < k / 32; ++b) {
    const uint8x16_t q = vld1q_u8(x[b].qs);
    const int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, m4)), s8);
    const int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), s8);
    int32x4_t s = vdupq_n_s32(0);
    s = dot16(s, lo, vld1q_s8(y[b].qs));
    s = dot16(s, hi, vld1q_s8(y[b].qs + 16));
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), h2f(x[b].d) * h2f(y[b].d));
  }
  return vaddvq_f32(acc);
}

float dot_f32_neon(const float* a, const float* b, int64_t n) {
  float32x4_t acc0 = vdupq_n_f32(0.f), acc1 = vdupq_n_f32(0.f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vld1q_f32(b + i));
    acc1 = vfmaq_f32(acc1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
  }
  float s = vaddvq_f32(vaddq_f32(acc0, acc1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

float dot_f32_f32(int64_t k, const void* w, const void* a) {
  return dot_f32_neon(static_cast<const float*>(w), static_cast<const float*>(a), k);
}

float dot_f16_f32(int64_t k, const void* w, const void* a) {
  auto* x = static_cast<const __fp16*>(w);
  auto* y = static_cast<const float*>(a);
  float32x4_t acc0 = vdupq_n_f32(0.f), acc1 = vdupq_n_f32(0.f);
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    const float16x8_t h = vld1q_f16(x + i);
    acc0 = vfmaq_f32(acc0, vcvt_f32_f16(vget_low_f16(h)), vld1q_f32(y + i));
    acc1 = vfmaq_f32(acc1, vcvt_high_f32_f16(h), vld1q_f32(y + i + 4));
  }
  float s = vaddvq_f32(vaddq_f32(acc0, acc1));
  for (; i < k; ++i) s += (float)x[i] * y[i];
  return s;
}

KernelTable make_table() {
  KernelTable t = scalar_table();
  t.isa = Isa::Neon;
  t.w[kQ8_0].vec_dot = &dot_q8_0_q8_0;
  t.w[kQ8_0].gemm = &gemm_from_dot<dot_q8_0_q8_0>;
  t.w[kQ4_0].vec_dot = &dot_q4_0_q8_0;
  t.w[kQ4_0].gemm = &gemm_from_dot<dot_q4_0_q8_0>;
  t.w[kF32].vec_dot = &dot_f32_f32;
  t.w[kF32].gemm = &gemm_from_dot<dot_f32_f32>;
  t.w[kF16].vec_dot = &dot_f16_f32;
  t.w[kF16].gemm = &gemm_from_dot<dot_f16_f32>;
  t.dot_f32 = &dot_f32_neon;
  return t;
}

}  // namespace

const KernelTable& neon_table() {
  static const KernelTable t = make_table();
  return t;
}

}  // namespace edgevl::kern
