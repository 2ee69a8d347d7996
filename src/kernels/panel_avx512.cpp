// AVX-512 VNNI panel path (prefill, m >= a few rows). Why panels: with GGUF's row-major blocks
// every 32-element block of every (weight row, activation row) pair needs its own horizontal
// reduction or int->float step. Interleaving 16 weight rows so that one 64-byte vector holds 4
// consecutive elements of each row lets one vpdpbusd do 4 MACs for all 16 rows against a
// broadcast 4-byte piece of one activation row, and the per-block float work (convert, scale,
// FMA) is shared by 16 rows: ~13 vector ops per 512 MACs instead of ~5 per 32.
//
// Weight panel (kPanelRows = 16 rows, sub-block size S = 32, or 16 for Q6_K):
//   u8 quants, [k/4][16 rows][4], each stored as an unsigned value u with w = sw * (u - z) + cw
//   per sub-block: float sw[16], float cw[16]  (scale and min term of each row)
// Activation panel row (from the partner format, once per matmul call):
//   int8 q[k] | float sa[k/S] | float ssum[k/S] (= sa * sum q) | int32 zc[k/S] (= -z * sum q)
// so that dot(w, a) over a sub-block = sw*sa*(dot(u, q) + zc) + cw*ssum, with dot(u,q)+zc exact.
#include <immintrin.h>

#include <cstring>

#include "core/fp16.h"
#include "kernels/blocks.h"
#include "kernels/panel.h"

namespace edgevl::kern {

namespace {

constexpr int R = kPanelRows;

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

// ---- weight unpacking: one row's block into u8 quants and per sub-block (sw, cw) ----

template <int S>
struct PanelWriter {
  uint8_t* q;     // panel quants
  float* sc;      // panel scales
  int row;
  // Stores `n` unpacked values starting at element e0 (a multiple of 4).
  void put(int64_t e0, const uint8_t* u, int n) {
    for (int g = 0; g < n / 4; ++g) std::memcpy(q + ((e0 / 4 + g) * R + row) * 4, u + 4 * g, 4);
  }
  void scale(int64_t sb, float sw, float cw) {
    sc[sb * 2 * R + row] = sw;
    sc[sb * 2 * R + R + row] = cw;
  }
};

inline void nibbles(const uint8_t* qs, uint8_t* u) {  // 16 bytes -> 32 values (lo then hi)
  __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  __m128i m = _mm_set1_epi8(0x0F);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(u), _mm_and_si128(q, m));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(u + 16), _mm_and_si128(_mm_srli_epi16(q, 4), m));
}

inline void high_bits(const uint8_t* qh4, uint8_t* u) {  // Q5_0/Q5_1: bit j of qh -> bit 4 of u[j]
  uint32_t qh;
  std::memcpy(&qh, qh4, 4);
  __m256i bits = _mm256_movm_epi8(qh);
  __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(u));
  v = _mm256_or_si256(v, _mm256_and_si256(bits, _mm256_set1_epi8(0x10)));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(u), v);
}

void unpack_q8_0(const void* row, int64_t k, PanelWriter<32>& pw) {
  auto* b = static_cast<const BlockQ8_0*>(row);
  alignas(32) uint8_t u[32];
  for (int64_t i = 0; i < k / 32; ++i) {
    __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qs));
    _mm256_store_si256(reinterpret_cast<__m256i*>(u), _mm256_xor_si256(q, _mm256_set1_epi8((char)0x80)));
    pw.put(i * 32, u, 32);
    pw.scale(i, h2f(b[i].d), 0.f);
  }
}

void unpack_q4_0(const void* row, int64_t k, PanelWriter<32>& pw) {
  auto* b = static_cast<const BlockQ4_0*>(row);
  alignas(32) uint8_t u[32];
  for (int64_t i = 0; i < k / 32; ++i) {
    nibbles(b[i].qs, u);
    pw.put(i * 32, u, 32);
    pw.scale(i, h2f(b[i].d), 0.f);
  }
}

