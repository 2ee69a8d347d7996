#include "models/gemma4/gemma4_config.h"

#include <string>

#include "core/error.h"
#include "models/common/decoder.h"

namespace edgevl {

namespace {

// HF (Gemma4TextAttention): the last num_kv_shared_layers layers attend to the keys/values of the
// last earlier layer of the same type; E2B's MLP is twice as wide in those layers.
void assign_kv_sources(Gemma4TextConfig& c, int64_t n_shared, const std::string& where) {
  const int64_t first_shared = c.n_layers - n_shared;
  EV_CHECK(n_shared >= 0 && first_shared >= 0, where, ": num_kv_shared_layers ", n_shared, " exceeds the ",
           c.n_layers, " layers");
  for (int64_t l = 0; l < c.n_layers; ++l) {
    Gemma4LayerShape& s = c.layers[l];
    s.kv_source = l;
    if (l < first_shared) continue;
    int64_t src = -1;
    for (int64_t j = first_shared - 1; j >= 0; --j)
      if (c.layers[j].sliding == s.sliding) {
        src = j;
        break;
      }
    EV_CHECK(src >= 0, where, ": KV-shared layer ", l, " has no earlier ", s.sliding ? "sliding" : "global",
             " layer to share keys and values with");
    const Gemma4LayerShape& from = c.layers[src];
    EV_CHECK(from.head_dim == s.head_dim && from.n_kv_heads == s.n_kv_heads, where, ": KV-shared layer ", l,
             " and its source layer ", src, " differ in head size or KV heads");
    s.kv_source = src;
  }
}

void check_shapes(const Gemma4TextConfig& c, const std::string& where) {
  EV_CHECK(c.vocab > 0 && c.hidden > 0 && c.n_layers > 0 && c.n_heads > 0, where,
           ": invalid sizes (vocab_size, hidden_size, num_hidden_layers, num_attention_heads)");
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const Gemma4LayerShape& s = c.layers[l];
    EV_CHECK(s.head_dim > 0 && s.head_dim % 2 == 0 && s.n_kv_heads > 0 && c.n_heads % s.n_kv_heads == 0 && s.ffn > 0,
             where, ": layer ", l, " has an invalid head size (", s.head_dim, "), KV head count (", s.n_kv_heads,
             ") or MLP width (", s.ffn, ")");
  }
  EV_CHECK(!c.moe() || (c.top_k > 0 && c.top_k <= c.n_experts && c.moe_ffn > 0), where,
           ": invalid mixture of experts (num_experts, top_k_experts, moe_intermediate_size)");
}

}  // namespace

