// AVX-512 direct kernels for K-quant weights against Q8_K activations (decode: few activation
// rows, weights read in place). Per 64 elements: unpack to u8 (shared by the tile's activation
// rows), vpmaddubsw (u8 x s8 -> s16 pairs; no saturation since u <= 63) and vpdpwssd with the
// sub-block scales, so the sub-block scales are applied in integers and one int->float step per
// 256-element super-block remains. The min / zero-point terms come from the Q8_K bsums.
#include <immintrin.h>

#include <cstring>

#include "kernels/blocks.h"
#include "kernels/panel.h"

namespace edgevl::kern {

namespace {

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

// Decode (one activation row) streams weights from DRAM; prefetch this far ahead in each row
// (rows are contiguous, so this runs into the following rows), as matmul_avx512.cpp does.
constexpr int kPrefetchBytes = 32768;
constexpr auto kPrefetchHint = _MM_HINT_T1;  // into L2: measured well ahead of T0 (L1 fill buffers)
inline void prefetch_ahead(const void* p) {
  _mm_prefetch(static_cast<const char*>(p) + kPrefetchBytes, kPrefetchHint);
}

// The 8 6-bit scales and mins of a Q4_K/Q5_K super-block (same result as get_scale_min_k4).
inline void scales_mins(const uint8_t* q, uint8_t sc[8], uint8_t mn[8]) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = q[j] & 63;
    mn[j] = q[j + 4] & 63;
    sc[j + 4] = (q[j + 8] & 0xF) | ((q[j] >> 6) << 4);
    mn[j + 4] = (q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4);
  }
}

// idx vector for vpermw: lanes 0-15 take element a, lanes 16-31 element b.
inline __m512i pick2(int a, int b) {
  return _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16((short)a), _mm512_set1_epi16((short)b));
}

template <bool kQ5, int MR, int NR>
void q45k_tile(int64_t k, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, int64_t ldy) {
  using B = std::conditional_t<kQ5, BlockQ5_K, BlockQ4_K>;
  __m512 facc[MR][NR];
  float macc[MR][NR] = {};
  for (int i = 0; i < MR; ++i)
    for (int n = 0; n < NR; ++n) facc[i][n] = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  for (int64_t s = 0; s < k / QK_K; ++s) {
    const B* wb[NR];
    __m512i sc_all[NR];
    uint8_t mn[NR][8];
    for (int n = 0; n < NR; ++n) {
      wb[n] = reinterpret_cast<const B*>(w + n * ws) + s;
      uint8_t sc[8];
      scales_mins(wb[n]->scales, sc, mn[n]);
      sc_all[n] = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sc))));
    }
    const BlockQ8_K* ab[MR];
    for (int i = 0; i < MR; ++i) ab[i] = reinterpret_cast<const BlockQ8_K*>(a + i * as) + s;
    __m512i acc[MR][NR];
    for (int i = 0; i < MR; ++i)
      for (int n = 0; n < NR; ++n) acc[i][n] = _mm512_setzero_si512();
    for (int j = 0; j < 4; ++j) {  // 64 elements: sub-blocks 2j (low nibbles) and 2j+1 (high)
      const __m512i idx = pick2(2 * j, 2 * j + 1);
      __m512i u[NR], scv[NR];
      for (int n = 0; n < NR; ++n) {
        if constexpr (MR == 1) prefetch_ahead(wb[n]->qs + 32 * j);
        const __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb[n]->qs + 32 * j)));
        u[n] = _mm512_and_si512(_mm512_mask_srli_epi16(q, 0xFFFF0000u, q, 4), m4);
        if constexpr (kQ5) {
          const __m512i h = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb[n]->qh)));
          const __m512i hs = _mm512_mask_srli_epi16(_mm512_srli_epi16(h, 2 * j), 0xFFFF0000u, _mm512_srli_epi16(h, 2 * j), 1);
          u[n] = _mm512_or_si512(u[n], _mm512_and_si512(_mm512_slli_epi16(hs, 4), _mm512_set1_epi8(0x10)));
        }
        scv[n] = _mm512_permutexvar_epi16(idx, sc_all[n]);
      }
      for (int i = 0; i < MR; ++i) {
        const __m512i av = _mm512_loadu_si512(ab[i]->qs + 64 * j);
        for (int n = 0; n < NR; ++n) acc[i][n] = _mm512_dpwssd_epi32(acc[i][n], _mm512_maddubs_epi16(u[n], av), scv[n]);
      }
    }
    for (int i = 0; i < MR; ++i) {
      const int16_t* bs = ab[i]->bsums;
      for (int n = 0; n < NR; ++n) {
        int summ = 0;
        for (int j = 0; j < 8; ++j) summ += mn[n][j] * (bs[2 * j] + bs[2 * j + 1]);
        facc[i][n] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[i][n]), _mm512_set1_ps(h2f(wb[n]->d) * ab[i]->d), facc[i][n]);
        macc[i][n] -= h2f(wb[n]->dmin) * ab[i]->d * summ;
      }
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int n = 0; n < NR; ++n) y[i * ldy + n] = _mm512_reduce_add_ps(facc[i][n]) + macc[i][n];
}