void unpack_q4_1(const void* row, int64_t k, PanelWriter<32>& pw) {
  auto* b = static_cast<const BlockQ4_1*>(row);
  alignas(32) uint8_t u[32];
  for (int64_t i = 0; i < k / 32; ++i) {
    nibbles(b[i].qs, u);
    pw.put(i * 32, u, 32);
    pw.scale(i, h2f(b[i].d), h2f(b[i].m));
  }
}

void unpack_q5_0(const void* row, int64_t k, PanelWriter<32>& pw) {
  auto* b = static_cast<const BlockQ5_0*>(row);
  alignas(32) uint8_t u[32];
  for (int64_t i = 0; i < k / 32; ++i) {
    nibbles(b[i].qs, u);
    high_bits(b[i].qh, u);
    pw.put(i * 32, u, 32);
    pw.scale(i, h2f(b[i].d), 0.f);
  }
}

void unpack_q5_1(const void* row, int64_t k, PanelWriter<32>& pw) {
  auto* b = static_cast<const BlockQ5_1*>(row);
  alignas(32) uint8_t u[32];
  for (int64_t i = 0; i < k / 32; ++i) {
    nibbles(b[i].qs, u);
    high_bits(b[i].qh, u);
    pw.put(i * 32, u, 32);
    pw.scale(i, h2f(b[i].d), h2f(b[i].m));
  }
}

void unpack_q4_K(const void* row, int64_t k, PanelWriter<32>& pw) {
  auto* b = static_cast<const BlockQ4_K*>(row);
  alignas(32) uint8_t u[64];
  for (int64_t i = 0; i < k / QK_K; ++i) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    for (int j = 0; j < QK_K / 64; ++j) {
      // 32 bytes hold sub-blocks 2j (low nibbles) and 2j+1 (high nibbles).
      __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qs + 32 * j));
      __m256i m = _mm256_set1_epi8(0x0F);
      _mm256_store_si256(reinterpret_cast<__m256i*>(u), _mm256_and_si256(q, m));
      _mm256_store_si256(reinterpret_cast<__m256i*>(u + 32), _mm256_and_si256(_mm256_srli_epi16(q, 4), m));
      pw.put(i * QK_K + 64 * j, u, 64);
      for (int h = 0; h < 2; ++h) {
        uint8_t sc, mn;
        get_scale_min_k4(2 * j + h, b[i].scales, &sc, &mn);
        pw.scale(i * 8 + 2 * j + h, d * sc, -dmin * mn);
      }
    }
  }
}

void unpack_q5_K(const void* row, int64_t k, PanelWriter<32>& pw) {
  auto* b = static_cast<const BlockQ5_K*>(row);
  alignas(32) uint8_t u[64];
  for (int64_t i = 0; i < k / QK_K; ++i) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qh));
    for (int j = 0; j < QK_K / 64; ++j) {
      __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qs + 32 * j));
      __m256i m = _mm256_set1_epi8(0x0F), b4 = _mm256_set1_epi8(0x10);
      // qh bit 2j is the 5th bit of sub-block 2j, bit 2j+1 of sub-block 2j+1.
      __m256i h0 = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * j), 4), b4);
      __m256i h1 = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * j + 1), 4), b4);
      _mm256_store_si256(reinterpret_cast<__m256i*>(u), _mm256_or_si256(_mm256_and_si256(q, m), h0));
      _mm256_store_si256(reinterpret_cast<__m256i*>(u + 32),
                         _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m), h1));
      pw.put(i * QK_K + 64 * j, u, 64);
      for (int h = 0; h < 2; ++h) {
        uint8_t sc, mn;
        get_scale_min_k4(2 * j + h, b[i].scales, &sc, &mn);
        pw.scale(i * 8 + 2 * j + h, d * sc, -dmin * mn);
      }
    }
  }
}

