// Forward/backward pairs for the ops the decoder families use, written like llm.c: each op has a
// forward that saves what its backward needs and a backward that ACCUMULATES (+=) into the
// gradients it is handed (so a tensor read by two ops, e.g. the residual stream, collects both).
// Forwards reuse tensor/ops and nn/ where they fit; every backward is checked against finite
// differences in tests/train_test.cpp. Shapes use the letters of tensor/tensor.h; N = B*T rows.
#pragma once
#include <cstdint>
#include <vector>

#include "nn/attention.h"
#include "nn/rope.h"
#include "tensor/context.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"

namespace edgevl::train {

// --- embedding (nn.Embedding): forward is models/common embed_tokens --------------------------
// dtable[ids[t]] += dx[t] for t < n (rows of D), except for ids equal to padding_idx (nn.Embedding's
// padding_idx: that row gets no gradient).
void embedding_backward(const int32_t* ids, int64_t n, const float* dx, float* dtable, int64_t D,
                        int32_t padding_idx = -1);

// --- RMSNorm (HF LlamaRMSNorm: x * rsqrt(mean(x²) + eps) * w) -----------------------------------
// y = ops::rms_norm(x); rstd[r] = 1/sqrt(mean(x[r]²) + eps) is kept for the backward.
void rms_norm_forward(const float* x, const float* w, float* y, float* rstd, int64_t rows, int64_t n, float eps);
// dx += ∂/∂x, dw += ∂/∂w (dw may be null: frozen or no scale; w null: no scale).
void rms_norm_backward(const float* dy, const float* x, const float* w, const float* rstd, float* dx, float* dw,
                       int64_t rows, int64_t n);

// --- linear (nn.Linear without bias; the bias is linear_bias_backward) ------------------------
// Forward is ops::linear (any weight dtype, kernel table). y[N_rows, O] = x[N_rows, I] · Wᵀ.
// dx[rows, I] += dy[rows, O] · W, for W of any dtype (rows dequantized on the fly).
void linear_backward_input(Context& ctx, const WeightRef& w, const float* dy, int64_t rows, float* dx);
// dw[O, I] += dyᵀ · x (float32 gradients).
void linear_backward_weight(Context& ctx, const float* dy, const float* x, int64_t rows, int64_t O, int64_t I,
                            float* dw);
// db[O] += Σ_rows dy.
void linear_bias_backward(const float* dy, int64_t rows, int64_t O, float* db);
using ops::f32_weight;

// --- RoPE (HF apply_rotary_pos_emb; rotate-half or interleaved, as nn::Rope is configured) ------
// x [T, heads*Dh] of one row, token t at position pos0 + t (or positions[t]), rotated in place.
void rope_forward(const nn::Rope& rope, float* x, int64_t T, int64_t heads, int64_t Dh, int64_t pos0 = 0,
                  const int64_t* positions = nullptr);
// The rotation is orthogonal up to attention_scaling, so the backward rotates dx back (by -pos).
void rope_backward(const nn::Rope& rope, float* dx, int64_t T, int64_t heads, int64_t Dh, int64_t pos0 = 0,
                   const int64_t* positions = nullptr);

// --- self-attention with GQA (HF eager_attention_forward, dropout 0) --------------------------
// Which keys a query sees besides a.causal and a.sliding_window; each array is [B*T] or null.
struct KeyMask {
  const uint8_t* valid = nullptr;     // 0 = padding key
  const int32_t* sequence = nullptr;  // packed rows: only the keys of the query's own sequence
  const int32_t* group = nullptr;     // bidirectional blocks (Gemma's images): a query also sees every
                                      // key of its group (>= 0), later ones and out-of-window ones included
};
// q [B*T, H*Dh], k/v [B*T, Hkv*Dh]; out [B*T, H*Dh]. probs [B, H, T, T] (softmax rows, kept for the
// backward). a.softcap must be 0. A query row that sees no key is uniform over all T keys, like
// HF's eager softmax over a row of dtype-min scores.
// `pool` (optional) runs the heads in parallel (not from inside another pool task).
void attention_forward(const nn::AttentionShape& a, const float* q, const float* k, const float* v,
                       const KeyMask& mask, int64_t B, int64_t T, float* probs, float* out, ThreadPool* pool = nullptr);
void attention_backward(const nn::AttentionShape& a, const float* dout, const float* q, const float* k,
                        const float* v, const float* probs, const KeyMask& mask, int64_t B, int64_t T, float* dq,
                        float* dk, float* dv, ThreadPool* pool = nullptr);
// Padding only.
inline void attention_forward(const nn::AttentionShape& a, const float* q, const float* k, const float* v,
                              const uint8_t* key_mask, int64_t B, int64_t T, float* probs, float* out) {
  attention_forward(a, q, k, v, KeyMask{key_mask}, B, T, probs, out);
}
inline void attention_backward(const nn::AttentionShape& a, const float* dout, const float* q, const float* k,
                               const float* v, const float* probs, const uint8_t* key_mask, int64_t B, int64_t T,
                               float* dq, float* dk, float* dv) {
  attention_backward(a, dout, q, k, v, probs, KeyMask{key_mask}, B, T, dq, dk, dv);
}

// --- gated activation (SwiGLU / GeGLU middle: out = act(gate) * up) ----------------------------
// Forward: ops::gated_act (inference, fast tanh/exp) or gated_act_forward (the exact function the
// backward differentiates: GELU-tanh's fast tanh loses relative precision where 1 + tanh is small).
void gated_act_forward(ops::Activation act, const float* gate, const float* up, float* out, int64_t n);
void gated_act_backward(ops::Activation act, const float* gate, const float* up, const float* dout, float* dgate,
                        float* dup, int64_t n);

// --- final logit soft-capping (Gemma 2/4: y = cap * tanh(x / cap)) -----------------------------
// In place, with the exact tanh (ops::softcap uses a fast approximation meant for inference).
void softcap_forward(float* x, float cap, int64_t n);
// From the capped output y: dx += dy * (1 - (y / cap)²).
void softcap_backward(const float* y, float cap, const float* dy, float* dx, int64_t n);

// --- log-probabilities of target tokens (TRL's selective_log_softmax; cross-entropy is -mean) --
inline constexpr int64_t kIgnoreIndex = -100;
// logits [N, V]; targets [N] (kIgnoreIndex: not counted, logps 0). logps[r] = log_softmax(row)[t];
// entropies (optional) [N] = -Σ p log p of every row (counted or not).
// `pool` (optional) splits the rows across its workers.
void target_logps_forward(const float* logits, const int64_t* targets, int64_t N, int64_t V, float* logps,
                          float* entropies = nullptr, ThreadPool* pool = nullptr);
// dlogits += dlogps[r] * (onehot(t) - softmax(row)) on counted rows.
void target_logps_backward(const float* logits, const int64_t* targets, int64_t N, int64_t V, const float* dlogps,
                           float* dlogits, ThreadPool* pool = nullptr);

}  // namespace edgevl::train