template <int MR, int NR>
void q6k_tile(int64_t k, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, int64_t ldy) {
  __m512 facc[MR][NR];
  float cacc[MR][NR] = {};
  for (int i = 0; i < MR; ++i)
    for (int n = 0; n < NR; ++n) facc[i][n] = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
  // vpermw indices: 16-element sub-block of lane L within the 64 elements of piece p (0..3).
  __m512i idx[4];
  for (int p = 0; p < 4; ++p) {
    alignas(64) int16_t v[32];
    for (int l = 0; l < 32; ++l) v[l] = (int16_t)(4 * p + l / 8);
    idx[p] = _mm512_load_si512(v);
  }
  for (int64_t s = 0; s < k / QK_K; ++s) {
    const BlockQ6_K* wb[NR];
    __m512i sc_all[NR];
    __m256i sc16[NR];
    for (int n = 0; n < NR; ++n) {
      wb[n] = reinterpret_cast<const BlockQ6_K*>(w + n * ws) + s;
      sc16[n] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb[n]->scales)));
      sc_all[n] = _mm512_castsi256_si512(sc16[n]);
    }
    const BlockQ8_K* ab[MR];
    for (int i = 0; i < MR; ++i) ab[i] = reinterpret_cast<const BlockQ8_K*>(a + i * as) + s;
    __m512i acc[MR][NR];
    for (int i = 0; i < MR; ++i)
      for (int n = 0; n < NR; ++n) acc[i][n] = _mm512_setzero_si512();
    for (int h = 0; h < 2; ++h) {  // two halves of 128 elements
      __m512i u0[NR], u1[NR], s0[NR], s1[NR];
      for (int n = 0; n < NR; ++n) {
        const uint8_t* ql = wb[n]->ql + 64 * h;
        if constexpr (MR == 1) {
          prefetch_ahead(ql);
          prefetch_ahead(wb[n]->qh + 32 * h);
        }
        const __m512i L = _mm512_loadu_si512(ql);  // [ql0 (32) | ql1 (32)]
        const __m512i H = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb[n]->qh + 32 * h)));
        const __m512i H0 = _mm512_mask_srli_epi16(H, 0xFFFF0000u, H, 2);  // upper half: bits 2-3 -> 0-1
        u0[n] = _mm512_or_si512(_mm512_and_si512(L, m4), _mm512_and_si512(_mm512_slli_epi16(H0, 4), m30));
        u1[n] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), m4), _mm512_and_si512(H0, m30));
        s0[n] = _mm512_permutexvar_epi16(idx[2 * h], sc_all[n]);
        s1[n] = _mm512_permutexvar_epi16(idx[2 * h + 1], sc_all[n]);
      }
      for (int i = 0; i < MR; ++i) {
        const __m512i a0 = _mm512_loadu_si512(ab[i]->qs + 128 * h), a1 = _mm512_loadu_si512(ab[i]->qs + 128 * h + 64);
        for (int n = 0; n < NR; ++n) {
          acc[i][n] = _mm512_dpwssd_epi32(acc[i][n], _mm512_maddubs_epi16(u0[n], a0), s0[n]);
          acc[i][n] = _mm512_dpwssd_epi32(acc[i][n], _mm512_maddubs_epi16(u1[n], a1), s1[n]);
        }
      }
    }
    for (int i = 0; i < MR; ++i) {
      const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ab[i]->bsums));
      for (int n = 0; n < NR; ++n) {
        // u = q + 32: take back 32 * sum_j sc_j * bsum_j.
        const __m256i p = _mm256_madd_epi16(bs, sc16[n]);
        __m128i r = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
        r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0x4E));
        r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0xB1));
        const float d = h2f(wb[n]->d) * ab[i]->d;
        facc[i][n] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[i][n]), _mm512_set1_ps(d), facc[i][n]);
        cacc[i][n] -= d * (32 * _mm_cvtsi128_si32(r));
      }
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int n = 0; n < NR; ++n) y[i * ldy + n] = _mm512_reduce_add_ps(facc[i][n]) + cacc[i][n];
}

