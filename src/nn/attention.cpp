#include "nn/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "tensor/ops.h"

namespace edgevl::nn {

namespace {

// Scores row of query t (position pos) over keys [0, n_keys): scale, soft-cap, mask (causal,
// window, padding), softmax. A row with no visible key becomes uniform over all `all_keys`.
void finish_scores_row(const AttentionShape& a, float* row, int64_t pos, int64_t n_keys, int64_t all_keys,
                       const uint8_t* key_mask) {
  const int64_t first = a.sliding_window > 0 ? std::max<int64_t>(0, pos - a.sliding_window + 1) : 0;
  bool any = false;
  for (int64_t j = 0; j < n_keys; ++j) {
    const bool visible = j >= first && (j <= pos || !a.causal) && (!key_mask || key_mask[j]);
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

// Many queries at once (prefill): per head, scores = Q·Kᵀ and out = P·V as matrix products on
// the kernel layer, over query blocks so the scores block stays small and each block only
// reaches the keys it can see.
void attention_blocked(Context& ctx, const AttentionShape& a, const float* q, int64_t T, int64_t pos0,
                       const float* k, const float* v, float* out, const uint8_t* key_mask) {
  constexpr int64_t kBlock = 128;
  const int64_t H = a.n_heads, Hkv = a.n_kv_heads, Dh = a.head_dim, group = H / Hkv;
  const int64_t q_width = H * Dh, kv_width = Hkv * Dh, S = pos0 + T;
  std::vector<float> scores(std::min(kBlock, T) * S), vt(Dh * S);
  for (int64_t kvh = 0; kvh < Hkv; ++kvh) {
    // Vᵀ of this head, [Dh, S], so P·V is a product with weight rows of length S.
    ctx.pool.parallel_for(Dh, 8, [&](int64_t b, int64_t e) {
      for (int64_t d = b; d < e; ++d)
        for (int64_t j = 0; j < S; ++j) vt[d * S + j] = v[j * kv_width + kvh * Dh + d];
    });
    for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
      for (int64_t t0 = 0; t0 < T; t0 += kBlock) {
        const int64_t tc = std::min(kBlock, T - t0);
        // Keys after the block's last query are never visible, except that a padded row with no
        // visible key at all averages over every key (HF's eager softmax of an all-masked row).
        const int64_t n = key_mask || !a.causal ? S : pos0 + t0 + tc;
        MatmulArgs qk;
        qk.wtype = DType::F32;
        qk.w = k + kvh * Dh;
        qk.w_row_bytes = kv_width * sizeof(float);
        qk.n = n;
        qk.k = Dh;
        qk.x = q + t0 * q_width + h * Dh;
        qk.ldx = q_width;
        qk.m = tc;
        qk.y = scores.data();
        qk.ldy = n;
        matmul(ctx.kernels, ctx.pool, qk);
        ctx.pool.parallel_for(tc, 4, [&](int64_t b, int64_t e) {
          for (int64_t t = b; t < e; ++t) finish_scores_row(a, scores.data() + t * n, pos0 + t0 + t, n, S, key_mask);
        });
        MatmulArgs pv;
        pv.wtype = DType::F32;
        pv.w = vt.data();
        pv.w_row_bytes = S * sizeof(float);
        pv.n = Dh;
        pv.k = n;
        pv.x = scores.data();
        pv.ldx = n;
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
               const float* v, float* out, const uint8_t* key_mask) {
  const int64_t H = a.n_heads, Hkv = a.n_kv_heads, Dh = a.head_dim;
  const int64_t group = H / Hkv;
  const int64_t q_width = H * Dh, kv_width = Hkv * Dh;
  if (T >= 16 || !a.causal) {
    attention_blocked(ctx, a, q, T, pos0, k, v, out, key_mask);
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
