// GGUF metadata for a decoder layout, as llama.cpp's converter writes it for that architecture.
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "models/layout.h"

namespace edgevl {

// A byte-fallback SentencePiece-style vocabulary of exactly `n` tokens: <unk> <s> </s>, the 256
// byte tokens, then filler pieces. Random weights make any vocabulary equally meaningful; this
// one lets llama.cpp (and our tokenizer) load the file and round-trip any text through bytes.
void write_synthetic_vocab(gguf::Writer& w, int64_t n) {
  EV_CHECK(n >= 259, "init: vocab_size ", n, " is too small for a byte-fallback vocabulary (need 259)");
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<float> scores = {0, 0, 0};
  std::vector<int32_t> types = {2, 3, 3};
  char buf[16];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    tokens.push_back(buf);
    scores.push_back(0);
    types.push_back(6);
  }
  for (int64_t i = 259; i < n; ++i) {
    tokens.push_back("\xE2\x96\x81t" + std::to_string(i));
    scores.push_back(-(float)i);
    types.push_back(1);
  }
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string("tokenizer.ggml.pre", "default");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_f32_array("tokenizer.ggml.scores", scores);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  w.set_u32("tokenizer.ggml.unknown_token_id", 0);
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", 2);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
}

void write_gguf_metadata(gguf::Writer& w, const DecoderLayout& L) {
  const DecoderConfig& d = L.dec;
  const std::string a = L.gguf_arch;
  w.set_string("general.architecture", a);
  w.set_string("general.name", "edgevl-init");
  w.set_u32(a + ".context_length", (uint32_t)d.max_positions);
  w.set_u32(a + ".embedding_length", (uint32_t)d.hidden);
  w.set_u32(a + ".block_count", (uint32_t)d.n_layers);
  w.set_u32(a + ".feed_forward_length", (uint32_t)d.ffn);
  w.set_u32(a + ".attention.head_count", (uint32_t)d.n_heads);
  w.set_u32(a + ".attention.head_count_kv", (uint32_t)d.n_kv_heads);
  w.set_u32(a + ".attention.key_length", (uint32_t)d.head_dim);
  w.set_u32(a + ".attention.value_length", (uint32_t)d.head_dim);
  w.set_f32(a + ".attention.layer_norm_rms_epsilon", d.rms_eps);
  w.set_f32(a + ".rope.freq_base", (float)d.rope_global.theta);
  w.set_u32(a + ".rope.dimension_count", (uint32_t)(d.rope_global.rotary_dim > 0 ? d.rope_global.rotary_dim : d.head_dim));
  w.set_u32(a + ".vocab_size", (uint32_t)d.vocab);
  if (d.rope_global.type == "linear") {
    w.set_string(a + ".rope.scaling.type", "linear");
    w.set_f32(a + ".rope.scaling.factor", (float)d.rope_global.factor);
  }
  EV_CHECK(d.rope_global.type != "llama3", "init: GGUF output with llama3 rope scaling is not supported yet");
  if (d.sliding_window > 0 && !d.layer_sliding.empty()) {
    w.set_u32(a + ".attention.sliding_window", (uint32_t)d.sliding_window);
    // Per-layer pattern (llama.cpp's converter omits it for Gemma 3 and assumes every 6th layer
    // global; we write what the configuration says and read it back).
    std::vector<gguf::Value> pattern;
    for (bool sliding : d.layer_sliding) pattern.push_back(gguf::make_bool(sliding));
    w.set(a + ".attention.sliding_window_pattern", gguf::make_array(gguf::ValueType::BOOL, std::move(pattern)));
    w.set_f32(a + ".rope.freq_base_swa", (float)d.rope_local.theta);
  }
  if (d.attn_scale > 0 && std::fabs(d.attn_scale - 1.0f / std::sqrt((float)d.head_dim)) > 1e-7f &&
      a != "granite")  // granite's scale is in gguf_f32_keys
    w.set_f32(a + ".attention.scale", d.attn_scale);
  for (const auto& [k, v] : L.gguf_f32_keys) w.set_f32(k, v);
}

}  // namespace edgevl
