#include "models/gemma4/gemma4_layout.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/quants.h"
#include "models/gemma4/gemma4_tables.h"

namespace edgevl {

namespace {

// llama.cpp's `gemma4.*` keys, as conversion/gemma.py (Gemma4Model) writes them.
void write_gemma4_metadata(gguf::Writer& w, const Gemma4TextConfig& c, int64_t n_shared, double sliding_partial) {
  const std::string a = "gemma4";
  std::vector<int32_t> ffn, kv;
  std::vector<gguf::Value> pattern;
  for (const Gemma4LayerShape& s : c.layers) {
    ffn.push_back((int32_t)s.ffn);
    kv.push_back((int32_t)s.n_kv_heads);
    pattern.push_back(gguf::make_bool(s.sliding));
  }
  const int64_t global = c.global_head_dim > 0 ? c.global_head_dim : c.sliding_head_dim;
  const int64_t sliding = c.sliding_head_dim > 0 ? c.sliding_head_dim : c.global_head_dim;
  w.set_string("general.architecture", a);
  w.set_string("general.name", "edgevl-init");
  w.set_u32(a + ".block_count", (uint32_t)c.n_layers);
  w.set_u32(a + ".context_length", (uint32_t)c.max_positions);
  w.set_u32(a + ".embedding_length", (uint32_t)c.hidden);
  w.set_i32_array(a + ".feed_forward_length", ffn);
  w.set_u32(a + ".attention.head_count", (uint32_t)c.n_heads);
  if (std::all_of(kv.begin(), kv.end(), [&](int32_t k) { return k == kv[0]; }))
    w.set_u32(a + ".attention.head_count_kv", (uint32_t)kv[0]);
  else
    w.set_i32_array(a + ".attention.head_count_kv", kv);
  w.set_f32(a + ".rope.freq_base", (float)c.rope_global.theta);
  w.set_f32(a + ".rope.freq_base_swa", (float)c.rope_sliding.theta);
  w.set_f32(a + ".attention.layer_norm_rms_epsilon", c.rms_eps);
  w.set_u32(a + ".attention.key_length", (uint32_t)global);
  w.set_u32(a + ".attention.value_length", (uint32_t)global);
  if (c.final_softcap > 0) w.set_f32(a + ".final_logit_softcapping", c.final_softcap);
  w.set_u32(a + ".attention.sliding_window", (uint32_t)c.sliding_window);
  w.set_u32(a + ".attention.shared_kv_layers", (uint32_t)n_shared);
  w.set_u32(a + ".embedding_length_per_layer_input", (uint32_t)c.ple_dim);
  w.set(a + ".attention.sliding_window_pattern", gguf::make_array(gguf::ValueType::BOOL, std::move(pattern)));
  w.set_u32(a + ".attention.key_length_swa", (uint32_t)sliding);
  w.set_u32(a + ".attention.value_length_swa", (uint32_t)sliding);
  // Global layers rotate the whole head in llama.cpp, rope_freqs stopping the non-rotating pairs.
  w.set_u32(a + ".rope.dimension_count", (uint32_t)global);
  w.set_u32(a + ".rope.dimension_count_swa", (uint32_t)(sliding * sliding_partial));
  // conversion/base.py (num_experts, top_k_experts) and gemma.py (moe_intermediate_size).
  if (c.moe()) {
    w.set_u32(a + ".expert_count", (uint32_t)c.n_experts);
    w.set_u32(a + ".expert_used_count", (uint32_t)c.top_k);
    w.set_u32(a + ".expert_feed_forward_length", (uint32_t)c.moe_ffn);
  }
}

// The type llama.cpp's converter gives a tensor (conversion/base.py, prepare_tensors): 1-D
// tensors, norms, the router (FFN_GATE_INP) and names not ending in ".weight" (the ".scale"
// vectors) stay F32; the rest take the requested type, rows that do not fit falling back.
DType converter_type(const std::string& name, const std::vector<int64_t>& shape, DType dtype) {
  if (shape.size() <= 1 || name.ends_with("_norm.weight") || gguf::llama_cpp_keeps_f32(name) ||
      !name.ends_with(".weight"))
    return DType::F32;
  return type_for_row(dtype, shape.back());
}

}  // namespace

ModelLayout gemma4_init_layout(const HfConfig& top) {
  const bool nested = top.get_string("model_type", "") == "gemma4";
  const HfConfig hf = nested ? top.sub("text_config") : top;
  const Gemma4TextConfig c = gemma4_text_config_from_hf(hf);
  const bool tied = hf.get_bool("tie_word_embeddings", top.get_bool("tie_word_embeddings", true));
  ModelLayout m;
  m.vocab = c.vocab;

  // rope_freqs: 1 for the pairs proportional RoPE rotates, 1e30 (no rotation) for the rest.
  std::vector<float> rope_freqs;
  if (c.global_head_dim > 0) {
    const int64_t half = c.global_head_dim / 2;
    const int64_t rot = c.rope_global.type == "proportional"
                            ? (int64_t)(c.global_head_dim * c.rope_global.partial_rotary_factor / 2)
                            : half;
    rope_freqs.assign(half, 1e30f);
    std::fill(rope_freqs.begin(), rope_freqs.begin() + std::min(rot, half), 1.0f);
  }
  const size_t first = m.tensors.size();
  append_layout(m.tensors, gemma4_model_table(c));
  for (size_t i = first; i < m.tensors.size(); ++i) {
    LayoutTensor& t = m.tensors[i];
    if (t.gguf == "output.weight" && !tied) t.flags &= ~kOptional;
    if (t.gguf == "rope_freqs.weight") {
      if (rope_freqs.empty()) continue;
      t.flags &= ~kOptional;
      t.values = rope_freqs;
    }
  }
  // Attention has scale 1: the q/k norms carry the 1/sqrt(d). Their weights start at d^-1/4 each,
  // so that at random init softmax(q.k) sees scores like a standard transformer's q.k/sqrt(d), not
  // ones sqrt(d) times larger that make every softmax one-hot (and the model needlessly chaotic).
  int64_t n_shared = 0;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const size_t from = m.tensors.size();
    append_layout(m.tensors, gemma4_layer_table(c, l), l);
    for (size_t i = from; i < m.tensors.size(); ++i) {
      LayoutTensor& t = m.tensors[i];
      if (t.gguf.ends_with("attn_q_norm.weight") || t.gguf.ends_with("attn_k_norm.weight"))
        t.center = (float)std::pow((double)c.layers[l].head_dim, -0.25);
    }
    n_shared += c.shared(l);
  }
  const double sliding_partial = c.rope_sliding.partial_rotary_factor;
  m.gguf_metadata = [c, n_shared, sliding_partial](gguf::Writer& w) {
    EV_CHECK(c.ple_dim == 0 || c.ple_vocab == c.vocab, "init: llama.cpp's gemma4 needs vocab_size_per_layer_input (",
             c.ple_vocab, ") equal to vocab_size (", c.vocab, ")");
    for (const Gemma4LayerShape& s : c.layers)
      EV_CHECK(s.head_dim == (s.sliding ? c.sliding_head_dim : c.global_head_dim),
               "init: GGUF holds one head size per layer type; this configuration has several");
    // llama.cpp's KV cache reuses layer first_shared - 1 for global and first_shared - 2 for
    // sliding layers; other patterns load in edgevl but abort in llama.cpp.
    const int64_t first_shared = c.n_layers - n_shared;
    if (n_shared > 0 && (first_shared < 2 || c.layers[first_shared - 1].sliding || !c.layers[first_shared - 2].sliding))
      std::fprintf(stderr, "init: warning: llama.cpp cannot run this file (its gemma4 KV sharing needs layer %lld "
                   "global and layer %lld sliding)\n", (long long)first_shared - 1, (long long)first_shared - 2);
    write_gemma4_metadata(w, c, n_shared, sliding_partial);
  };
  if (nested) {
    // HF output of a multimodal config: the text decoder alone, as a Gemma4ForCausalLM folder.
    nlohmann::json j = hf.json();
    j["model_type"] = "gemma4_text";
    j["architectures"] = {"Gemma4ForCausalLM"};
    if (!j.contains("tie_word_embeddings")) j["tie_word_embeddings"] = tied;
    m.hf_config = j.dump(2) + "\n";
  }
  return m;
}

