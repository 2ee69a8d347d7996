#include "models/llama/llama.h"

#include <cmath>

#include "core/error.h"
#include "models/layout.h"

namespace edgevl {

namespace {
int32_t first_token_id(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return -1;
  if (it->is_array()) return it->empty() ? -1 : (*it)[0].get<int32_t>();
  return it->is_number_integer() ? it->get<int32_t>() : -1;
}
}  // namespace

LlamaConfig llama_config_from_hf(const HfConfig& hf) {
  LlamaConfig c;
  DecoderConfig& d = c.dec;
  d.vocab = hf.get_int("vocab_size", 0);
  d.hidden = hf.get_int("hidden_size", 0);
  d.n_layers = hf.get_int("num_hidden_layers", 0);
  d.n_heads = hf.get_int("num_attention_heads", 0);
  d.n_kv_heads = hf.get_int("num_key_value_heads", d.n_heads);
  EV_CHECK(d.vocab > 0 && d.hidden > 0 && d.n_layers > 0 && d.n_heads > 0 && d.n_kv_heads > 0 &&
               d.n_heads % d.n_kv_heads == 0,
           hf.path(), ": invalid sizes (vocab_size, hidden_size, num_hidden_layers, num_attention_heads, "
                      "num_key_value_heads)");
  d.head_dim = hf.has("head_dim") && !hf.json()["head_dim"].is_null() ? hf.get_int("head_dim", 0)
                                                                      : d.hidden / d.n_heads;
  d.ffn = hf.get_int("intermediate_size", 0);
  d.rms_eps = (float)hf.get_float("rms_norm_eps", 1e-6);
  d.act = ops::activation_from_name(hf.get_string("hidden_act", "silu").c_str());
  d.tie_embeddings = hf.get_bool("tie_word_embeddings", false);
  d.attention_bias = hf.get_bool("attention_bias", false);
  d.mlp_bias = hf.get_bool("mlp_bias", false);
  d.max_positions = hf.get_int("max_position_embeddings", 4096);
  d.rope_global = rope_from_hf(hf, "", 10000.0);
  if (hf.has("partial_rotary_factor"))
    d.rope_global.rotary_dim = (int64_t)(d.head_dim * hf.get_float("partial_rotary_factor", 1.0));
  d.bos_id = first_token_id(hf.json(), "bos_token_id");
  d.eos_id = first_token_id(hf.json(), "eos_token_id");
  return c;
}

LlamaConfig llama_config_from_gguf(const gguf::File& g, const std::string& arch) {
  LlamaConfig c;
  DecoderConfig& d = c.dec;
  auto req = [&](const std::string& key) {
    auto v = g.get_int(arch + "." + key);
    EV_CHECK(v && *v > 0, g.path(), ": missing or invalid ", arch, ".", key);
    return *v;
  };
  d.hidden = req("embedding_length");
  d.n_layers = req("block_count");
  d.n_heads = req("attention.head_count");
  // Per-layer arrays (Granite hybrid) must agree for an attention-only model.
  if (const gguf::Value* kv = g.find(arch + ".attention.head_count_kv"); kv && kv->is_array()) {
    auto arr = g.get_int_array(arch + ".attention.head_count_kv");
    EV_CHECK(!arr->empty(), g.path(), ": empty ", arch, ".attention.head_count_kv");
    for (int64_t v : *arr)
      EV_CHECK(v == (*arr)[0] && v > 0, g.path(), ": per-layer KV head counts differ (Mamba layers are not supported yet)");
    d.n_kv_heads = (*arr)[0];
  } else {
    d.n_kv_heads = g.get_int(arch + ".attention.head_count_kv").value_or(d.n_heads);
  }
  EV_CHECK(d.n_kv_heads > 0 && d.n_heads % d.n_kv_heads == 0, g.path(), ": invalid KV head count");
  d.head_dim = g.get_int(arch + ".attention.key_length").value_or(d.hidden / d.n_heads);
  d.ffn = req("feed_forward_length");
  d.rms_eps = (float)g.get_float(arch + ".attention.layer_norm_rms_epsilon").value_or(1e-5);
  d.max_positions = g.get_int(arch + ".context_length").value_or(4096);
  if (auto v = g.get_int(arch + ".vocab_size")) d.vocab = *v;
  else if (auto toks = g.find("tokenizer.ggml.tokens"); toks && toks->is_array()) d.vocab = (int64_t)toks->array.size();
  EV_CHECK(d.vocab > 0, g.path(), ": cannot tell the vocabulary size");
  d.rope_global = rope_from_gguf(g, arch);
  // llama.cpp's converter permutes Llama's q/k rows so that RoPE pairs adjacent dimensions.
  d.rope_global.interleaved = true;
  d.bos_id = (int32_t)g.get_int("tokenizer.ggml.bos_token_id").value_or(-1);
  d.eos_id = (int32_t)g.get_int("tokenizer.ggml.eos_token_id").value_or(-1);
  d.tie_embeddings = g.find_tensor("output.weight") == nullptr;
  d.attention_bias = g.find_tensor("blk.0.attn_q.bias") != nullptr;
  d.mlp_bias = g.find_tensor("blk.0.ffn_up.bias") != nullptr;
  if (const TensorRef* f = g.find_tensor("rope_freqs.weight")) {
    EV_CHECK(f->dtype == DType::F32 && f->numel() == d.head_dim / 2, g.path(), ": bad rope_freqs.weight");
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
  if (w_.lm_head.empty()) w_.lm_head = w_.embed;
  w_.layers.resize(d.n_layers);
  for (int64_t l = 0; l < d.n_layers; ++l) loader_.load_table(w_.layers[l], layer_table, l);
  rope_ = nn::Rope(d.rope_global, d.head_dim);
  if (!cfg_.rope_freq_factors.empty()) rope_.divide_frequencies(cfg_.rope_freq_factors);

  info_.family = family;
  info_.architecture = source_->architecture();
  info_.vocab_size = d.vocab;
  info_.hidden = d.hidden;
  info_.n_layers = d.n_layers;
  info_.n_heads = d.n_heads;
  info_.n_kv_heads = d.n_kv_heads;
  info_.head_dim = d.head_dim;
  info_.ffn = d.ffn;
  info_.max_positions = d.max_positions;
  info_.bos_id = d.bos_id;
  info_.eos_id = d.eos_id;
  info_.n_params = count_parameters(w_);
}

nn::KvCache LlamaModel::new_cache(int64_t max_positions) const {
  return nn::KvCache(cfg_.dec.n_layers, cfg_.dec.n_kv_heads * cfg_.dec.head_dim, max_positions);
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
