// The pieces every Llama-like decoder shares: its configuration, one layer's weights, the
// self-attention block (projections, optional q/k norm, RoPE, cache append, attention, output)
// and the gated MLP. Families compose them in their own forward, which reads like the HF module.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "models/model.h"
#include "models/weights.h"
#include "nn/attention.h"
#include "nn/rope.h"
#include "tensor/ops.h"

namespace edgevl {

struct DecoderConfig {
  int64_t vocab = 0, hidden = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, ffn = 0;
  float rms_eps = 1e-6f;
  ops::Activation act = ops::Activation::Silu;
  bool tie_embeddings = false;
  bool attention_bias = false;
  bool mlp_bias = false;
  int64_t max_positions = 4096;
  float attn_scale = 0;                  // 0: 1/sqrt(head_dim)
  int64_t sliding_window = 0;
  float attn_softcap = 0;                // 0: none (Gemma's attn_logit_softcapping)
  std::vector<bool> layer_sliding;       // per layer: sliding-window attention
  nn::RopeConfig rope_global, rope_local;
  int32_t bos_id = -1, eos_id = -1;
};

struct DecoderLayerWeights {
  WeightRef attn_norm, q, k, v, o, q_bias, k_bias, v_bias, o_bias, q_norm, k_norm, post_attn_norm;
  WeightRef ffn_norm, gate, up, down, gate_bias, up_bias, down_bias, post_ffn_norm;
};

struct DecoderWeights {
  WeightRef embed, final_norm, lm_head;
  std::vector<DecoderLayerWeights> layers;
};

// Scratch buffers reused across forward calls.
struct DecoderScratch {
  Tensor x, xn, q, k, v, attn, h, gate, up;
};

// Writes layer `layer`'s attention output for xn [T, D] into out [T, D]; appends K/V at
// positions cache.size() .. + T (Gemma's q/k norms arrive as 1 + w from the loader).
void self_attention(Context& ctx, const DecoderConfig& cfg, const DecoderLayerWeights& w, const nn::Rope& rope,
                    int64_t layer, nn::KvCache& cache, const float* xn, int64_t T, DecoderScratch& s, float* out,
                    const ForwardRequest& req);

// out [T, D] = down(act(gate(xn)) * up(xn)), for an MLP `ffn` wide; gate_buf/up_buf are scratch.
void gated_mlp(Context& ctx, ops::Activation act, int64_t ffn, const WeightRef& gate, const WeightRef& up,
               const WeightRef& down, const float* xn, int64_t T, Tensor& gate_buf, Tensor& up_buf, float* out,
               const float* gate_bias = nullptr, const float* up_bias = nullptr, const float* down_bias = nullptr);
// The same with a layer's weights and the configuration's width and activation.
void gated_mlp(Context& ctx, const DecoderConfig& cfg, const DecoderLayerWeights& w, const float* xn, int64_t T,
               DecoderScratch& s, float* out);

// Embedding rows for T tokens (ids checked against the vocabulary) into x [T, D].
void embed_tokens(const WeightRef& table, std::span<const int32_t> tokens, float* x);

// Final norm + LM head for the rows wanted (all, or the last) into logits.
void lm_logits(Context& ctx, const DecoderConfig& cfg, const DecoderWeights& w, const ForwardRequest& req,
               const Tensor& x_final_normed, Tensor& logits);

// "hidden_states.NN", the goldens' name for HF's output_hidden_states[i].
std::string hidden_state_name(int64_t i);

// Parameter count over all loaded weights (tied weights counted once).
int64_t count_parameters(const DecoderWeights& w);
// The ModelInfo and the KV cache every decoder family reports / uses.
ModelInfo decoder_model_info(const DecoderConfig& d, const DecoderWeights& w, const std::string& family,
                             const std::string& architecture);
nn::KvCache new_decoder_cache(const DecoderConfig& d, int64_t max_positions);

// The fields every Llama-like HF config.json shares (sizes, norms, activation, biases, tied
// embeddings, special ids); families pass their own defaults for what their configs may omit.
struct HfDecoderDefaults {
  int64_t head_dim = 0;  // 0: hidden_size / num_attention_heads
  const char* act = "silu";
  bool tie_embeddings = false;
  int64_t max_positions = 4096;
};
DecoderConfig decoder_config_from_hf(const HfConfig& hf, const HfDecoderDefaults& defaults);
// The same from GGUF `<arch>.*` keys, as llama.cpp's converter writes them.
DecoderConfig decoder_config_from_gguf(const gguf::File& g, const std::string& arch);

// HF `rope_parameters` (v5) / `rope_theta` + `rope_scaling` (older files) for one layer type
// ("full_attention" / "sliding_attention" / "" for a single set).
nn::RopeConfig rope_from_hf(const HfConfig& hf, const std::string& layer_type, double default_theta);
// GGUF `<arch>.rope.*` keys.
nn::RopeConfig rope_from_gguf(const gguf::File& g, const std::string& arch);

}  // namespace edgevl
