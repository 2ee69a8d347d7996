// AVX-512 (F, BW, VL, VNNI; BF16 where present) kernel table: activation quantizers, the direct
// kernels used for few activation rows (decode), and dot_f32. Many rows go to the panel kernels
// (panel_avx512.cpp). Direct kernels read GGUF blocks in place: per 32-element block one
// vpdpbusd (u8 x s8) per (weight row, activation row) pair; a weight's signed quants are
// offset to unsigned (u = q + Z) and the offset is taken back with Z * sum(a), computed once per
// activation block and shared by the NR weight rows of the tile.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "kernels/blocks.h"
#include "kernels/panel.h"
#include "kernels/quants.h"

namespace edgevl::kern {

namespace {

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }
inline uint16_t f2h(float f) { return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }

inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// ---- activation quantizers, byte-identical with quants.cpp ----

// roundf (ties away from zero), as the reference Q8_0 quantizer uses, not the hardware's ties-to-even.
inline __m512 round_away(__m512 v) {
  const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m512 frac = _mm512_abs_ps(_mm512_sub_ps(v, t));
  const __m512 one = _mm512_or_ps(_mm512_and_ps(v, _mm512_set1_ps(-0.0f)), _mm512_set1_ps(1.0f));
  return _mm512_mask_add_ps(t, _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ), t, one);
}

template <bool kSum>
inline void quant_block_q8(const float* x, uint16_t* d_out, int8_t* qs, uint16_t* s_out) {
  const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
  const float d = amax / 127;
  const float id = d ? 1.0f / d : 0.0f;
  *d_out = f2h(d);
  const __m512i q0 = _mm512_cvttps_epi32(round_away(_mm512_mul_ps(v0, _mm512_set1_ps(id))));
  const __m512i q1 = _mm512_cvttps_epi32(round_away(_mm512_mul_ps(v1, _mm512_set1_ps(id))));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs), _mm512_cvtepi32_epi8(q0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + 16), _mm512_cvtepi32_epi8(q1));
  if constexpr (kSum) *s_out = f2h(_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1)) * d);
}

void quantize_q8_0_avx512(const float* x, void* out, int64_t k) {
  auto* y = static_cast<BlockQ8_0*>(out);
  for (int64_t i = 0; i < k / 32; ++i) quant_block_q8<false>(x + 32 * i, &y[i].d, y[i].qs, nullptr);
}

void quantize_q8_1_avx512(const float* x, void* out, int64_t k) {
  auto* y = static_cast<BlockQ8_1*>(out);
  for (int64_t i = 0; i < k / 32; ++i) quant_block_q8<true>(x + 32 * i, &y[i].d, y[i].qs, &y[i].s);
}

void quantize_q8_K_avx512(const float* x, void* out, int64_t k) {
  auto* y = static_cast<BlockQ8_K*>(out);
  for (int64_t i = 0; i < k / QK_K; ++i, x += QK_K) {
    __m512 m = _mm512_setzero_ps();
    for (int j = 0; j < QK_K; j += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + j)));
    const float amax = _mm512_reduce_max_ps(m);
    if (!amax) {
      std::memset(&y[i], 0, sizeof(BlockQ8_K));
      continue;
    }
    float max = 0;  // the first element of largest magnitude, with its sign (as the reference)
    for (int j = 0; j < QK_K; j += 16) {
      __mmask16 hit = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + j)), _mm512_set1_ps(amax), _CMP_EQ_OQ);
      if (hit) {
        max = x[j + __builtin_ctz(hit)];
        break;
      }
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < QK_K; j += 16) {
      // cvtps rounds to nearest even, like the reference's nearest_int.
      __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + j), _mm512_set1_ps(iscale)));
      q = _mm512_min_epi32(q, _mm512_set1_epi32(127));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y[i].qs + j), _mm512_cvtsepi32_epi8(q));
      y[i].bsums[j / 16] = (int16_t)_mm512_reduce_add_epi32(q);
    }
    y[i].d = 1 / iscale;
  }
}

void quantize_bf16_avx512(const float* x, void* out, int64_t k) {
  auto* y = static_cast<uint16_t*>(out);
  int64_t i = 0;
#if defined(__AVX512BF16__)
  for (; i + 16 <= k; i += 16) {
    // The reference rounds NaN to a quiet NaN and keeps subnormals; the hardware flushes
    // subnormals, so only finite normal inputs take this path bit-exactly. Activations are.
    __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(x + i));
    std::memcpy(y + i, &h, 32);
  }
