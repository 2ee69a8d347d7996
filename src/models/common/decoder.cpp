#include "models/common/decoder.h"

#include <cmath>
#include <cstring>

#include "core/error.h"

namespace edgevl {

void self_attention(Context& ctx, const DecoderConfig& cfg, const DecoderLayerWeights& w, const nn::Rope& rope,
                    int64_t layer, nn::KvCache& cache, const float* xn, int64_t T, DecoderScratch& s, float* out,
                    const ForwardRequest& req) {
  const int64_t H = cfg.n_heads, Hkv = cfg.n_kv_heads, Dh = cfg.head_dim;
  const int64_t pos0 = cache.size();
  s.q.resize({T, H * Dh});
  s.k.resize({T, Hkv * Dh});
  s.v.resize({T, Hkv * Dh});
  s.attn.resize({T, H * Dh});
  ops::linear(ctx, w.q, xn, T, s.q.data(), w.q_bias.empty() ? nullptr : w.q_bias.f32());
  ops::linear(ctx, w.k, xn, T, s.k.data(), w.k_bias.empty() ? nullptr : w.k_bias.f32());
  ops::linear(ctx, w.v, xn, T, s.v.data(), w.v_bias.empty() ? nullptr : w.v_bias.f32());
  // Gemma 3: RMSNorm over each head's query and key before RoPE.
  if (!w.q_norm.empty()) ops::rms_norm(s.q.data(), w.q_norm.f32(), s.q.data(), T * H, Dh, cfg.rms_eps);
  if (!w.k_norm.empty()) ops::rms_norm(s.k.data(), w.k_norm.f32(), s.k.data(), T * Hkv, Dh, cfg.rms_eps);
  for (int64_t t = 0; t < T; ++t) {
    rope.apply(s.q.row(t), H, Dh, pos0 + t);
    rope.apply(s.k.row(t), Hkv, Dh, pos0 + t);
    std::memcpy(cache.k(layer, pos0 + t), s.k.row(t), Hkv * Dh * sizeof(float));
    std::memcpy(cache.v(layer, pos0 + t), s.v.row(t), Hkv * Dh * sizeof(float));
  }
  nn::AttentionShape a;
  a.n_heads = H;
  a.n_kv_heads = Hkv;
  a.head_dim = Dh;
  a.scale = cfg.attn_scale > 0 ? cfg.attn_scale : 1.0f / std::sqrt((float)Dh);
  a.softcap = cfg.attn_softcap;
  a.sliding_window = cfg.layer_sliding.empty() || !cfg.layer_sliding[layer] ? 0 : cfg.sliding_window;
  EV_CHECK(req.key_mask.empty() || (int64_t)req.key_mask.size() >= pos0 + T, "forward: key_mask has ",
           req.key_mask.size(), " entries for ", pos0 + T, " positions");
  nn::attention(ctx, a, s.q.data(), T, pos0, cache.k(layer), cache.v(layer), s.attn.data(),
                req.key_mask.empty() ? nullptr : req.key_mask.data());
  ops::linear(ctx, w.o, s.attn.data(), T, out, w.o_bias.empty() ? nullptr : w.o_bias.f32());
}

void gated_mlp(Context& ctx, ops::Activation act, int64_t ffn, const WeightRef& gate, const WeightRef& up,
               const WeightRef& down, const float* xn, int64_t T, Tensor& gate_buf, Tensor& up_buf, float* out,
               const float* gate_bias, const float* up_bias, const float* down_bias) {
  gate_buf.resize({T, ffn});
  up_buf.resize({T, ffn});
  ops::linear(ctx, gate, xn, T, gate_buf.data(), gate_bias);
  ops::linear(ctx, up, xn, T, up_buf.data(), up_bias);
  ops::gated_act(act, gate_buf.data(), up_buf.data(), gate_buf.data(), T * ffn);
  ops::linear(ctx, down, gate_buf.data(), T, out, down_bias);
}

void gated_mlp(Context& ctx, const DecoderConfig& cfg, const DecoderLayerWeights& w, const float* xn, int64_t T,
               DecoderScratch& s, float* out) {
  auto bias = [](const WeightRef& b) { return b.empty() ? nullptr : b.f32(); };
  gated_mlp(ctx, cfg.act, cfg.ffn, w.gate, w.up, w.down, xn, T, s.gate, s.up, out, bias(w.gate_bias),
            bias(w.up_bias), bias(w.down_bias));
}

void embed_tokens(const WeightRef& table, std::span<const int32_t> tokens, float* x) {
  const int64_t D = table.cols();
  for (size_t t = 0; t < tokens.size(); ++t) {
    EV_CHECK(tokens[t] >= 0 && tokens[t] < table.rows(), "token id ", tokens[t], " is outside the vocabulary (",
             table.rows(), " entries)");
    ops::embedding_row(table, tokens[t], x + t * D);
  }
}

void lm_logits(Context& ctx, const DecoderConfig& cfg, const DecoderWeights& w, const ForwardRequest& req,
               const Tensor& x, Tensor& logits) {
  const int64_t T = (int64_t)req.tokens.size();
  const int64_t rows = req.all_logits ? T : 1;
  const float* first = x.row(T - rows);
  logits.resize({rows, cfg.vocab});
  ops::linear(ctx, w.lm_head, first, rows, logits.data());
}

std::string hidden_state_name(int64_t i) { return str_cat("hidden_states.", i < 10 ? "0" : "", i); }

int64_t count_parameters(const DecoderWeights& w) {
  int64_t n = 0;
  auto add = [&](const WeightRef& r) {
    if (!r.empty()) n += r.rows() * r.cols();
  };
  add(w.embed);
  add(w.final_norm);
  if (w.lm_head.data != w.embed.data) add(w.lm_head);
  for (const auto& l : w.layers)
    for (const WeightRef* r : {&l.attn_norm, &l.q, &l.k, &l.v, &l.o, &l.q_bias, &l.k_bias, &l.v_bias, &l.o_bias,
                               &l.q_norm, &l.k_norm, &l.post_attn_norm, &l.ffn_norm, &l.gate, &l.up, &l.down, &l.gate_bias,
                               &l.up_bias, &l.down_bias, &l.post_ffn_norm})
      add(*r);
  return n;
}

ModelInfo decoder_model_info(const DecoderConfig& d, const DecoderWeights& w, const std::string& family,
                             const std::string& architecture) {
  ModelInfo i;
  i.family = family;
  i.architecture = architecture;
  i.vocab_size = d.vocab;
  i.hidden = d.hidden;
  i.n_layers = d.n_layers;
  i.n_heads = d.n_heads;
  i.n_kv_heads = d.n_kv_heads;
  i.head_dim = d.head_dim;
  i.ffn = d.ffn;
  i.max_positions = d.max_positions;
  i.bos_id = d.bos_id;
  i.eos_id = d.eos_id;
  i.n_params = count_parameters(w);
  return i;
}

nn::KvCache new_decoder_cache(const DecoderConfig& d, int64_t max_positions) {
  return nn::KvCache(d.n_layers, d.n_kv_heads * d.head_dim, max_positions);
}

namespace {
int32_t first_token_id(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return -1;
  if (it->is_array()) return it->empty() || !(*it)[0].is_number_integer() ? -1 : (*it)[0].get<int32_t>();
  return it->is_number_integer() ? it->get<int32_t>() : -1;
}
}  // namespace

DecoderConfig decoder_config_from_hf(const HfConfig& hf, const HfDecoderDefaults& defaults) {
  DecoderConfig d;
  d.vocab = hf.get_int("vocab_size", 0);
  d.hidden = hf.get_int("hidden_size", 0);
  d.n_layers = hf.get_int("num_hidden_layers", 0);
  d.n_heads = hf.get_int("num_attention_heads", 0);
  d.n_kv_heads = hf.get_int("num_key_value_heads", d.n_heads);
  EV_CHECK(d.vocab > 0 && d.hidden > 0 && d.n_layers > 0 && d.n_heads > 0 && d.n_kv_heads > 0 &&
               d.n_heads % d.n_kv_heads == 0,
           hf.path(), ": invalid sizes (vocab_size, hidden_size, num_hidden_layers, num_attention_heads, "
                      "num_key_value_heads)");
  d.head_dim = hf.get_int("head_dim", defaults.head_dim > 0 ? defaults.head_dim : d.hidden / d.n_heads);
  d.ffn = hf.get_int("intermediate_size", 0);
  EV_CHECK(d.head_dim > 0 && d.ffn > 0, hf.path(), ": invalid head_dim or intermediate_size");
  d.rms_eps = (float)hf.get_float("rms_norm_eps", 1e-6);
  // Gemma configs name the MLP activation hidden_activation; others hidden_act.
  d.act = ops::activation_from_name(
      hf.get_string("hidden_activation", hf.get_string("hidden_act", defaults.act)).c_str());
  d.tie_embeddings = hf.get_bool("tie_word_embeddings", defaults.tie_embeddings);
  d.attention_bias = hf.get_bool("attention_bias", false);
  d.mlp_bias = hf.get_bool("mlp_bias", false);
  d.max_positions = hf.get_int("max_position_embeddings", defaults.max_positions);
  d.bos_id = first_token_id(hf.json(), "bos_token_id");
  d.eos_id = first_token_id(hf.json(), "eos_token_id");
  return d;
}

DecoderConfig decoder_config_from_gguf(const gguf::File& g, const std::string& arch) {
  DecoderConfig d;
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
  d.bos_id = (int32_t)g.get_int("tokenizer.ggml.bos_token_id").value_or(-1);
  d.eos_id = (int32_t)g.get_int("tokenizer.ggml.eos_token_id").value_or(-1);
  d.tie_embeddings = g.find_tensor("output.weight") == nullptr;
  d.attention_bias = g.find_tensor("blk.0.attn_q.bias") != nullptr;
  d.mlp_bias = g.find_tensor("blk.0.ffn_up.bias") != nullptr;
  return d;
}

namespace {
void read_rope_fields(const nlohmann::json& p, nn::RopeConfig& r) {
  auto num = [&](const char* k, double def) {
    auto it = p.find(k);
    return it != p.end() && it->is_number() ? it->get<double>() : def;
  };
  if (auto it = p.find("rope_type"); it != p.end() && it->is_string()) r.type = it->get<std::string>();
  else if (auto it2 = p.find("type"); it2 != p.end() && it2->is_string()) r.type = it2->get<std::string>();
  r.theta = num("rope_theta", r.theta);
  r.factor = num("factor", r.factor);
  r.partial_rotary_factor = num("partial_rotary_factor", r.partial_rotary_factor);
  r.low_freq_factor = num("low_freq_factor", r.low_freq_factor);
  r.high_freq_factor = num("high_freq_factor", r.high_freq_factor);
  r.original_max_position = num("original_max_position_embeddings", r.original_max_position);
}
}  // namespace

nn::RopeConfig rope_from_hf(const HfConfig& hf, const std::string& layer_type, double default_theta) {
  nn::RopeConfig r;
  r.theta = default_theta;
  const nlohmann::json& j = hf.json();
  // transformers v5: rope_parameters, either one set or one per layer type.
  if (auto it = j.find("rope_parameters"); it != j.end() && it->is_object()) {
    if (!layer_type.empty() && it->contains(layer_type) && (*it)[layer_type].is_object())
      read_rope_fields((*it)[layer_type], r);
    else if (it->contains("rope_theta") || it->contains("rope_type"))
      read_rope_fields(*it, r);
    return r;
  }
  // Older files: rope_theta + rope_scaling; Gemma 3's sliding layers use rope_local_base_freq
  // and no scaling.
  if (layer_type == "sliding_attention" && j.contains("rope_local_base_freq")) {
    r.theta = hf.get_float("rope_local_base_freq", default_theta);
    return r;
  }
  r.theta = hf.get_float("rope_theta", default_theta);
  if (auto it = j.find("rope_scaling"); it != j.end() && it->is_object()) read_rope_fields(*it, r);
  if (r.type == "default" || r.type.empty()) r.type = "default";
  return r;
}

nn::RopeConfig rope_from_gguf(const gguf::File& g, const std::string& arch) {
  nn::RopeConfig r;
  r.theta = g.get_float(arch + ".rope.freq_base").value_or(10000.0);
  r.rotary_dim = g.get_int(arch + ".rope.dimension_count").value_or(0);
  const std::string type = g.get_string(arch + ".rope.scaling.type").value_or("none");
  const double factor = g.get_float(arch + ".rope.scaling.factor").value_or(1.0);
  if (type == "linear" && factor != 1.0) {
    r.type = "linear";
    r.factor = factor;
  } else if (type == "yarn") {
    fail(g.path(), ": rope scaling 'yarn' is not supported yet");
  }
  return r;
}

}  // namespace edgevl