void unpack_q6_K(const void* row, int64_t k, PanelWriter<16>& pw) {
  auto* b = static_cast<const BlockQ6_K*>(row);
  alignas(32) uint8_t u[128];
  for (int64_t i = 0; i < k / QK_K; ++i) {
    const float d = h2f(b[i].d);
    for (int n0 = 0; n0 < 2; ++n0) {  // two halves of 128 elements
      const uint8_t* ql = b[i].ql + 64 * n0;
      const uint8_t* qh = b[i].qh + 32 * n0;
      for (int l = 0; l < 32; ++l) {
        u[l + 0] = (ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4);
        u[l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
        u[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
        u[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
      }
      pw.put(i * QK_K + 128 * n0, u, 128);
    }
    for (int j = 0; j < 16; ++j) pw.scale(i * 16 + j, d * b[i].scales[j], 0.f);
  }
}

template <int S>
size_t int_panel_bytes(int64_t k) {
  return size_t(R) * k + size_t(k / S) * 2 * R * sizeof(float);
}

template <int S, void (*Unpack)(const void*, int64_t, PanelWriter<S>&)>
void pack_int(int64_t k, const void* w, size_t w_stride, int rows, void* panel) {
  auto* q = static_cast<uint8_t*>(panel);
  auto* sc = reinterpret_cast<float*>(q + size_t(R) * k);
  if (rows < R) std::memset(panel, 0, int_panel_bytes<S>(k));  // padding rows: sw = cw = 0
  for (int r = 0; r < rows; ++r) {
    PanelWriter<S> pw{q, sc, r};
    Unpack(static_cast<const uint8_t*>(w) + r * w_stride, k, pw);
  }
}

// ---- activation conversion ----

template <int S>
size_t act_bytes(int64_t k) {
  return size_t(k) + size_t(k / S) * 12;
}

inline int32_t sum_i8_32(const int8_t* q) {
  __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
  __m512i w = _mm512_cvtepi8_epi16(v);
  return _mm512_reduce_add_epi32(_mm512_madd_epi16(w, _mm512_set1_epi16(1)));
}

// Q8_0 partner; Z is the weight's zero point (128 for Q8_0, 8 for Q4_0, 16 for Q5_0).
template <int Z>
void act_from_q8_0(int64_t k, const void* act, size_t stride, int64_t rows, void* out, size_t out_stride) {
  const int64_t nb = k / 32;
  for (int64_t r = 0; r < rows; ++r) {
    auto* b = reinterpret_cast<const BlockQ8_0*>(static_cast<const uint8_t*>(act) + r * stride);
    auto* q = static_cast<int8_t*>(out) + r * out_stride;
    auto* sa = reinterpret_cast<float*>(q + k);
    auto* zc = reinterpret_cast<int32_t*>(sa + 2 * nb);
    for (int64_t i = 0; i < nb; ++i) {
      std::memcpy(q + 32 * i, b[i].qs, 32);
      sa[i] = h2f(b[i].d);
      sa[nb + i] = 0.f;
      zc[i] = -Z * sum_i8_32(b[i].qs);
    }
  }
}

void act_from_q8_1(int64_t k, const void* act, size_t stride, int64_t rows, void* out, size_t out_stride) {
  const int64_t nb = k / 32;
  for (int64_t r = 0; r < rows; ++r) {
    auto* b = reinterpret_cast<const BlockQ8_1*>(static_cast<const uint8_t*>(act) + r * stride);
    auto* q = static_cast<int8_t*>(out) + r * out_stride;
    auto* sa = reinterpret_cast<float*>(q + k);
    auto* zc = reinterpret_cast<int32_t*>(sa + 2 * nb);
    for (int64_t i = 0; i < nb; ++i) {
      std::memcpy(q + 32 * i, b[i].qs, 32);
      sa[i] = h2f(b[i].d);
      sa[nb + i] = h2f(b[i].s);  // the same rounded s the scalar dot uses
      zc[i] = 0;
    }
  }
}

// Q8_K partner with sub-blocks of S (32 for Q4_K/Q5_K, 16 for Q6_K) and zero point Z.
template <int S, int Z>
void act_from_q8_K(int64_t k, const void* act, size_t stride, int64_t rows, void* out, size_t out_stride) {
  const int64_t nsb = k / S;
  for (int64_t r = 0; r < rows; ++r) {
    auto* b = reinterpret_cast<const BlockQ8_K*>(static_cast<const uint8_t*>(act) + r * stride);
    auto* q = static_cast<int8_t*>(out) + r * out_stride;
    auto* sa = reinterpret_cast<float*>(q + k);
    auto* zc = reinterpret_cast<int32_t*>(sa + 2 * nsb);
    for (int64_t i = 0; i < k / QK_K; ++i) {
      std::memcpy(q + QK_K * i, b[i].qs, QK_K);
      for (int j = 0; j < QK_K / S; ++j) {
        int sum = S == 16 ? b[i].bsums[j] : b[i].bsums[2 * j] + b[i].bsums[2 * j + 1];
        const int64_t s = i * (QK_K / S) + j;
        sa[s] = b[i].d;
        sa[nsb + s] = b[i].d * sum;
        zc[s] = -Z * sum;
      }
    }
  }
}

// ---- the int8 micro-kernel: MR activation rows x 16 weight rows ----

template <int MR, int S, bool kMin>
void int_tile(int64_t k, const uint8_t* panel, const uint8_t* act, size_t astride, float* y, int64_t ldy, int rows) {
  const int64_t nsb = k / S;
  const uint8_t* pq = panel;
  const float* ps = reinterpret_cast<const float*>(panel + size_t(R) * k);
  const int8_t* aq[MR];
  const float* asa[MR];
  const int32_t* azc[MR];
  for (int i = 0; i < MR; ++i) {
    aq[i] = reinterpret_cast<const int8_t*>(act + i * astride);
    asa[i] = reinterpret_cast<const float*>(aq[i] + k);
    azc[i] = reinterpret_cast<const int32_t*>(asa[i] + 2 * nsb);
  }
  __m512 yacc[MR];
  for (int i = 0; i < MR; ++i) yacc[i] = _mm512_setzero_ps();
  for (int64_t sb = 0; sb < nsb; ++sb) {
    __m512i acc[MR];
    for (int i = 0; i < MR; ++i) acc[i] = _mm512_set1_epi32(azc[i][sb]);
#pragma GCC unroll 8
    for (int g = 0; g < S / 4; ++g) {
      const __m512i w = _mm512_load_si512(pq + g * 64);
      for (int i = 0; i < MR; ++i) {
        int32_t a4;
        std::memcpy(&a4, aq[i] + sb * S + 4 * g, 4);
        acc[i] = _mm512_dpbusd_epi32(acc[i], w, _mm512_set1_epi32(a4));
      }
    }
    pq += S / 4 * 64;
    const __m512 sw = _mm512_load_ps(ps + sb * 2 * R);
    for (int i = 0; i < MR; ++i)
      yacc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[i]), _mm512_mul_ps(sw, _mm512_set1_ps(asa[i][sb])), yacc[i]);
    if constexpr (kMin) {
      const __m512 cw = _mm512_load_ps(ps + sb * 2 * R + R);
      for (int i = 0; i < MR; ++i) yacc[i] = _mm512_fmadd_ps(cw, _mm512_set1_ps(asa[i][nsb + sb]), yacc[i]);
    }
  }
  const __mmask16 mask = rows >= R ? 0xFFFF : (__mmask16)((1u << rows) - 1);
  for (int i = 0; i < MR; ++i) _mm512_mask_storeu_ps(y + i * ldy, mask, yacc[i]);
}

constexpr int kMR = 8;

// Calls tile.template operator()<MR>(i) over m activation rows: full blocks of kMR rows, then one
// tile of the remaining 1..kMR-1 rows (each size its own instantiation, so the accumulators of
// every tile live in registers).
template <typename Tile>
void for_each_tile(int64_t m, Tile&& tile) {
  static_assert(kMR == 8, "the remainder switch below covers kMR - 1 = 7 rows");
  int64_t i = 0;
  for (; i + kMR <= m; i += kMR) tile.template operator()<kMR>(i);
  switch (m - i) {
    case 7: tile.template operator()<7>(i); break;
    case 6: tile.template operator()<6>(i); break;
    case 5: tile.template operator()<5>(i); break;
    case 4: tile.template operator()<4>(i); break;
    case 3: tile.template operator()<3>(i); break;
    case 2: tile.template operator()<2>(i); break;
    case 1: tile.template operator()<1>(i); break;
    default: break;
  }
}

template <int S, bool kMin>
void int_kernel(int64_t k, const void* panel, const void* act, size_t astride, int64_t m, float* y, int64_t ldy,
                int rows) {
  auto* p = static_cast<const uint8_t*>(panel);
  auto* a = static_cast<const uint8_t*>(act);
  for_each_tile(m, [&]<int MR>(int64_t i) {
    int_tile<MR, S, kMin>(k, p, a + i * astride, astride, y + i * ldy, ldy, rows);
  });
}


// ---- Q4_0 and Q8_0 repacked at load time (WeightLayout::Q4_0x16, Q8_0x16) ----
// Per group of 16 rows, blocks in pairs, so that every unit is whole 64-byte lines and the
// same size as the 32 GGUF blocks it holds:
//   [block 2u: V x 64 bytes][block 2u+1: V x 64 bytes][2u: 16 fp16 scales][2u+1: 16 fp16 scales]
// Q4_0 (V = 4, 576 bytes a pair): 64-byte vector g of a block holds in lane r the bytes
// qs[4g..4g+3] of row r, so its low nibbles are elements 4g..4g+3 and its high nibbles elements
// 16+4g..16+4g+3 of all 16 rows. Q8_0 (V = 8, 1088 bytes): vector g holds in lane r elements
// 4g..4g+3 of row r, stored as u = q + 128 (the panel kernels' unsigned form, zero point 128).
// Either way: the panel kernel's lanes = rows arrangement without a per-call pack; decode reads
// each weight byte once with aligned loads and converts 16 rows' scales with one vcvtph2ps.
struct Q4x16 {
  using Block = BlockQ4_0;
  static constexpr int kVecs = 4;  // 64-byte vectors per block
  static constexpr bool kNibbles = true;
  static constexpr int Z = 8;  // zero point of the stored unsigned values
  static constexpr int kPrefetchBytes = 4096;  // decode prefetch distance (not yet tuned)
  static void put(const Block& b, uint8_t* blk, int r) {
    for (int g = 0; g < 4; ++g) std::memcpy(blk + g * 64 + r * 4, b.qs + 4 * g, 4);
  }
};
struct Q8x16 {
  using Block = BlockQ8_0;
  static constexpr int kVecs = 8;
  static constexpr bool kNibbles = false;
  static constexpr int Z = 128;
  // 2048-32768 bytes, into L2 (T1) or L1 (T0), measured alike within the shared machine's noise.
  static constexpr int kPrefetchBytes = 4096;
  static void put(const Block& b, uint8_t* blk, int r) {
    for (int g = 0; g < 8; ++g) {
      uint32_t v;
      std::memcpy(&v, b.qs + 4 * g, 4);
      v ^= 0x80808080u;
      std::memcpy(blk + g * 64 + r * 4, &v, 4);
    }
  }
};

template <class F>
constexpr size_t x16_pair_bytes = 2 * (F::kVecs * 64 + 32);

template <class F>
size_t x16_group_bytes(int64_t k) {
  return size_t((k / 32 + 1) / 2) * x16_pair_bytes<F>;
}

template <class F>
void x16_repack_group(int64_t k, const void* w, size_t w_stride, int rows, void* out) {
  auto* o = static_cast<uint8_t*>(out);
  const int64_t nb = k / 32;
  std::memset(o, 0, x16_group_bytes<F>(k));  // padding rows and the odd last block: scale 0
  for (int r = 0; r < rows; ++r) {
    auto* b = reinterpret_cast<const typename F::Block*>(static_cast<const uint8_t*>(w) + r * w_stride);
    for (int64_t i = 0; i < nb; ++i) {
      uint8_t* unit = o + (i / 2) * x16_pair_bytes<F>;
      F::put(b[i], unit + (i & 1) * F::kVecs * 64, r);
      std::memcpy(unit + 2 * F::kVecs * 64 + (i & 1) * 32 + r * 2, &b[i].d, 2);
    }
  }
}

// MR activation rows (the panel activation format, with the format's zero point) x one group of
// 16 rows. Few rows keep two accumulators per row so the vpdpbusd chains are short.
template <class F, int MR>
void x16_tile(int64_t k, const uint8_t* grp, const uint8_t* act, size_t astride, float* y, int64_t ldy, int rows) {
  constexpr size_t kPair = x16_pair_bytes<F>, kBlockBytes = F::kVecs * 64;
  constexpr int kPfLines = (kPair / 64 + 1) / 2;  // lines prefetched per block (half a pair, rounded up)
  const int64_t nb = k / 32;
  const int8_t* aq[MR];
  const float* asa[MR];
  const int32_t* azc[MR];
  for (int i = 0; i < MR; ++i) {
    aq[i] = reinterpret_cast<const int8_t*>(act + i * astride);
    asa[i] = reinterpret_cast<const float*>(aq[i] + k);
    azc[i] = reinterpret_cast<const int32_t*>(asa[i] + 2 * nb);
  }
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  __m512 yacc[MR];
  for (int i = 0; i < MR; ++i) yacc[i] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* unit = grp + (b / 2) * kPair;
    const uint8_t* blk = unit + (b & 1) * kBlockBytes;
    if constexpr (MR == 1) {
      // Decode streams the weights once; prefetch into L2 ahead (see kPrefetchBytes in matmul_avx512.cpp).
      const char* pf = reinterpret_cast<const char*>(unit) + F::kPrefetchBytes + (b & 1) * kPfLines * 64;
      for (int l = 0; l < kPfLines; ++l) _mm_prefetch(pf + 64 * l, _MM_HINT_T1);
    }
    __m512i acc0[MR], acc1[MR];
    for (int i = 0; i < MR; ++i) {
      acc0[i] = _mm512_set1_epi32(azc[i][b]);
      acc1[i] = _mm512_setzero_si512();
    }
    // The second accumulator only where there are few rows (otherwise enough independent chains).
#pragma GCC unroll 8
    for (int g = 0; g < F::kVecs; ++g) {
      const __m512i v = _mm512_load_si512(blk + 64 * g);
      for (int i = 0; i < MR; ++i) {
        int32_t a0;
        std::memcpy(&a0, aq[i] + 32 * b + 4 * g, 4);
        if constexpr (F::kNibbles) {  // low nibbles: elements 4g.., high: 16 + 4g..
          int32_t a1;
          std::memcpy(&a1, aq[i] + 32 * b + 16 + 4 * g, 4);
          acc0[i] = _mm512_dpbusd_epi32(acc0[i], _mm512_and_si512(v, m4), _mm512_set1_epi32(a0));
          __m512i& acc = MR <= 2 ? acc1[i] : acc0[i];
          acc = _mm512_dpbusd_epi32(acc, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4), _mm512_set1_epi32(a1));
        } else {
          __m512i& acc = MR <= 2 && (g & 1) ? acc1[i] : acc0[i];
          acc = _mm512_dpbusd_epi32(acc, v, _mm512_set1_epi32(a0));
        }
      }
    }
    const __m512 sw = _mm512_cvtph_ps(
        _mm256_load_si256(reinterpret_cast<const __m256i*>(unit + 2 * kBlockBytes + (b & 1) * 32)));
    for (int i = 0; i < MR; ++i) {
      const __m512i s = MR <= 2 ? _mm512_add_epi32(acc0[i], acc1[i]) : acc0[i];
      yacc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(sw, _mm512_set1_ps(asa[i][b])), yacc[i]);
    }
  }
  const __mmask16 mask = rows >= R ? 0xFFFF : (__mmask16)((1u << rows) - 1);
  for (int i = 0; i < MR; ++i) _mm512_mask_storeu_ps(y + i * ldy, mask, yacc[i]);
}