Gemma4TextConfig gemma4_text_config_from_hf(const HfConfig& hf) {
  const std::string where = hf.path();
  Gemma4TextConfig c;
  // The shared Llama-like fields: sizes, eps, activation, special ids.
  const DecoderConfig d = decoder_config_from_hf(hf, {256, "gelu_pytorch_tanh", true, 131072});
  c.vocab = d.vocab;
  c.hidden = d.hidden;
  c.n_layers = d.n_layers;
  c.n_heads = d.n_heads;
  c.rms_eps = d.rms_eps;
  c.act = d.act;
  c.max_positions = d.max_positions;
  c.bos_id = d.bos_id;
  c.eos_id = d.eos_id;
  c.pad_id = (int32_t)hf.get_int("pad_token_id", 0);
  c.sliding_window = hf.get_int("sliding_window", 512);
  c.final_softcap = (float)hf.get_float("final_logit_softcapping", 0.0);
  c.ple_dim = hf.get_int("hidden_size_per_layer_input", 0);
  c.ple_vocab = c.ple_dim > 0 ? hf.get_int("vocab_size_per_layer_input", c.vocab) : 0;
  if (hf.get_bool("enable_moe_block", false)) {
    c.n_experts = hf.get_int("num_experts", 0);
    c.top_k = hf.get_int("top_k_experts", 0);
    c.moe_ffn = hf.get_int("moe_intermediate_size", 0);
  }
  const std::string bidi = hf.get_string("use_bidirectional_attention", "");
  EV_CHECK(bidi.empty() || bidi == "vision", where, ": use_bidirectional_attention '", bidi, "' is not supported");
  c.bidirectional_images = bidi == "vision";

  const std::vector<std::string> types = hf.get_string_array("layer_types");
  EV_CHECK((int64_t)types.size() == c.n_layers, where, ": layer_types has ", types.size(), " entries for ",
           c.n_layers, " layers");
  const int64_t ffn = d.ffn;
  const int64_t n_kv = d.n_kv_heads;
  const int64_t global_head_dim = hf.get_int("global_head_dim", 0);
  const int64_t global_kv = hf.get_int("num_global_key_value_heads", 0);
  const bool k_eq_v = hf.get_bool("attention_k_eq_v", false);
  const bool double_wide = hf.get_bool("use_double_wide_mlp", false);
  const int64_t n_shared = hf.get_int("num_kv_shared_layers", 0);
  const HfConfig per_layer = hf.sub("per_layer_config");
  c.layers.resize(c.n_layers);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    Gemma4LayerShape& s = c.layers[l];
    EV_CHECK(types[l] == "sliding_attention" || types[l] == "full_attention", where, ": unknown layer type '",
             types[l], "'");
    s.sliding = types[l] == "sliding_attention";
    s.head_dim = !s.sliding && global_head_dim > 0 ? global_head_dim : d.head_dim;
    s.v_from_k = k_eq_v && !s.sliding;
    s.n_kv_heads = s.v_from_k && global_kv > 0 ? global_kv : n_kv;
    // Newer configs spell the per-layer exceptions as per_layer_config {"<layer>": {...}}.
    const std::string key = std::to_string(l);
    s.head_dim = per_layer.get_int(key + ".head_dim", s.head_dim);
    s.n_kv_heads = per_layer.get_int(key + ".num_key_value_heads", s.n_kv_heads);
    s.ffn = ffn * (double_wide && l >= c.n_layers - n_shared && c.n_layers - n_shared > 0 ? 2 : 1);
  }
  assign_kv_sources(c, n_shared, where);
  for (const Gemma4LayerShape& s : c.layers) (s.sliding ? c.sliding_head_dim : c.global_head_dim) = s.head_dim;
  c.rope_global = rope_from_hf(hf, "full_attention", 1000000.0);
  c.rope_sliding = rope_from_hf(hf, "sliding_attention", 10000.0);
  check_shapes(c, where);
  return c;
}

