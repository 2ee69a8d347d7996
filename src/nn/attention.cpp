#include "nn/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/table.h"
#include "tensor/ops.h"

namespace edgevl::nn {

namespace {

// Scores row of query t (position pos) over keys [0, n_keys): scale, soft-cap, mask (causal,
// window, padding), softmax. A row with no visible key becomes uniform over all `all_keys`.
void finish_scores_row(const AttentionShape& a, float* row, int64_t pos, int64_t n_keys, int64_t all_keys,
                       const uint8_t* key_mask, const int32_t* groups) {
  const int64_t first = a.sliding_window > 0 ? std::max<int64_t>(0, pos - a.sliding_window + 1) : 0;
  const int32_t group = groups ? groups[pos] : -1;
  bool any = false;
  for (int64_t j = 0; j < n_keys; ++j) {
    const bool by_rule = j >= first && (j <= pos || !a.causal);
    const bool by_group = group >= 0 && groups[j] == group;
    const bool visible = (by_rule || by_group) && (!key_mask || key_mask[j]);
    if (!visible) {
      row[j] = -INFINITY;
      continue;
    }
    any = true;
    float x = row[j] * a.scale;
    if (a.softcap > 0) x = a.softcap * std::tanh(x / a.softcap);
    row[j] = x;
  }
  if (!any) {
    std::fill(row, row + n_keys, 1.0f / all_keys);
    return;
  }
  ops::softmax(row, n_keys);
}

// finish_scores_row for bidirectional attention without window or soft-cap (vision towers), on
// the kernel table's softmax.
void finish_scores_row_bidir(const Kernels& kernels, float* row, float scale, int64_t n, int64_t all_keys,
                             const uint8_t* key_mask) {
  if (key_mask) {
    for (int64_t j = 0; j < n; ++j) row[j] = key_mask[j] ? row[j] * scale : -INFINITY;
  } else if (scale != 1.0f) {
    for (int64_t j = 0; j < n; ++j) row[j] *= scale;
  }
  if (!softmax_f32(kernels, row, n)) std::fill(row, row + n, 1.0f / all_keys);  // no visible key
}

// Many queries at once (prefill): per head, scores = Q·Kᵀ and out = P·V as matrix products on
// the kernel layer, over query blocks so the scores block stays small and each block only
// reaches the keys it can see.
void attention_blocked(Context& ctx, const AttentionShape& a, const float* q, int64_t T, int64_t pos0,
                       const float* k, const float* v, float* out, const uint8_t* key_mask, const int32_t* groups) {
  const bool bidir = !a.causal && a.sliding_window == 0 && a.softcap == 0 && !groups;
  // Bidirectional rows see every key: bigger query blocks amortise packing K and Vᵀ per block.
  const int64_t kBlock = bidir ? 256 : 128;
  const int64_t H = a.n_heads, Hkv = a.n_kv_heads, Dh = a.head_dim, group = H / Hkv;
  const int64_t q_width = H * Dh, kv_width = Hkv * Dh, S = pos0 + T;
  // Low precision: K [S, Dh] and Vᵀ [Dh, S] of this head as Q8_0 rows, so both products run on
  // the int8 (VNNI) kernels, which round the query / probability rows to Q8_0 as well. Rows of
  // the probabilities and Vᵀ are padded with zeros to a whole block of keys.
  const bool q8 = a.low_precision && Dh % 32 == 0;
  const int64_t S32 = q8 ? (S + 31) / 32 * 32 : S;
  const size_t k_row = q8 ? row_bytes(DType::Q8_0, Dh) : 0, vt_row = q8 ? row_bytes(DType::Q8_0, S32) : 0;
  // The table's Q8_0 activation quantizer (SIMD) also writes these weight rows.
  const auto quantize_q8 = ctx.kernels.table().w[kern::weight_slot(DType::Q8_0)].quantize_act;
  std::vector<float> scores(std::min(kBlock, T) * S32), vt(Dh * S32, 0.0f);
  std::vector<uint8_t> k8(k_row * S), vt8(vt_row * Dh);
  for (int64_t kvh = 0; kvh < Hkv; ++kvh) {
    // Vᵀ of this head, [Dh, S], so P·V is a product with weight rows of length S.
    ctx.pool.parallel_for(Dh, 8, [&](int64_t b, int64_t e) {
      for (int64_t d = b; d < e; ++d) {
        for (int64_t j = 0; j < S; ++j) vt[d * S32 + j] = v[j * kv_width + kvh * Dh + d];
        if (q8) quantize_q8(vt.data() + d * S32, vt8.data() + d * vt_row, S32);
      }
    });
    if (q8)
      ctx.pool.parallel_for(S, 64, [&](int64_t b, int64_t e) {
        for (int64_t j = b; j < e; ++j)
          quantize_q8(k + j * kv_width + kvh * Dh, k8.data() + j * k_row, Dh);
      });
    for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
      for (int64_t t0 = 0; t0 < T; t0 += kBlock) {
        const int64_t tc = std::min(kBlock, T - t0);
        // Keys after the block's last query are never visible, except that a padded row with no
        // visible key at all averages over every key (HF's eager softmax of an all-masked row).
        const int64_t n = key_mask || groups || !a.causal ? S : pos0 + t0 + tc;
        const int64_t ld = q8 ? (n + 31) / 32 * 32 : n;
        MatmulArgs qk;
        qk.wtype = q8 ? DType::Q8_0 : DType::F32;
        qk.w = q8 ? (const void*)k8.data() : (const void*)(k + kvh * Dh);
        qk.w_row_bytes = q8 ? k_row : kv_width * sizeof(float);
        qk.n = n;
        qk.k = Dh;
        qk.x = q + t0 * q_width + h * Dh;
        qk.ldx = q_width;
        qk.m = tc;
        qk.y = scores.data();
        qk.ldy = ld;
        matmul(ctx.kernels, ctx.pool, qk);
        ctx.pool.parallel_for(tc, 4, [&](int64_t b, int64_t e) {
          for (int64_t t = b; t < e; ++t) {
            float* row = scores.data() + t * ld;
            if (bidir)
              finish_scores_row_bidir(ctx.kernels, row, a.scale, n, S, key_mask);
            else
              finish_scores_row(a, row, pos0 + t0 + t, n, S, key_mask, groups);
            std::fill(row + n, row + ld, 0.0f);
          }
        });
        MatmulArgs pv;
        pv.wtype = q8 ? DType::Q8_0 : DType::F32;
        pv.w = q8 ? (const void*)vt8.data() : (const void*)vt.data();
        pv.w_row_bytes = q8 ? vt_row : S32 * sizeof(float);
        pv.n = Dh;
        pv.k = ld;
        pv.x = scores.data();
        pv.ldx = ld;
        pv.m = tc;
        pv.y = out + t0 * q_width + h * Dh;
        pv.ldy = q_width;
        matmul(ctx.kernels, ctx.pool, pv);
      }
    }
  }
}

}  // namespace