template <class F>
void x16_kernel(int64_t k, const void* panel, const void* act, size_t astride, int64_t m, float* y, int64_t ldy,
                int rows) {
  auto* p = static_cast<const uint8_t*>(panel);
  auto* a = static_cast<const uint8_t*>(act);
  for_each_tile(m, [&]<int MR>(int64_t i) {
    x16_tile<F, MR>(k, p, a + i * astride, astride, y + i * ldy, ldy, rows);
  });
}

template <class F>
PackedKernels x16_packed(WeightLayout layout) {
  PackedKernels p;
  p.layout = layout;
  p.group_bytes = &x16_group_bytes<F>;
  p.repack_group = &x16_repack_group<F>;
  p.act_convert = &act_from_q8_0<F::Z>;
  p.act_row_bytes = &act_bytes<32>;
  p.kernel = &x16_kernel<F>;
  return p;
}

// ---- float panels (F32 / F16 / BF16 weights): [k][16] floats ----

size_t float_panel_bytes(int64_t k) { return size_t(k) * R * sizeof(float); }

template <typename Load>
void pack_float_rows(int64_t k, const void* w, size_t w_stride, int rows, void* panel, Load load16) {
  auto* out = static_cast<float*>(panel);
  alignas(64) float tmp[R][16];
  int64_t c = 0;
  for (; c + 16 <= k; c += 16) {
    for (int r = 0; r < R; ++r)
      _mm512_store_ps(tmp[r], r < rows ? load16(static_cast<const uint8_t*>(w) + r * w_stride, c, 0xFFFF)
                                       : _mm512_setzero_ps());
    for (int e = 0; e < 16; ++e)
      for (int r = 0; r < R; ++r) out[(c + e) * R + r] = tmp[r][e];
  }
  if (c < k) {
    const __mmask16 mk = (__mmask16)((1u << (k - c)) - 1);
    for (int r = 0; r < R; ++r)
      _mm512_store_ps(tmp[r], r < rows ? load16(static_cast<const uint8_t*>(w) + r * w_stride, c, mk)
                                       : _mm512_setzero_ps());
    for (int e = 0; e < k - c; ++e)
      for (int r = 0; r < R; ++r) out[(c + e) * R + r] = tmp[r][e];
  }
}