#endif
  for (; i < k; ++i) y[i] = f32_to_bf16(x[i]);
}

// ---- direct kernels for legacy quants (MR activation rows x NR weight rows) ----

struct Q8_0W {
  using B = BlockQ8_0;
  static constexpr int Z = 128;
  static constexpr bool kMin = false;
  static constexpr bool kSplit16 = false;  // lane layout of u2, see legacy_m1
  static __m512i u2(const B* b) {
    const __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[0].qs))),
                                         _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[1].qs)), 1);
    return _mm512_xor_si512(q, _mm512_set1_epi8((char)0x80));
  }
  static __m256i u(const B& b) {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs)), _mm256_set1_epi8((char)0x80));
  }
};
inline __m256i nib32(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i m = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
}
inline __m256i hi5(const uint8_t* qh) {
  uint32_t h;
  std::memcpy(&h, qh, 4);
  return _mm256_and_si256(_mm256_movm_epi8(h), _mm256_set1_epi8(0x10));
}
inline __m512i nib64(const uint8_t* qs0, const uint8_t* qs1) {  // two blocks' 16 bytes -> 64 nibbles
  const __m256i q = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(qs1), reinterpret_cast<const __m128i*>(qs0));
  const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
  return _mm512_and_si512(z, _mm512_set1_epi8(0x0F));
}
struct Q4_0W {
  using B = BlockQ4_0;
  static constexpr int Z = 8;
  static constexpr bool kMin = false;
  static constexpr bool kSplit16 = true;
  static __m512i u2(const B* b) { return nib64(b[0].qs, b[1].qs); }
  static __m256i u(const B& b) { return nib32(b.qs); }
};
struct Q5_0W {
  using B = BlockQ5_0;
  static constexpr int Z = 16;
  static constexpr bool kMin = false;
  static constexpr bool kSplit16 = true;
  static __m512i u2(const B* b) {
    // qh bit j is the 5th bit of element j: bits 0-15 go to the low-nibble lanes, 16-31 to the high.
    uint32_t h0, h1;
    std::memcpy(&h0, b[0].qh, 4);
    std::memcpy(&h1, b[1].qh, 4);
    const uint64_t m = (uint64_t)(h0 & 0xFFFF) | (uint64_t)(h1 & 0xFFFF) << 16 | (uint64_t)(h0 >> 16) << 32 |
                       (uint64_t)(h1 >> 16) << 48;
    return _mm512_or_si512(nib64(b[0].qs, b[1].qs), _mm512_maskz_mov_epi8(m, _mm512_set1_epi8(0x10)));
  }
  static __m256i u(const B& b) { return _mm256_or_si256(nib32(b.qs), hi5(b.qh)); }
};
struct Q4_1W {
  using B = BlockQ4_1;
  static constexpr int Z = 0;
  static constexpr bool kMin = true;
  static __m256i u(const B& b) { return nib32(b.qs); }
};
struct Q5_1W {
  using B = BlockQ5_1;
  static constexpr int Z = 0;
  static constexpr bool kMin = true;
  static __m256i u(const B& b) { return _mm256_or_si256(nib32(b.qs), hi5(b.qh)); }
};

template <class W, int MR, int NR>
void legacy_tile(int64_t k, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, int64_t ldy) {
  using A = std::conditional_t<W::kMin, BlockQ8_1, BlockQ8_0>;
  __m256 acc[MR][NR];
  float macc[MR][NR] = {};
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
  for (int64_t b = 0; b < k / 32; ++b) {
    __m256i av[MR], zc[MR];
    float da[MR], sa[MR];
    for (int i = 0; i < MR; ++i) {
      const A& ab = reinterpret_cast<const A*>(a + i * as)[b];
      av[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ab.qs));
      da[i] = h2f(ab.d);
      if constexpr (W::kMin) sa[i] = h2f(ab.s);
      if constexpr (W::Z != 0)
        zc[i] = _mm256_sub_epi32(_mm256_setzero_si256(),
                                 _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8((char)W::Z), av[i]));
      else
        zc[i] = _mm256_setzero_si256();
    }
    for (int j = 0; j < NR; ++j) {
      const auto& wb = reinterpret_cast<const typename W::B*>(w + j * ws)[b];
      const __m256i u = W::u(wb);
      const float dw = h2f(wb.d);
      for (int i = 0; i < MR; ++i) {
        const __m256i s = _mm256_dpbusd_epi32(zc[i], u, av[i]);
        acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(dw * da[i]), acc[i][j]);
        if constexpr (W::kMin) macc[i][j] += h2f(wb.m) * sa[i];
      }
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) y[i * ldy + j] = hsum256(acc[i][j]) + macc[i][j];
}