void attention(Context& ctx, const AttentionShape& a, const float* q, int64_t T, int64_t pos0, const float* k,
               const float* v, float* out, const uint8_t* key_mask, const int32_t* groups) {
  const int64_t H = a.n_heads, Hkv = a.n_kv_heads, Dh = a.head_dim;
  const int64_t group = H / Hkv;
  const int64_t q_width = H * Dh, kv_width = Hkv * Dh;
  if (T >= 16 || !a.causal || groups) {
    attention_blocked(ctx, a, q, T, pos0, k, v, out, key_mask, groups);
    return;
  }
  // Few queries (decode): one job per (token, head); each computes its scores row and weighted sum of values.
  ctx.pool.parallel_for(T * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(pos0 + T);
    for (int64_t job = begin; job < end; ++job) {
      const int64_t t = job / H, h = job % H, kvh = h / group;
      const int64_t pos = pos0 + t;
      const int64_t first = a.sliding_window > 0 ? std::max<int64_t>(0, pos - a.sliding_window + 1) : 0;
      const int64_t n = pos + 1 - first;
      const float* qh = q + t * q_width + h * Dh;
      float* o = out + t * q_width + h * Dh;
      std::fill(o, o + Dh, 0.0f);
      bool any_visible = key_mask == nullptr;
      for (int64_t j = 0; j < n && !any_visible; ++j) any_visible = key_mask[first + j] != 0;
      if (!any_visible) {
        const int64_t all = pos0 + T;
        for (int64_t j = 0; j < all; ++j) ops::add_scaled(o, v + j * kv_width + kvh * Dh, 1.0f / all, Dh);
        continue;
      }
      for (int64_t j = 0; j < n; ++j) {
        if (key_mask && !key_mask[first + j]) {
          scores[j] = -INFINITY;
          continue;
        }
        scores[j] = dot_f32(ctx.kernels, qh, k + (first + j) * kv_width + kvh * Dh, Dh) * a.scale;
        if (a.softcap > 0) scores[j] = a.softcap * std::tanh(scores[j] / a.softcap);
      }
      ops::softmax(scores.data(), n);
      for (int64_t j = 0; j < n; ++j)
        if (scores[j] != 0.0f) ops::add_scaled(o, v + (first + j) * kv_width + kvh * Dh, scores[j], Dh);
    }
  });
}

}  // namespace edgevl::nn