using TileFn = void (*)(int64_t, const uint8_t*, size_t, const uint8_t*, size_t, float*, int64_t);

// Tiles of at most 2 activation rows x 4 weight rows (register budget); larger requests loop.
template <template <int, int> class T>
void gemm_k(int64_t k, const void* w, size_t ws, int nr, const void* a, size_t as, int mr, float* y, int64_t ldy) {
  static constexpr TileFn fns[2][4] = {{T<1, 1>::run, T<1, 2>::run, T<1, 3>::run, T<1, 4>::run},
                                       {T<2, 1>::run, T<2, 2>::run, T<2, 3>::run, T<2, 4>::run}};
  auto* wp = static_cast<const uint8_t*>(w);
  auto* ap = static_cast<const uint8_t*>(a);
  for (int i = 0; i < mr; i += 2) {
    const int r = mr - i >= 2 ? 2 : 1;
    for (int n = 0; n < nr; n += 4) {
      const int c = nr - n >= 4 ? 4 : nr - n;
      fns[r - 1][c - 1](k, wp + n * ws, ws, ap + i * as, as, y + i * ldy + n, ldy);
    }
  }
}

template <int MR, int NR>
struct Q4KT {
  static void run(int64_t k, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, int64_t ldy) {
    q45k_tile<false, MR, NR>(k, w, ws, a, as, y, ldy);
  }
};
template <int MR, int NR>
struct Q5KT {
  static void run(int64_t k, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, int64_t ldy) {
    q45k_tile<true, MR, NR>(k, w, ws, a, as, y, ldy);
  }
};
template <int MR, int NR>
struct Q6KT {
  static void run(int64_t k, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, int64_t ldy) {
    q6k_tile<MR, NR>(k, w, ws, a, as, y, ldy);
  }
};

template <GemmFn G>
float dot_via_gemm(int64_t k, const void* w, const void* a) {
  float y;
  G(k, w, 0, 1, a, 0, 1, &y, 1);
  return y;
}

}  // namespace

void install_kquants_avx512(KernelTable& t) {
  constexpr GemmFn g4 = &gemm_k<Q4KT>, g5 = &gemm_k<Q5KT>, g6 = &gemm_k<Q6KT>;
  t.w[kQ4_K].gemm = g4;
  t.w[kQ4_K].vec_dot = &dot_via_gemm<g4>;
  t.w[kQ5_K].gemm = g5;
  t.w[kQ5_K].vec_dot = &dot_via_gemm<g5>;
  t.w[kQ6_K].gemm = g6;
  t.w[kQ6_K].vec_dot = &dot_via_gemm<g6>;
  for (int s : {kQ4_K, kQ5_K, kQ6_K}) t.w[s].panel.min_m = 4;
}

}  // namespace edgevl::kern