// ---- decode kernels (one activation row, NR weight rows): two blocks per 512-bit vector ----
// Per pair of blocks the activation vector, its zero-point correction and its scales are built
// once and shared by the NR rows; per row the work is one unpack, one vpdpbusd, one int->float
// and one FMA into a per-row float accumulator, with a single horizontal sum at the end.
// Weights' scales for the two blocks are converted together (two halves in one vcvtph2ps).
// Lane layout of a pair (b, b+1): kSplit16 formats (4-bit quants: low nibbles = elements 0-15,
// high = 16-31) hold [b 0-15 | b+1 0-15 | b 16-31 | b+1 16-31] in the four 128-bit lanes; Q8_0
// holds [b | b+1] in the two 256-bit halves.

// Decode streams weights from DRAM in short rows (a few KB); hardware prefetchers alone leave
// the core waiting, so each row prefetches this many bytes ahead (rows are contiguous).
constexpr int kPrefetchBytes = 32768;
constexpr auto kPrefetchHint = _MM_HINT_T1;  // into L2: measured well ahead of T0 (L1 fill buffers)

template <class W, int NR>
void legacy_m1(int64_t k, const uint8_t* w, size_t ws, const uint8_t* a, float* y) {
  const auto* ab = reinterpret_cast<const BlockQ8_0*>(a);
  const int64_t nb = k / 32;
  // vpermps pattern spreading [s_b, s_b+1] over the lanes of each block.
  const __m512i spread = W::kSplit16 ? _mm512_set_epi32(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0)
                                     : _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  __m512 acc[NR];
  for (int j = 0; j < NR; ++j) acc[j] = _mm512_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    __m512i av = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ab[b].qs))),
                                    _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ab[b + 1].qs)), 1);
    if constexpr (W::kSplit16) av = _mm512_shuffle_i64x2(av, av, _MM_SHUFFLE(3, 1, 2, 0));
    const __m512i zc = _mm512_sub_epi32(_mm512_setzero_si512(),
                                        _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)W::Z), av));
    const uint32_t dab = uint32_t(ab[b].d) | uint32_t(ab[b + 1].d) << 16;
    const __m128 da = _mm_cvtph_ps(_mm_cvtsi32_si128((int)dab));
    for (int j = 0; j < NR; ++j) {
      const auto* wb = reinterpret_cast<const typename W::B*>(w + j * ws) + b;
      _mm_prefetch(reinterpret_cast<const char*>(wb) + kPrefetchBytes, kPrefetchHint);
      const __m512i dot = _mm512_dpbusd_epi32(zc, W::u2(wb), av);
      const uint32_t dwb = uint32_t(wb[0].d) | uint32_t(wb[1].d) << 16;
      const __m128 s = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)dwb)), da);
      acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(s)), acc[j]);
    }
  }
  float tail[NR] = {};
  if (b < nb) legacy_tile<W, 1, NR>(32, w + b * sizeof(typename W::B), ws, a + b * sizeof(BlockQ8_0), 0, tail, 1);
  for (int j = 0; j < NR; ++j) y[j] = _mm512_reduce_add_ps(acc[j]) + tail[j];
}

// ---- direct kernels for float weights ----

struct F32L {
  static constexpr int kBytes = 4;
  static __m512 load(const uint8_t* row, int64_t c, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(row) + c);
  }
};
struct F16L {
  static constexpr int kBytes = 2;
  static __m512 load(const uint8_t* row, int64_t c, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(row) + c));
  }
};

