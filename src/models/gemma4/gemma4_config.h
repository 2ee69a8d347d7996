// Gemma 4 text decoder configuration (HF Gemma4TextConfig, or the `gemma4.*` GGUF keys llama.cpp's
// converter writes). Unlike the Llama-like families, the shape varies per layer: global
// ("full_attention") layers have wider heads and may have fewer KV heads, the last
// num_kv_shared_layers layers reuse an earlier layer's keys and values, and E2B doubles the MLP
// of those shared layers.
#pragma once
#include <cstdint>
#include <vector>

#include "io/gguf.h"
#include "io/hf_config.h"
#include "nn/rope.h"
#include "tensor/ops.h"

namespace edgevl {

struct Gemma4LayerShape {
  bool sliding = true;
  int64_t head_dim = 0, n_kv_heads = 0, ffn = 0;
  int64_t kv_source = 0;  // the layer whose keys/values this one attends to (itself unless shared)
  bool v_from_k = false;  // attention_k_eq_v on a global layer: no v_proj, V is the raw k_proj output
};

struct Gemma4TextConfig {
  int64_t vocab = 0, hidden = 0, n_layers = 0, n_heads = 0;
  float rms_eps = 1e-6f;
  ops::Activation act = ops::Activation::GeluTanh;
  int64_t sliding_window = 512;
  float final_softcap = 0;
  int64_t max_positions = 131072;
  // Per-layer embeddings (E2B/E4B): hidden_size_per_layer_input wide, own vocabulary size.
  int64_t ple_dim = 0, ple_vocab = 0;
  // Mixture of experts beside the dense MLP (26B-A4B).
  int64_t n_experts = 0, top_k = 0, moe_ffn = 0;
  std::vector<Gemma4LayerShape> layers;
  nn::RopeConfig rope_global, rope_sliding;
  int64_t global_head_dim = 0, sliding_head_dim = 0;  // the head sizes each RoPE is built for
  int32_t bos_id = -1, eos_id = -1, pad_id = 0;
  // use_bidirectional_attention "vision" (31B, 26B-A4B): in sliding layers the soft tokens of one
  // image also attend to each other both ways; global layers stay causal.
  bool bidirectional_images = false;

  bool moe() const { return n_experts > 0; }
  bool shared(int64_t l) const { return layers[l].kv_source != l; }
};

// `hf` is the text configuration: a Gemma4ForCausalLM config.json, or the text_config of a
// Gemma4ForConditionalGeneration one. Reads both spellings of the per-layer sizes: flat
// global_head_dim / num_global_key_value_heads and the per_layer_config map.
Gemma4TextConfig gemma4_text_config_from_hf(const HfConfig& hf);
Gemma4TextConfig gemma4_text_config_from_gguf(const gguf::File& g);

}  // namespace edgevl