void convert_gemma4_text_to_gguf(const std::string& hf_dir, const std::string& out, DType dtype, int threads) {
  auto src = ModelSource::open(hf_dir);
  EV_CHECK(!src->is_gguf(), hf_dir, ": already a GGUF file");
  for (const char* f : {"tokenizer.json", "tokenizer.model"})
    EV_CHECK(!std::filesystem::exists(std::filesystem::path(hf_dir) / f), hf_dir, ": has ", f,
             "; converting a Hugging Face tokenizer to GGUF is not supported yet");
  const ModelLayout m = gemma4_init_layout(src->hf());
  gguf::Writer w;
  m.gguf_metadata(w);
  w.set_u32("general.file_type", gguf::llama_file_type(dtype));
  w.set_u32("general.quantization_version", 2);
  write_synthetic_vocab(w, m.vocab);

  WeightLoader loader(*src);
  if (src->hf().get_string("model_type", "") == "gemma4") loader.set_hf_prefix("model.", "model.language_model.");
  ThreadPool pool(threads > 0 ? threads : default_thread_count());
  for (const LayoutTensor& t : m.tensors) {
    if (t.gguf.empty()) continue;
    if (!t.values.empty()) {  // rope_freqs: a table of the config, not a checkpoint weight
      std::vector<uint8_t> bytes(t.values.size() * sizeof(float));
      std::memcpy(bytes.data(), t.values.data(), bytes.size());
      w.add_tensor(t.gguf, DType::F32, t.shape, std::move(bytes));
      continue;
    }
    // Names are expanded already; the loader checks the shape and maps a nested decoder's names.
    const WeightRef r = loader.load(t.hf.empty() ? nullptr : t.hf.c_str(), t.gguf.c_str(), t.shape, t.flags, -1,
                                    t.hf_row_offset);
    if (r.empty()) continue;  // optional and absent (a tied lm_head)
    const int64_t cols = r.cols(), rows = Tensor::count(r.shape) / cols;
    const DType to = converter_type(t.gguf, t.shape, dtype);
    const size_t out_row = row_bytes(to, cols);
    std::vector<uint8_t> bytes(out_row * rows);
    const auto* base = static_cast<const uint8_t*>(r.data);
    pool.parallel_for(rows, 16, [&](int64_t b, int64_t e) {
      std::vector<float> row(cols);
      for (int64_t i = b; i < e; ++i) {
        dequantize_row(r.dtype, base + i * r.row_bytes, row.data(), cols);
        quantize_row(to, row.data(), bytes.data() + i * out_row, cols);
      }
    });
    w.add_tensor(t.gguf, to, t.shape, std::move(bytes));
  }
  w.write(out);
}

}  // namespace edgevl
