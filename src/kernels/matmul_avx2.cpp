// AVX2 + FMA + F16C kernel table (CPUs without AVX-512 VNNI). Int8 dots use the classic
// sign trick: |w| (u8) x sign(a, w) (s8) with vpmaddubsw, then vpmaddwd by ones; per 32-element
// block one int->float step and one FMA with the product of the two block scales. Entries not
// set here keep the scalar reference; activation quantizers stay the reference ones.
#include <immintrin.h>

#include <cstring>

#include "kernels/blocks.h"
#include "kernels/table.h"

namespace edgevl::kern {

namespace {

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Sum of w[i] * a[i] over 32 signed bytes, as 8 int32 lanes.
inline __m256i dot_i8(__m256i w, __m256i a) {
  const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
  return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

float dot_q8_0_q8_0(int64_t k, const void* w, const void* a) {
  auto* x = static_cast<const BlockQ8_0*>(w);
  auto* y = static_cast<const BlockQ8_0*>(a);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < k / 32; ++b) {
    const __m256i s = dot_i8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs)),
                             _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].qs)));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d)), acc);
  }
  return hsum(acc);
}

float dot_q4_0_q8_0(int64_t k, const void* w, const void* a) {
  auto* x = static_cast<const BlockQ4_0*>(w);
  auto* y = static_cast<const BlockQ8_0*>(a);
  __m256 acc = _mm256_setzero_ps();
  const __m128i m4 = _mm_set1_epi8(0x0F);
  for (int64_t b = 0; b < k / 32; ++b) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[b].qs));
    __m256i wq = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4), _mm_and_si128(q, m4));
    wq = _mm256_sub_epi8(wq, _mm256_set1_epi8(8));
    const __m256i s = dot_i8(wq, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].qs)));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d)), acc);
  }
  return hsum(acc);
}

float dot_f32_avx2(const float* a, const float* b, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  float s = hsum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

float dot_f32_f32(int64_t k, const void* w, const void* a) {
  return dot_f32_avx2(static_cast<const float*>(w), static_cast<const float*>(a), k);
}

float dot_f16_f32(int64_t k, const void* w, const void* a) {
  auto* x = static_cast<const uint16_t*>(w);
  auto* y = static_cast<const float*>(a);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))),
                           _mm256_loadu_ps(y + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i + 8))),
                           _mm256_loadu_ps(y + i + 8), acc1);
  }
  float s = hsum(_mm256_add_ps(acc0, acc1));
  for (; i < k; ++i) s += h2f(x[i]) * y[i];
  return s;
}

KernelTable make_table() {
  KernelTable t = scalar_table();
  t.isa = Isa::Avx2;
  t.w[kQ8_0].vec_dot = &dot_q8_0_q8_0;
  t.w[kQ8_0].gemm = &gemm_from_dot<dot_q8_0_q8_0>;
  t.w[kQ4_0].vec_dot = &dot_q4_0_q8_0;
  t.w[kQ4_0].gemm = &gemm_from_dot<dot_q4_0_q8_0>;
  t.w[kF32].vec_dot = &dot_f32_f32;
  t.w[kF32].gemm = &gemm_from_dot<dot_f32_f32>;
  t.w[kF16].vec_dot = &dot_f16_f32;
  t.w[kF16].gemm = &gemm_from_dot<dot_f16_f32>;
  t.dot_f32 = &dot_f32_avx2;
  return t;
}

}  // namespace

const KernelTable& avx2_table() {
  static const KernelTable t = make_table();
  return t;
}

}  // namespace edgevl::kern
