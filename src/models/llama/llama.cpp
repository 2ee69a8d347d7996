#include "models/llama/llama.h"

#include <cmath>

#include "core/error.h"
#include "models/layout.h"

namespace edgevl {

LlamaConfig llama_config_from_hf(const HfConfig& hf) {
  LlamaConfig c;
  c.dec = decoder_config_from_hf(hf, {});
  c.dec.rope_global = rope_from_hf(hf, "", 10000.0);
  if (hf.has("partial_rotary_factor"))
    c.dec.rope_global.rotary_dim = (int64_t)(c.dec.head_dim * hf.get_float("partial_rotary_factor", 1.0));
  return c;
}

LlamaConfig llama_config_from_gguf(const gguf::File& g, const std::string& arch) {
  LlamaConfig c;
  c.dec = decoder_config_from_gguf(g, arch);
  // llama.cpp's converter permutes Llama's q/k rows so that RoPE pairs adjacent dimensions.
  c.dec.rope_global.interleaved = true;
  if (const TensorRef* f = g.find_tensor("rope_freqs.weight")) {
    EV_CHECK(f->dtype == DType::F32 && f->numel() == c.dec.head_dim / 2, g.path(), ": bad rope_freqs.weight");
    const float* p = reinterpret_cast<const float*>(f->data);
    c.rope_freq_factors.assign(p, p + f->numel());
  }
  return c;
}

std::vector<WeightSpec<DecoderWeights>> llama_model_table(const DecoderConfig& c) {
  const int64_t V = c.vocab, D = c.hidden;
  return {
      {&DecoderWeights::embed, "model.embed_tokens.weight", "token_embd.weight", {V, D}},
      {&DecoderWeights::final_norm, "model.norm.weight", "output_norm.weight", {D}, kVector},
      {&DecoderWeights::lm_head, "lm_head.weight", "output.weight", {V, D}, c.tie_embeddings ? kOptional : kRequired},
  };
}

std::vector<WeightSpec<DecoderLayerWeights>> llama_attention_table(const DecoderConfig& c) {
  const int64_t D = c.hidden, Q = c.n_heads * c.head_dim, KV = c.n_kv_heads * c.head_dim;
  const uint32_t bias = c.attention_bias ? kVector : (kVector | kOptional);
  using L = DecoderLayerWeights;
  return {
      {&L::attn_norm, "model.layers.{L}.input_layernorm.weight", "blk.{L}.attn_norm.weight", {D}, kVector},
      {&L::q, "model.layers.{L}.self_attn.q_proj.weight", "blk.{L}.attn_q.weight", {Q, D}},
      {&L::k, "model.layers.{L}.self_attn.k_proj.weight", "blk.{L}.attn_k.weight", {KV, D}},
      {&L::v, "model.layers.{L}.self_attn.v_proj.weight", "blk.{L}.attn_v.weight", {KV, D}},
      {&L::o, "model.layers.{L}.self_attn.o_proj.weight", "blk.{L}.attn_output.weight", {D, Q}},
      {&L::q_bias, "model.layers.{L}.self_attn.q_proj.bias", "blk.{L}.attn_q.bias", {Q}, bias},
      {&L::k_bias, "model.layers.{L}.self_attn.k_proj.bias", "blk.{L}.attn_k.bias", {KV}, bias},
      {&L::v_bias, "model.layers.{L}.self_attn.v_proj.bias", "blk.{L}.attn_v.bias", {KV}, bias},
      {&L::o_bias, "model.layers.{L}.self_attn.o_proj.bias", "blk.{L}.attn_output.bias", {D}, kVector | kOptional},
      {&L::ffn_norm, "model.layers.{L}.post_attention_layernorm.weight", "blk.{L}.ffn_norm.weight", {D}, kVector},
  };
}

std::vector<WeightSpec<DecoderLayerWeights>> llama_layer_table(const DecoderConfig& c) {
  auto t = llama_attention_table(c);
  const int64_t D = c.hidden, F = c.ffn;
  using L = DecoderLayerWeights;
  t.push_back({&L::gate, "model.layers.{L}.mlp.gate_proj.weight", "blk.{L}.ffn_gate.weight", {F, D}});
  t.push_back({&L::up, "model.layers.{L}.mlp.up_proj.weight", "blk.{L}.ffn_up.weight", {F, D}});
  t.push_back({&L::down, "model.layers.{L}.mlp.down_proj.weight", "blk.{L}.ffn_down.weight", {D, F}});
  const uint32_t bias = c.mlp_bias ? kVector : (kVector | kOptional);
  t.push_back({&L::gate_bias, "model.layers.{L}.mlp.gate_proj.bias", "blk.{L}.ffn_gate.bias", {F}, bias});
  t.push_back({&L::up_bias, "model.layers.{L}.mlp.up_proj.bias", "blk.{L}.ffn_up.bias", {F}, bias});
  t.push_back({&L::down_bias, "model.layers.{L}.mlp.down_proj.bias", "blk.{L}.ffn_down.bias", {D}, bias});
  return t;
}

LlamaModel::LlamaModel(std::unique_ptr<ModelSource> src, LlamaConfig cfg,
                       const std::vector<WeightSpec<DecoderLayerWeights>>& layer_table, const std::string& family)
    : cfg_(std::move(cfg)), loader_(*src) {
  source_ = std::move(src);
  const DecoderConfig& d = cfg_.dec;
  loader_.load_table(w_, llama_model_table(d));
  if (w_.lm_head.empty()) w_.lm_head = loader_.tied_output(w_.embed);
  w_.layers.resize(d.n_layers);
  for (int64_t l = 0; l < d.n_layers; ++l) loader_.load_table(w_.layers[l], layer_table, l);
  register_weights(loader_.by_hf_name());
  rope_ = nn::Rope(d.rope_global, d.head_dim);
  if (!cfg_.rope_freq_factors.empty()) rope_.divide_frequencies(cfg_.rope_freq_factors);

  info_ = decoder_model_info(d, w_, family, source_->architecture());
}

nn::KvCache LlamaModel::new_cache(int64_t max_positions) const {
  return new_decoder_cache(cfg_.dec, max_positions);
}

// HF LlamaModel.forward / GraniteModel.forward.
void LlamaModel::forward(Context& ctx, nn::KvCache& cache, const ForwardRequest& req, Tensor& logits) {
  const DecoderConfig& d = cfg_.dec;
  const int64_t T = (int64_t)req.tokens.size(), D = d.hidden;
  EV_CHECK(T > 0, "forward: no tokens");
  cache.reserve_more(T);
  s_.x.resize({T, D});
  s_.xn.resize({T, D});
  s_.h.resize({T, D});
  embed_tokens(w_.embed, req.tokens, s_.x.data());
  if (cfg_.mup.embedding != 1.0f) ops::scale(s_.x.data(), cfg_.mup.embedding, T * D);
  if (req.tap) req.tap("hidden_states.00", s_.x.data(), T, D);
  for (int64_t l = 0; l < d.n_layers; ++l) {
    const DecoderLayerWeights& w = w_.layers[l];
    ops::rms_norm(s_.x.data(), w.attn_norm.f32(), s_.xn.data(), T, D, d.rms_eps);
    self_attention(ctx, d, w, rope_, l, cache, s_.xn.data(), T, s_, s_.h.data(), req);
    ops::add_scaled(s_.x.data(), s_.h.data(), cfg_.mup.residual, T * D);
    ops::rms_norm(s_.x.data(), w.ffn_norm.f32(), s_.xn.data(), T, D, d.rms_eps);
    gated_mlp(ctx, d, w, s_.xn.data(), T, s_, s_.h.data());
    ops::add_scaled(s_.x.data(), s_.h.data(), cfg_.mup.residual, T * D);
    if (req.tap && l + 1 < d.n_layers) req.tap(hidden_state_name(l + 1), s_.x.data(), T, D);
  }
  ops::rms_norm(s_.x.data(), w_.final_norm.f32(), s_.xn.data(), T, D, d.rms_eps);
  if (req.tap) req.tap(hidden_state_name(d.n_layers), s_.xn.data(), T, D);
  cache.commit(T);
  lm_logits(ctx, d, w_, req, s_.xn, logits);
  if (cfg_.mup.logits_div != 1.0f)
    for (float& v : logits.vec()) v /= cfg_.mup.logits_div;
}

std::unique_ptr<CausalLM> make_llama(std::unique_ptr<ModelSource> src) {
  LlamaConfig cfg = src->is_gguf() ? llama_config_from_gguf(src->gguf(), "llama") : llama_config_from_hf(src->hf());
  auto table = llama_layer_table(cfg.dec);
  return std::make_unique<LlamaModel>(std::move(src), std::move(cfg), table, "llama");
}

}  // namespace edgevl

namespace edgevl {

DecoderLayout llama_layout(const HfConfig& hf) {
  LlamaConfig cfg = llama_config_from_hf(hf);
  return {cfg.dec, "llama", llama_model_table(cfg.dec), llama_layer_table(cfg.dec), {}};
}

}  // namespace edgevl
