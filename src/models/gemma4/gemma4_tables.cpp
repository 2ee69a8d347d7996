#include "models/gemma4/gemma4_tables.h"

namespace edgevl {

std::vector<WeightSpec<Gemma4Weights>> gemma4_model_table(const Gemma4TextConfig& c) {
  const int64_t V = c.vocab, D = c.hidden, LP = c.n_layers * c.ple_dim;
  using M = Gemma4Weights;
  std::vector<WeightSpec<M>> t = {
      {&M::embed, "model.embed_tokens.weight", "token_embd.weight", {V, D}},
      {&M::lm_head, "lm_head.weight", "output.weight", {V, D}, kOptional},
      {&M::final_norm, "model.norm.weight", "output_norm.weight", {D}, kVector},
      {&M::rope_freqs, nullptr, "rope_freqs.weight", {c.global_head_dim / 2}, kVector | kOptional},
  };
  if (c.ple_dim > 0) {
    t.push_back({&M::ple_embed, "model.embed_tokens_per_layer.weight", "per_layer_token_embd.weight",
                 {c.ple_vocab, LP}});
    t.push_back({&M::ple_model_proj, "model.per_layer_model_projection.weight", "per_layer_model_proj.weight",
                 {LP, D}});
    t.push_back({&M::ple_proj_norm, "model.per_layer_projection_norm.weight", "per_layer_proj_norm.weight",
                 {c.ple_dim}, kVector});
  }
  return t;
}

std::vector<WeightSpec<Gemma4LayerWeights>> gemma4_layer_table(const Gemma4TextConfig& c, int64_t l) {
  const Gemma4LayerShape& s = c.layers[l];
  const int64_t D = c.hidden, Q = c.n_heads * s.head_dim, KV = s.n_kv_heads * s.head_dim, F = s.ffn;
  using W = Gemma4LayerWeights;
  std::vector<WeightSpec<W>> t = {
      {&W::attn_norm, "model.layers.{L}.input_layernorm.weight", "blk.{L}.attn_norm.weight", {D}, kVector},
      {&W::q, "model.layers.{L}.self_attn.q_proj.weight", "blk.{L}.attn_q.weight", {Q, D}},
      {&W::q_norm, "model.layers.{L}.self_attn.q_norm.weight", "blk.{L}.attn_q_norm.weight", {s.head_dim}, kVector},
      {&W::o, "model.layers.{L}.self_attn.o_proj.weight", "blk.{L}.attn_output.weight", {D, Q}},
      {&W::post_attn_norm, "model.layers.{L}.post_attention_layernorm.weight", "blk.{L}.post_attention_norm.weight",
       {D}, kVector},
      {&W::ffn_norm, "model.layers.{L}.pre_feedforward_layernorm.weight", "blk.{L}.ffn_norm.weight", {D}, kVector},
      {&W::gate, "model.layers.{L}.mlp.gate_proj.weight", "blk.{L}.ffn_gate.weight", {F, D}},
      {&W::up, "model.layers.{L}.mlp.up_proj.weight", "blk.{L}.ffn_up.weight", {F, D}},
      {&W::down, "model.layers.{L}.mlp.down_proj.weight", "blk.{L}.ffn_down.weight", {D, F}},
      {&W::post_ffn_norm, "model.layers.{L}.post_feedforward_layernorm.weight", "blk.{L}.post_ffw_norm.weight", {D},
       kVector},
      {&W::scalar, "model.layers.{L}.layer_scalar", "blk.{L}.layer_output_scale.weight", {1}, kVector},
  };
  // KV-shared layers have no key/value weights (files may still carry unused ones).
  if (!c.shared(l)) {
    t.push_back({&W::k, "model.layers.{L}.self_attn.k_proj.weight", "blk.{L}.attn_k.weight", {KV, D}});
    t.push_back({&W::k_norm, "model.layers.{L}.self_attn.k_norm.weight", "blk.{L}.attn_k_norm.weight", {s.head_dim},
                 kVector});
    if (!s.v_from_k)
      t.push_back({&W::v, "model.layers.{L}.self_attn.v_proj.weight", "blk.{L}.attn_v.weight", {KV, D}});
  }
  if (c.ple_dim > 0) {
    t.push_back({&W::ple_gate, "model.layers.{L}.per_layer_input_gate.weight", "blk.{L}.inp_gate.weight",
                 {c.ple_dim, D}});
    t.push_back({&W::ple_proj, "model.layers.{L}.per_layer_projection.weight", "blk.{L}.proj.weight", {D, c.ple_dim}});
    t.push_back({&W::ple_norm, "model.layers.{L}.post_per_layer_input_norm.weight", "blk.{L}.post_norm.weight", {D},
                 kVector});
  }
  if (c.moe()) {
    // llama.cpp's names (conversion/gemma.py Gemma4Model.modify_tensors, gguf-py tensor_mapping):
    // router.scale and per_expert_scale become the ".scale" companions of ffn_gate_inp and
    // ffn_down_exps; the experts keep HF's fused [E, 2I, D] gate-then-up layout as
    // ffn_gate_up_exps (ggml ne [D, 2I, E]). No values change: Gemma 4 norms are stored as is.
    const int64_t E = c.n_experts, I = c.moe_ffn;
    t.push_back({&W::router, "model.layers.{L}.router.proj.weight", "blk.{L}.ffn_gate_inp.weight", {E, D}});
    t.push_back({&W::router_scale, "model.layers.{L}.router.scale", "blk.{L}.ffn_gate_inp.scale", {D}, kVector});
    t.push_back({&W::expert_scale, "model.layers.{L}.router.per_expert_scale", "blk.{L}.ffn_down_exps.scale", {E},
                 kVector});
    t.push_back({&W::experts_gate_up, "model.layers.{L}.experts.gate_up_proj", "blk.{L}.ffn_gate_up_exps.weight",
                 {E, 2 * I, D}});
    t.push_back({&W::experts_down, "model.layers.{L}.experts.down_proj", "blk.{L}.ffn_down_exps.weight", {E, D, I}});
    t.push_back({&W::pre_ffn_norm_2, "model.layers.{L}.pre_feedforward_layernorm_2.weight",
                 "blk.{L}.pre_ffw_norm_2.weight", {D}, kVector});
    t.push_back({&W::post_ffn_norm_1, "model.layers.{L}.post_feedforward_layernorm_1.weight",
                 "blk.{L}.post_ffw_norm_1.weight", {D}, kVector});
    t.push_back({&W::post_ffn_norm_2, "model.layers.{L}.post_feedforward_layernorm_2.weight",
                 "blk.{L}.post_ffw_norm_2.weight", {D}, kVector});
  }
  return t;
}

void load_gemma4_text_weights(WeightLoader& loader, const Gemma4TextConfig& c, Gemma4Weights& w) {
  loader.load_table(w, gemma4_model_table(c));
  if (w.lm_head.empty()) w.lm_head = loader.tied_output(w.embed);
  w.layers.resize(c.n_layers);
  for (int64_t l = 0; l < c.n_layers; ++l) loader.load_table(w.layers[l], gemma4_layer_table(c, l), l);
}

void make_gemma4_ropes(const Gemma4TextConfig& c, const Gemma4Weights& w, nn::Rope& sliding, nn::Rope& global) {
  sliding = nn::Rope(c.rope_sliding, c.sliding_head_dim);
  if (c.global_head_dim > 0) {
    global = nn::Rope(c.rope_global, c.global_head_dim);
    if (!w.rope_freqs.empty())
      global.divide_frequencies(std::vector<float>(w.rope_freqs.f32(), w.rope_freqs.f32() + w.rope_freqs.cols()));
  }
}

}  // namespace edgevl
