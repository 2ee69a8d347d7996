// Scaled dot-product attention of T new queries against a sequence's cached keys/values
// (HF eager_attention_forward): softmax(q·kᵀ · scale [+ softcap]) · v, causal, optional
// sliding window (key j visible to query i when i - window < j <= i), grouped-query heads.
#pragma once
#include <cstdint>

#include "tensor/context.h"

namespace edgevl::nn {

struct AttentionShape {
  int64_t n_heads = 0, n_kv_heads = 0, head_dim = 0;
  float scale = 1.0f;
  int64_t sliding_window = 0;  // 0 = global
  float softcap = 0.0f;        // 0 = none (Gemma 2's attn_logit_softcapping)
  bool causal = true;          // false: every query sees every (unmasked) key (vision encoders)
  bool low_precision = false;  // many-query path: q·kᵀ and p·v with Q8_0 operands (int8 dot products)
};

// q: [T, H*Dh] for positions pos0 .. pos0+T-1; k, v: [S, Hkv*Dh] with S >= pos0+T filled.
// out: [T, H*Dh]. key_mask (optional, S entries): 0 hides that position (padding), as HF's
// attention_mask does; a query that sees no key at all gets the uniform average of all pos0+T
// values, which is what HF's eager softmax over an all-masked row computes.
// groups (optional, S entries, -1 = none): positions of one group (an image's soft tokens) also
// see each other whatever the causal and window rules say (Gemma 3/4's bidirectional images).
void attention(Context& ctx, const AttentionShape& a, const float* q, int64_t T, int64_t pos0, const float* k,
               const float* v, float* out, const uint8_t* key_mask = nullptr, const int32_t* groups = nullptr);

}  // namespace edgevl::nn