template <class L, int MR, int NR>
void float_tile(int64_t k, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, int64_t ldy) {
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  for (int64_t c = 0; c < k; c += 16) {
    const __mmask16 m = k - c >= 16 ? 0xFFFF : (__mmask16)((1u << (k - c)) - 1);
    __m512 av[MR];
    for (int i = 0; i < MR; ++i) av[i] = _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(a + i * as) + c);
    for (int j = 0; j < NR; ++j) {
      if constexpr (MR == 1) _mm_prefetch(reinterpret_cast<const char*>(w + j * ws) + c * L::kBytes + kPrefetchBytes, kPrefetchHint);
      const __m512 wv = L::load(w + j * ws, c, m);
      for (int i = 0; i < MR; ++i) acc[i][j] = _mm512_fmadd_ps(wv, av[i], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) y[i * ldy + j] = _mm512_reduce_add_ps(acc[i][j]);
}

#if defined(__AVX512BF16__)
// BF16 x BF16 with vdpbf16ps: 32 products per instruction, accumulated in float.
template <int MR, int NR>
void bf16_tile(int64_t k, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, int64_t ldy) {
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  for (int64_t c = 0; c < k; c += 32) {
    const __mmask32 m = k - c >= 32 ? 0xFFFFFFFFu : (__mmask32)((1u << (k - c)) - 1);
    __m512i av[MR];
    for (int i = 0; i < MR; ++i)
      av[i] = _mm512_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(a + i * as) + c);
    for (int j = 0; j < NR; ++j) {
      const __m512i wv = _mm512_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(w + j * ws) + c);
      for (int i = 0; i < MR; ++i) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], (__m512bh)av[i], (__m512bh)wv);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) y[i * ldy + j] = _mm512_reduce_add_ps(acc[i][j]);
}
#endif

// Runtime (mr, nr) -> compile-time tile. Tiles are at most 4 x 4.
template <template <int, int> class T>
void dispatch_tile(int64_t k, const void* w, size_t ws, int nr, const void* a, size_t as, int mr, float* y,
                   int64_t ldy) {
  auto* wp = static_cast<const uint8_t*>(w);
  auto* ap = static_cast<const uint8_t*>(a);
  using Fn = void (*)(int64_t, const uint8_t*, size_t, const uint8_t*, size_t, float*, int64_t);
  static constexpr Fn fns[4][4] = {
      {T<1, 1>::run, T<1, 2>::run, T<1, 3>::run, T<1, 4>::run},
      {T<2, 1>::run, T<2, 2>::run, T<2, 3>::run, T<2, 4>::run},
      {T<3, 1>::run, T<3, 2>::run, T<3, 3>::run, T<3, 4>::run},
      {T<4, 1>::run, T<4, 2>::run, T<4, 3>::run, T<4, 4>::run},
  };
  fns[mr - 1][nr - 1](k, wp, ws, ap, as, y, ldy);
}

template <class W>
struct Legacy {
  template <int MR, int NR>
  struct T {
    static void run(int64_t k, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, int64_t ldy) {
      legacy_tile<W, MR, NR>(k, w, ws, a, as, y, ldy);
    }
  };
};
template <class L>
struct Float {
  template <int MR, int NR>
  struct T {
    static void run(int64_t k, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, int64_t ldy) {
      float_tile<L, MR, NR>(k, w, ws, a, as, y, ldy);
    }
  };
};
#if defined(__AVX512BF16__)
template <int MR, int NR>
struct Bf16T {
  static void run(int64_t k, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, int64_t ldy) {
    bf16_tile<MR, NR>(k, w, ws, a, as, y, ldy);
  }
};
#endif

template <GemmFn G>
float dot_via_gemm(int64_t k, const void* w, const void* a) {
  float y;
  G(k, w, 0, 1, a, 0, 1, &y, 1);
  return y;
}

float dot_f32_avx512(const float* a, const float* b, int64_t n) {
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int u = 0; u < 4; ++u)
      acc[u] = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16 * u), _mm512_loadu_ps(b + i + 16 * u), acc[u]);
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);
    acc[0] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc[0]);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
}

// One activation row (decode) takes legacy_m1 where the format has it; more rows the MR x NR tiles.
template <class W>
void legacy_gemm(int64_t k, const void* w, size_t ws, int nr, const void* a, size_t as, int mr, float* y,
                 int64_t ldy) {
  if constexpr (requires { W::u2(nullptr); }) {
    if (mr == 1) {
      auto* wp = static_cast<const uint8_t*>(w);
      auto* ap = static_cast<const uint8_t*>(a);
      switch (nr) {
        case 4: return legacy_m1<W, 4>(k, wp, ws, ap, y);
        case 3: return legacy_m1<W, 3>(k, wp, ws, ap, y);
        case 2: return legacy_m1<W, 2>(k, wp, ws, ap, y);
        default: return legacy_m1<W, 1>(k, wp, ws, ap, y);
      }
    }
  }
  dispatch_tile<Legacy<W>::template T>(k, w, ws, nr, a, as, mr, y, ldy);
}