void pack_f32(int64_t k, const void* w, size_t ws, int rows, void* panel) {
  pack_float_rows(k, w, ws, rows, panel, [](const uint8_t* row, int64_t c, __mmask16 mk) {
    return _mm512_maskz_loadu_ps(mk, reinterpret_cast<const float*>(row) + c);
  });
}
void pack_f16(int64_t k, const void* w, size_t ws, int rows, void* panel) {
  pack_float_rows(k, w, ws, rows, panel, [](const uint8_t* row, int64_t c, __mmask16 mk) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, reinterpret_cast<const uint16_t*>(row) + c));
  });
}
void pack_bf16(int64_t k, const void* w, size_t ws, int rows, void* panel) {
  pack_float_rows(k, w, ws, rows, panel, [](const uint8_t* row, int64_t c, __mmask16 mk) {
    __m256i h = _mm256_maskz_loadu_epi16(mk, reinterpret_cast<const uint16_t*>(row) + c);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  });
}

size_t f32_act_bytes(int64_t k) { return size_t(k) * sizeof(float); }
void act_from_bf16(int64_t k, const void* act, size_t stride, int64_t rows, void* out, size_t out_stride) {
  for (int64_t r = 0; r < rows; ++r) {
    auto* s = reinterpret_cast<const uint16_t*>(static_cast<const uint8_t*>(act) + r * stride);
    auto* d = reinterpret_cast<float*>(static_cast<uint8_t*>(out) + r * out_stride);
    for (int64_t i = 0; i < k; ++i) d[i] = bf16_to_f32(s[i]);
  }
}

