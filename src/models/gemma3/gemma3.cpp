// Gemma 3 text decoder (HF modeling_gemma3.py: Gemma3TextModel / Gemma3ForCausalLM; llama.cpp
// arch "gemma3"). Differences from Llama, each visible below:
//  - embeddings scaled by sqrt(hidden_size);
//  - RMSNorm as x * (1 + w) (the loader adds the 1 for HF files; llama.cpp's converter did so
//    already for GGUF), with "sandwich" norms after attention and after the MLP;
//  - RMSNorm of each head's q and k before RoPE;
//  - attention scale query_pre_attn_scalar^-1/2;
//  - sliding-window layers and global layers (layer_types), each with its own RoPE
//    (rope_parameters["sliding_attention"] / ["full_attention"], the latter often linear-scaled);
//  - GeGLU MLP (gelu_pytorch_tanh); optional final logit soft-capping.
#include "models/gemma3/gemma3.h"

#include <cmath>

#include "core/error.h"
#include "models/common/decoder.h"
#include "models/layout.h"

namespace edgevl {

namespace {

struct Gemma3Config {
  DecoderConfig dec;
  float final_softcap = 0;
};

Gemma3Config config_from_hf(const HfConfig& hf) {
  Gemma3Config c;
  c.dec = decoder_config_from_hf(hf, {256, "gelu_pytorch_tanh", true, 131072});
  DecoderConfig& d = c.dec;
  d.attn_scale = (float)(1.0 / std::sqrt(hf.get_float("query_pre_attn_scalar", (double)d.head_dim)));
  d.sliding_window = hf.get_int("sliding_window", 4096);
  const auto& j = hf.json();
  if (auto it = j.find("layer_types"); it != j.end() && it->is_array()) {
    EV_CHECK((int64_t)it->size() == d.n_layers, hf.path(), ": layer_types has ", it->size(), " entries for ",
             d.n_layers, " layers");
    for (const auto& t : *it) {
      EV_CHECK(t.is_string(), hf.path(), ": layer_types entries must be strings");
      const std::string s = t.get<std::string>();
      EV_CHECK(s == "sliding_attention" || s == "full_attention", hf.path(), ": unknown layer type '", s, "'");
      d.layer_sliding.push_back(s == "sliding_attention");
    }
  } else {
    // Older configs: every sliding_window_pattern-th layer is global.
    const int64_t pattern = hf.get_int("sliding_window_pattern", hf.get_int("_sliding_window_pattern", 6));
    for (int64_t l = 0; l < d.n_layers; ++l) d.layer_sliding.push_back(pattern <= 0 || (l + 1) % pattern != 0);
  }
  d.rope_global = rope_from_hf(hf, "full_attention", 1000000.0);
  d.rope_local = rope_from_hf(hf, "sliding_attention", 10000.0);
  if (j.contains("final_logit_softcapping") && j["final_logit_softcapping"].is_number())
    c.final_softcap = (float)hf.get_float("final_logit_softcapping", 0.0);
  EV_CHECK(!hf.get_bool("use_bidirectional_attention", false), hf.path(),
           ": bidirectional Gemma 3 (embedding models) is not supported");
  d.attn_softcap = (float)hf.get_float("attn_logit_softcapping", 0.0);
  return c;
}

Gemma3Config config_from_gguf(const gguf::File& g) {
  const std::string a = "gemma3";
  Gemma3Config c;
  c.dec = decoder_config_from_gguf(g, a);
  DecoderConfig& d = c.dec;
  d.act = ops::Activation::GeluTanh;
  // llama.cpp does not store query_pre_attn_scalar; it scales by 1/sqrt(head_dim) unless told.
  d.attn_scale = (float)g.get_float(a + ".attention.scale").value_or(1.0 / std::sqrt((double)d.head_dim));
  d.sliding_window = g.get_int(a + ".attention.sliding_window").value_or(4096);
  // llama.cpp's converter writes no layer pattern and llama.cpp assumes every 6th layer global;
  // edgevl writes a per-layer bool array (or an int period).
  const gguf::Value* pat = g.find(a + ".attention.sliding_window_pattern");
  if (pat && pat->is_array()) {
    EV_CHECK((int64_t)pat->array.size() == d.n_layers, g.path(), ": sliding_window_pattern has ", pat->array.size(),
             " entries for ", d.n_layers, " layers");
    for (const auto& v : pat->array) d.layer_sliding.push_back(v.as_bool());
  } else {
    const int64_t period = pat ? pat->as_int() : 6;
    for (int64_t l = 0; l < d.n_layers; ++l) d.layer_sliding.push_back(period <= 0 || (l + 1) % period != 0);
  }
  d.rope_local = nn::RopeConfig{};
  d.rope_local.theta = g.get_float(a + ".rope.freq_base_swa").value_or(10000.0);
  c.final_softcap = (float)g.get_float(a + ".final_logit_softcapping").value_or(0.0);
  return c;
}

std::vector<WeightSpec<DecoderWeights>> model_table(const DecoderConfig& d) {
  const int64_t V = d.vocab, D = d.hidden;
  return {
      {&DecoderWeights::embed, "model.embed_tokens.weight", "token_embd.weight", {V, D}},
      {&DecoderWeights::final_norm, "model.norm.weight", "output_norm.weight", {D}, kVector | kNormPlusOneHf},
      {&DecoderWeights::lm_head, "lm_head.weight", "output.weight", {V, D}, kOptional},
  };
}

std::vector<WeightSpec<DecoderLayerWeights>> layer_table(const DecoderConfig& c) {
  const int64_t D = c.hidden, Q = c.n_heads * c.head_dim, KV = c.n_kv_heads * c.head_dim, F = c.ffn, Dh = c.head_dim;
  const uint32_t norm = kVector | kNormPlusOneHf;
  using L = DecoderLayerWeights;
  return {
      {&L::attn_norm, "model.layers.{L}.input_layernorm.weight", "blk.{L}.attn_norm.weight", {D}, norm},
      {&L::q, "model.layers.{L}.self_attn.q_proj.weight", "blk.{L}.attn_q.weight", {Q, D}},
      {&L::k, "model.layers.{L}.self_attn.k_proj.weight", "blk.{L}.attn_k.weight", {KV, D}},
      {&L::v, "model.layers.{L}.self_attn.v_proj.weight", "blk.{L}.attn_v.weight", {KV, D}},
      {&L::o, "model.layers.{L}.self_attn.o_proj.weight", "blk.{L}.attn_output.weight", {D, Q}},
      {&L::q_norm, "model.layers.{L}.self_attn.q_norm.weight", "blk.{L}.attn_q_norm.weight", {Dh}, norm},
      {&L::k_norm, "model.layers.{L}.self_attn.k_norm.weight", "blk.{L}.attn_k_norm.weight", {Dh}, norm},
      {&L::post_attn_norm, "model.layers.{L}.post_attention_layernorm.weight", "blk.{L}.post_attention_norm.weight",
       {D}, norm},
      {&L::ffn_norm, "model.layers.{L}.pre_feedforward_layernorm.weight", "blk.{L}.ffn_norm.weight", {D}, norm},
      {&L::gate, "model.layers.{L}.mlp.gate_proj.weight", "blk.{L}.ffn_gate.weight", {F, D}},
      {&L::up, "model.layers.{L}.mlp.up_proj.weight", "blk.{L}.ffn_up.weight", {F, D}},
      {&L::down, "model.layers.{L}.mlp.down_proj.weight", "blk.{L}.ffn_down.weight", {D, F}},
      {&L::post_ffn_norm, "model.layers.{L}.post_feedforward_layernorm.weight", "blk.{L}.post_ffw_norm.weight", {D},
       norm},
  };
}

class Gemma3Model : public CausalLM {
 public:
  Gemma3Model(std::unique_ptr<ModelSource> src, Gemma3Config cfg) : cfg_(std::move(cfg)), loader_(*src) {
    source_ = std::move(src);
    const DecoderConfig& d = cfg_.dec;
    const int64_t D = d.hidden;
    loader_.load_table(w_, model_table(d));
    if (w_.lm_head.empty() || d.tie_embeddings) w_.lm_head = loader_.tied_output(w_.embed);
    w_.layers.resize(d.n_layers);
    const auto table = layer_table(d);
    for (int64_t l = 0; l < d.n_layers; ++l) loader_.load_table(w_.layers[l], table, l);
    register_weights(loader_.by_hf_name());
    rope_global_ = nn::Rope(d.rope_global, d.head_dim);
    rope_local_ = nn::Rope(d.rope_local, d.head_dim);
    // Gemma3TextScaledWordEmbedding: embed_scale = hidden_size ** 0.5, a float32 buffer.
    embed_scale_ = (float)std::sqrt((double)D);

    info_ = decoder_model_info(d, w_, "gemma3", source_->architecture());
  }