Gemma4TextConfig gemma4_text_config_from_gguf(const gguf::File& g) {
  const std::string a = "gemma4", where = g.path();
  Gemma4TextConfig c;
  auto req = [&](const std::string& key) {
    auto v = g.get_int(a + "." + key);
    EV_CHECK(v && *v > 0, where, ": missing or invalid ", a, ".", key);
    return *v;
  };
  c.hidden = req("embedding_length");
  c.n_layers = req("block_count");
  c.n_heads = req("attention.head_count");
  c.rms_eps = (float)g.get_float(a + ".attention.layer_norm_rms_epsilon").value_or(1e-6);
  c.max_positions = g.get_int(a + ".context_length").value_or(131072);
  c.sliding_window = g.get_int(a + ".attention.sliding_window").value_or(512);
  c.final_softcap = (float)g.get_float(a + ".final_logit_softcapping").value_or(0.0);
  c.ple_dim = g.get_int(a + ".embedding_length_per_layer_input").value_or(0);
  c.bos_id = (int32_t)g.get_int("tokenizer.ggml.bos_token_id").value_or(-1);
  c.eos_id = (int32_t)g.get_int("tokenizer.ggml.eos_token_id").value_or(-1);
  c.pad_id = (int32_t)g.get_int("tokenizer.ggml.padding_token_id").value_or(0);
  const TensorRef* embd = g.find_tensor("token_embd.weight");
  EV_CHECK(embd && embd->shape.size() == 2, where, ": missing token_embd.weight");
  c.vocab = embd->shape[0];
  if (c.ple_dim > 0) {
    const TensorRef* ple = g.find_tensor("per_layer_token_embd.weight");
    EV_CHECK(ple && ple->shape.size() == 2, where, ": missing per_layer_token_embd.weight");
    c.ple_vocab = ple->shape[0];
  }
  // Mixture of experts (26B-A4B): the generic expert keys llama.cpp's converter writes
  // (conversion/base.py: num_experts, top_k_experts; gemma.py: moe_intermediate_size).
  c.n_experts = g.get_int(a + ".expert_count").value_or(0);
  const bool has_router = g.find_tensor("blk.0.ffn_gate_inp.weight") != nullptr;
  EV_CHECK(c.n_experts > 0 || !has_router, where, ": blk.0.ffn_gate_inp.weight is present but ", a,
           ".expert_count is missing");
  if (c.n_experts > 0) {
    c.top_k = req("expert_used_count");
    c.moe_ffn = req("expert_feed_forward_length");
  }

  // A key may hold one value for every layer or one per layer.
  auto per_layer = [&](const std::string& key, int64_t def) {
    std::vector<int64_t> v(c.n_layers, def);
    const gguf::Value* val = g.find(a + "." + key);
    if (!val) return v;
    if (val->is_array()) {
      auto arr = g.get_int_array(a + "." + key);
      EV_CHECK(arr && (int64_t)arr->size() == c.n_layers, where, ": ", a, ".", key, " has ",
               arr ? arr->size() : 0, " entries for ", c.n_layers, " layers");
      return *arr;
    }
    v.assign(c.n_layers, val->as_int());
    return v;
  };
  const std::vector<int64_t> ffn = per_layer("feed_forward_length", 0);
  const std::vector<int64_t> kv = per_layer("attention.head_count_kv", c.n_heads);
  const int64_t global_dim = req("attention.key_length");
  const int64_t sliding_dim = g.get_int(a + ".attention.key_length_swa").value_or(global_dim);
  const gguf::Value* pattern = g.find(a + ".attention.sliding_window_pattern");
  EV_CHECK(pattern && pattern->is_array() && (int64_t)pattern->array.size() == c.n_layers, where, ": ", a,
           ".attention.sliding_window_pattern must list every layer");
  c.layers.resize(c.n_layers);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    Gemma4LayerShape& s = c.layers[l];
    s.sliding = pattern->array[l].as_bool();
    s.head_dim = s.sliding ? sliding_dim : global_dim;
    s.n_kv_heads = kv[l];
    s.ffn = ffn[l];
    // llama.cpp's converter drops v_proj on k_eq_v layers: a global layer without attn_v reads V from K.
    const std::string blk = "blk." + std::to_string(l) + ".";
    s.v_from_k = !s.sliding && !g.find_tensor(blk + "attn_v.weight") && g.find_tensor(blk + "attn_k.weight");
    // llama.cpp also loads separate ffn_gate_exps / ffn_up_exps, which only its NVFP4 conversions
    // write (per-expert checkpoints); the forward reads HF's fused layout.
    EV_CHECK(!c.moe() || g.find_tensor(blk + "ffn_gate_up_exps.weight") || !g.find_tensor(blk + "ffn_gate_exps.weight"),
             where, ": ", blk, "ffn_gate_exps/ffn_up_exps are stored separately; only the fused ", blk,
             "ffn_gate_up_exps.weight that llama.cpp's converter writes is supported");
  }
  assign_kv_sources(c, g.get_int(a + ".attention.shared_kv_layers").value_or(0), where);
  c.global_head_dim = global_dim;
  c.sliding_head_dim = sliding_dim;
  // Global layers: llama.cpp rotates rope.dimension_count dims and emulates proportional RoPE
  // with a rope_freqs table that divides the non-rotating frequencies by 1e30.
  c.rope_global.theta = g.get_float(a + ".rope.freq_base").value_or(1000000.0);
  c.rope_global.rotary_dim = g.get_int(a + ".rope.dimension_count").value_or(global_dim);
  c.rope_sliding.theta = g.get_float(a + ".rope.freq_base_swa").value_or(10000.0);
  c.rope_sliding.rotary_dim = g.get_int(a + ".rope.dimension_count_swa").value_or(sliding_dim);
  check_shapes(c, where);
  return c;
}

}  // namespace edgevl