template <int MR>
void float_tile(int64_t k, const float* panel, const uint8_t* act, size_t astride, float* y, int64_t ldy, int rows) {
  const float* a[MR];
  for (int i = 0; i < MR; ++i) a[i] = reinterpret_cast<const float*>(act + i * astride);
  __m512 acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm512_setzero_ps();
#pragma GCC unroll 4
  for (int64_t c = 0; c < k; ++c) {
    const __m512 w = _mm512_load_ps(panel + c * R);
    for (int i = 0; i < MR; ++i) acc[i] = _mm512_fmadd_ps(w, _mm512_set1_ps(a[i][c]), acc[i]);
  }
  const __mmask16 mask = rows >= R ? 0xFFFF : (__mmask16)((1u << rows) - 1);
  for (int i = 0; i < MR; ++i) _mm512_mask_storeu_ps(y + i * ldy, mask, acc[i]);
}

void float_kernel(int64_t k, const void* panel, const void* act, size_t astride, int64_t m, float* y, int64_t ldy,
                  int rows) {
  auto* p = static_cast<const float*>(panel);
  auto* a = static_cast<const uint8_t*>(act);
  for_each_tile(m, [&]<int MR>(int64_t i) {
    float_tile<MR>(k, p, a + i * astride, astride, y + i * ldy, ldy, rows);
  });
}

