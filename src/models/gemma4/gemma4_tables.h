// The Gemma 4 text decoder's weight tables: every weight once, with its HF and llama.cpp GGUF
// names and the shape the configuration implies. The forward (gemma4_text.cpp) loads through them
// and `edgevl init` (gemma4_layout.cpp) writes files from them.
#pragma once
#include <vector>

#include "models/gemma4/gemma4_config.h"
#include "models/weights.h"
#include "nn/rope.h"

namespace edgevl {

struct Gemma4LayerWeights {
  WeightRef attn_norm, q, k, v, o, q_norm, k_norm, post_attn_norm;
  WeightRef ffn_norm, gate, up, down, post_ffn_norm;
  WeightRef ple_gate, ple_proj, ple_norm;  // per-layer input (PLE)
  WeightRef scalar;
  // Mixture of experts: router, experts as [E, 2I, D] (gate rows then up rows) and [E, D, I].
  WeightRef router, router_scale, expert_scale, experts_gate_up, experts_down;
  WeightRef pre_ffn_norm_2, post_ffn_norm_1, post_ffn_norm_2;
};

struct Gemma4Weights {
  WeightRef embed, lm_head, ple_embed, ple_model_proj, ple_proj_norm, final_norm, rope_freqs;
  std::vector<Gemma4LayerWeights> layers;
};

// Model-level weights. lm_head is optional (tied to embed_tokens when absent); rope_freqs is
// llama.cpp's proportional-RoPE table (GGUF only; 1 for rotating pairs, 1e30 for the rest).
std::vector<WeightSpec<Gemma4Weights>> gemma4_model_table(const Gemma4TextConfig& c);
// Layer l's weights (KV-shared layers list no key/value weights).
std::vector<WeightSpec<Gemma4LayerWeights>> gemma4_layer_table(const Gemma4TextConfig& c, int64_t l);

// The text decoder's weights through the two tables; a missing head ties to the embedding table.
// Shared by the inference and the training forward.
void load_gemma4_text_weights(WeightLoader& loader, const Gemma4TextConfig& c, Gemma4Weights& w);
// Its RoPEs: sliding layers, and full layers (when the model has them) with the stored frequency
// divisors (proportional RoPE).
void make_gemma4_ropes(const Gemma4TextConfig& c, const Gemma4Weights& w, nn::Rope& sliding, nn::Rope& global);

}  // namespace edgevl
