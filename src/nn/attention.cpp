#include "nn/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "tensor/ops.h"

namespace edgevl::nn {

void attention(Context& ctx, const AttentionShape& a, const float* q, int64_t T, int64_t pos0, const float* k,
               const float* v, float* out, const uint8_t* key_mask) {
  const int64_t H = a.n_heads, Hkv = a.n_kv_heads, Dh = a.head_dim;
  const int64_t group = H / Hkv;
  const int64_t q_width = H * Dh, kv_width = Hkv * Dh;
  // One job per (token, head); each computes its scores row and weighted sum of values.
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