template <int S, bool kMin, void (*Unpack)(const void*, int64_t, PanelWriter<S>&), ActConvertFn Act>
PanelKernels int_panel(int64_t min_m) {
  PanelKernels p;
  p.pack = &pack_int<S, Unpack>;
  p.panel_bytes = &int_panel_bytes<S>;
  p.act_convert = Act;
  p.act_row_bytes = &act_bytes<S>;
  p.kernel = &int_kernel<S, kMin>;
  p.min_m = min_m;
  return p;
}

}  // namespace

void install_panels_avx512(KernelTable& t) {
  // min_m: below it the direct kernels (matmul_avx512.cpp) win, since packing is paid per call.
  t.w[kQ8_0].panel = int_panel<32, false, unpack_q8_0, act_from_q8_0<128>>(4);
  t.w[kQ4_0].panel = int_panel<32, false, unpack_q4_0, act_from_q8_0<8>>(4);
  t.w[kQ5_0].panel = int_panel<32, false, unpack_q5_0, act_from_q8_0<16>>(4);
  t.w[kQ4_1].panel = int_panel<32, true, unpack_q4_1, act_from_q8_1>(4);
  t.w[kQ5_1].panel = int_panel<32, true, unpack_q5_1, act_from_q8_1>(4);
  t.w[kQ4_K].panel = int_panel<32, true, unpack_q4_K, act_from_q8_K<32, 0>>(1);
  t.w[kQ5_K].panel = int_panel<32, true, unpack_q5_K, act_from_q8_K<32, 0>>(1);
  t.w[kQ6_K].panel = int_panel<16, false, unpack_q6_K, act_from_q8_K<16, 32>>(1);
  t.w[kQ4_0].packed = x16_packed<Q4x16>(WeightLayout::Q4_0x16);
  t.w[kQ8_0].packed = x16_packed<Q8x16>(WeightLayout::Q8_0x16);
  for (auto [slot, pack] : {std::pair{kF32, &pack_f32}, std::pair{kF16, &pack_f16}, std::pair{kBF16, &pack_bf16}}) {
    PanelKernels p;
    p.pack = pack;
    p.panel_bytes = &float_panel_bytes;
    p.kernel = &float_kernel;
    p.min_m = 4;
    if (slot == kBF16) {
      p.act_convert = &act_from_bf16;
      p.act_row_bytes = &f32_act_bytes;
    }
    t.w[slot].panel = p;
  }
}

}  // namespace edgevl::kern