  nn::KvCache new_cache(int64_t max_positions) const override {
    return new_decoder_cache(cfg_.dec, max_positions);
  }

  void forward(Context& ctx, nn::KvCache& cache, const ForwardRequest& req, Tensor& logits) override {
    const DecoderConfig& d = cfg_.dec;
    const int64_t T = (int64_t)req.tokens.size(), D = d.hidden;
    EV_CHECK(T > 0, "forward: no tokens");
    cache.reserve_more(T);
    s_.x.resize({T, D});
    s_.xn.resize({T, D});
    s_.h.resize({T, D});
    embed_tokens(w_.embed, req.tokens, s_.x.data());
    ops::scale(s_.x.data(), embed_scale_, T * D);
    if (req.tap) req.tap("hidden_states.00", s_.x.data(), T, D);
    for (int64_t l = 0; l < d.n_layers; ++l) {
      const DecoderLayerWeights& w = w_.layers[l];
      const nn::Rope& rope = d.layer_sliding[l] ? rope_local_ : rope_global_;
      ops::rms_norm(s_.x.data(), w.attn_norm.f32(), s_.xn.data(), T, D, d.rms_eps);
      self_attention(ctx, d, w, rope, l, cache, s_.xn.data(), T, s_, s_.h.data(), req);
      ops::rms_norm(s_.h.data(), w.post_attn_norm.f32(), s_.h.data(), T, D, d.rms_eps);
      ops::add(s_.x.data(), s_.h.data(), T * D);
      ops::rms_norm(s_.x.data(), w.ffn_norm.f32(), s_.xn.data(), T, D, d.rms_eps);
      gated_mlp(ctx, d, w, s_.xn.data(), T, s_, s_.h.data());
      ops::rms_norm(s_.h.data(), w.post_ffn_norm.f32(), s_.h.data(), T, D, d.rms_eps);
      ops::add(s_.x.data(), s_.h.data(), T * D);
      if (req.tap && l + 1 < d.n_layers) req.tap(hidden_state_name(l + 1), s_.x.data(), T, D);
    }
    ops::rms_norm(s_.x.data(), w_.final_norm.f32(), s_.xn.data(), T, D, d.rms_eps);
    if (req.tap) req.tap(hidden_state_name(d.n_layers), s_.xn.data(), T, D);
    cache.commit(T);
    lm_logits(ctx, d, w_, req, s_.xn, logits);
    if (cfg_.final_softcap > 0) ops::softcap(logits.data(), cfg_.final_softcap, logits.numel());
  }

 private:
  Gemma3Config cfg_;
  WeightLoader loader_;
  DecoderWeights w_;
  nn::Rope rope_global_, rope_local_;
  float embed_scale_ = 1.0f;
  DecoderScratch s_;
};

}  // namespace

DecoderLayout gemma3_layout(const HfConfig& hf) {
  Gemma3Config cfg = config_from_hf(hf);
  auto table = model_table(cfg.dec);
  if (cfg.dec.tie_embeddings) table.pop_back();  // no lm_head
  return {cfg.dec, "gemma3", table, layer_table(cfg.dec), {}};
}

std::unique_ptr<CausalLM> make_gemma3(std::unique_ptr<ModelSource> src) {
  Gemma3Config cfg = src->is_gguf() ? config_from_gguf(src->gguf()) : config_from_hf(src->hf());
  return std::make_unique<Gemma3Model>(std::move(src), std::move(cfg));
}

}  // namespace edgevl