template <class W>
void set_legacy(KernelTable& t, int slot) {
  constexpr GemmFn g = &legacy_gemm<W>;
  t.w[slot].gemm = g;
  t.w[slot].vec_dot = &dot_via_gemm<g>;
  t.w[slot].quantize_act = W::kMin ? &quantize_q8_1_avx512 : &quantize_q8_0_avx512;
}

// exp(x) for 16 floats: the scalar table's Cephes polynomial, lane for lane (0 below -87.3).
inline __m512 exp16(__m512 x) {
  const __mmask16 under = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.33654f), _CMP_LT_OQ);
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.33654f)), _mm512_set1_ps(88.72283f));
  const __m512 n = _mm512_roundscale_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(0.5f)),
                                        _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
  const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_maskz_mul_ps(~under, p, _mm512_castsi512_ps(bits));
}

bool softmax_f32_avx512(float* x, int64_t n) {
  __m512 vmax = _mm512_set1_ps(-INFINITY);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(x + i));
  if (i < n) {
    const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), m, x + i));
  }
  const float mx = _mm512_reduce_max_ps(vmax);
  if (mx == -INFINITY) return false;
  const __m512 vm = _mm512_set1_ps(mx);
  __m512 vsum = _mm512_setzero_ps();
  for (i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);
    const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm));
    _mm512_mask_storeu_ps(x + i, m, e);
    vsum = _mm512_add_ps(vsum, _mm512_maskz_mov_ps(m, e));
  }
  const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
  for (i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
  }
  return true;
}

void gelu_tanh_mul_avx512(const float* gate, const float* up, float* out, int64_t n) {
  const __m512 k = _mm512_set1_ps(0.7978845608028654f), c = _mm512_set1_ps(0.044715f);
  const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f), two = _mm512_set1_ps(2.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(m, gate + i), w = _mm512_maskz_loadu_ps(m, up + i);
    const __m512 u = _mm512_mul_ps(k, _mm512_add_ps(v, _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(c, v), v), v)));
    const __m512 e = exp16(_mm512_mul_ps(two, u));
    const __m512 t = _mm512_sub_ps(two, _mm512_div_ps(two, _mm512_add_ps(e, one)));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(half, v), t), w));
  }
}

KernelTable make_table() {
  KernelTable t = scalar_table();
  t.isa = Isa::Avx512;
  t.softmax_f32 = &softmax_f32_avx512;
  t.gelu_tanh_mul_f32 = &gelu_tanh_mul_avx512;
  t.gemm_mr = 4;
  t.gemm_nr = 4;
  set_legacy<Q8_0W>(t, kQ8_0);
  set_legacy<Q4_0W>(t, kQ4_0);
  set_legacy<Q5_0W>(t, kQ5_0);
  set_legacy<Q4_1W>(t, kQ4_1);
  set_legacy<Q5_1W>(t, kQ5_1);
  for (int s : {kQ4_K, kQ5_K, kQ6_K}) t.w[s].quantize_act = &quantize_q8_K_avx512;
  constexpr GemmFn gf32 = &dispatch_tile<Float<F32L>::T>;
  constexpr GemmFn gf16 = &dispatch_tile<Float<F16L>::T>;
  t.w[kF32].gemm = gf32;
  t.w[kF32].vec_dot = &dot_via_gemm<gf32>;
  t.w[kF16].gemm = gf16;
  t.w[kF16].vec_dot = &dot_via_gemm<gf16>;
#if defined(__AVX512BF16__)
  if (cpu_features().avx512bf16) {
    t.w[kBF16].quantize_act = &quantize_bf16_avx512;
    constexpr GemmFn gbf = &dispatch_tile<Bf16T>;
    t.w[kBF16].gemm = gbf;
    t.w[kBF16].vec_dot = &dot_via_gemm<gbf>;
  }
#endif
  t.dot_f32 = &dot_f32_avx512;
  install_panels_avx512(t);
  install_kquants_avx512(t);
  return t;
}

}  // namespace

const KernelTable& avx512_table() {
  static const KernelTable t = make_table();
  return t;
}

}  // namespace edgevl::kern
