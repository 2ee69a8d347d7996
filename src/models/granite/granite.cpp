// Granite (HF GraniteForCausalLM) and Granite 4.0 hybrid in its attention-only form
// (HF GraniteMoeHybridForCausalLM with every layer "attention" and a dense shared MLP: Granite
// 4.0 Micro, the language model of Granite 4.0 3B Vision). The network is Llama's with µP
// multipliers (modeling_granite.py): embeddings × embedding_multiplier, each block's output ×
// residual_multiplier, attention scale = attention_multiplier, logits ÷ logits_scaling.
// llama.cpp converts both to its "granite" architecture.
#include "models/granite/granite.h"

#include <cmath>

#include "core/error.h"
#include "models/layout.h"
#include "models/llama/llama.h"

namespace edgevl {

namespace {

bool is_attention_layer(const std::string& t) { return t == "attention" || t == "full_attention"; }

LlamaConfig granite_config_from_hf(const HfConfig& hf) {
  LlamaConfig c = llama_config_from_hf(hf);
  c.mup.embedding = (float)hf.get_float("embedding_multiplier", 1.0);
  c.mup.residual = (float)hf.get_float("residual_multiplier", 1.0);
  c.mup.logits_div = (float)hf.get_float("logits_scaling", 1.0);
  c.dec.attn_scale = (float)hf.get_float("attention_multiplier", 0.0);
  if (hf.get_string("model_type", "") == "granitemoehybrid") {
    const auto& j = hf.json();
    if (auto it = j.find("layer_types"); it != j.end() && it->is_array()) {
      for (const auto& t : *it)
        EV_CHECK(t.is_string() && is_attention_layer(t.get<std::string>()), hf.path(),
                 ": granitemoehybrid layer type '", t.dump(), "' is not supported yet (only attention layers)");
    }
    EV_CHECK(hf.get_int("num_local_experts", 0) == 0, hf.path(),
             ": granitemoehybrid with routed experts is not supported yet");
    EV_CHECK(hf.get_string("position_embedding_type", "rope") == "rope", hf.path(),
             ": position_embedding_type '", hf.get_string("position_embedding_type", ""), "' is not supported");
    c.dec.ffn = hf.get_int("shared_intermediate_size", c.dec.ffn);
  }
  return c;
}

LlamaConfig granite_config_from_gguf(const gguf::File& g, const std::string& arch) {
  LlamaConfig c = llama_config_from_gguf(g, arch);
  c.mup.embedding = (float)g.get_float(arch + ".embedding_scale").value_or(1.0);
  c.mup.residual = (float)g.get_float(arch + ".residual_scale").value_or(1.0);
  c.mup.logits_div = (float)g.get_float(arch + ".logit_scale").value_or(1.0);
  c.dec.attn_scale = (float)g.get_float(arch + ".attention.scale").value_or(0.0);
  if (auto shared = g.get_int(arch + ".expert_shared_feed_forward_length"); shared && *shared > 0) c.dec.ffn = *shared;
  EV_CHECK(g.get_int(arch + ".expert_count").value_or(0) == 0, g.path(),
           ": Granite with routed experts is not supported yet");
  return c;
}

// Granite hybrid keeps its dense MLP as shared_mlp.input_linear = [gate; up] stacked by rows;
// llama.cpp's converter splits it into ffn_gate and ffn_up.
std::vector<WeightSpec<DecoderLayerWeights>> granite_hybrid_layer_table(const DecoderConfig& c) {
  auto t = llama_attention_table(c);
  const int64_t D = c.hidden, F = c.ffn;
  using L = DecoderLayerWeights;
  t.push_back({&L::gate, "model.layers.{L}.shared_mlp.input_linear.weight", "blk.{L}.ffn_gate.weight", {F, D},
               kRequired, 0});
  t.push_back({&L::up, "model.layers.{L}.shared_mlp.input_linear.weight", "blk.{L}.ffn_up.weight", {F, D},
               kRequired, F});
  t.push_back({&L::down, "model.layers.{L}.shared_mlp.output_linear.weight", "blk.{L}.ffn_down.weight", {D, F}});
  return t;
}

}  // namespace

std::unique_ptr<CausalLM> make_granite(std::unique_ptr<ModelSource> src) {
  const std::string arch = src->architecture();
  LlamaConfig cfg = src->is_gguf() ? granite_config_from_gguf(src->gguf(), arch) : granite_config_from_hf(src->hf());
  auto table = !src->is_gguf() && arch == "granitemoehybrid" ? granite_hybrid_layer_table(cfg.dec)
                                                              : llama_layer_table(cfg.dec);
  return std::make_unique<LlamaModel>(std::move(src), std::move(cfg), table, "granite");
}

DecoderLayout granite_layout(const HfConfig& hf) {
  LlamaConfig cfg = granite_config_from_hf(hf);
  const bool hybrid = hf.get_string("model_type", "") == "granitemoehybrid";
  // llama.cpp reads Granite's µP multipliers from these keys (both variants as arch "granite").
  return {cfg.dec, "granite", llama_model_table(cfg.dec),
          hybrid ? granite_hybrid_layer_table(cfg.dec) : llama_layer_table(cfg.dec),
          {{"granite.embedding_scale", cfg.mup.embedding},
           {"granite.residual_scale", cfg.mup.residual},
           {"granite.logit_scale", cfg.mup.logits_div},
           {"granite.attention.scale", cfg.dec.attn_scale > 0 ? cfg.dec.attn_scale : 1.0f / std::sqrt((float)cfg.dec.head_dim)}}};
}

}  // namespace edgevl
