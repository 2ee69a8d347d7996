// HF folder -> GGUF, as llama.cpp's convert_hf_to_gguf.py lays it out for the families here, so
// the file runs in llama.cpp and in edgevl alike.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string_view>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/quants.h"
#include "models/gemma4/gemma4_layout.h"
#include "models/layout.h"

namespace edgevl {

namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// llama.cpp's converter reorders Llama's q/k rows per head from HF's [first half | second half]
// to interleaved pairs, because its RoPE rotates adjacent dimensions: output row h*Dh + 2i + j
// is input row h*Dh + j*Dh/2 + i.
int64_t permuted_source_row(int64_t r, int64_t head_dim) {
  const int64_t h = r / head_dim, within = r % head_dim;
  const int64_t i = within / 2, j = within % 2;
  return h * head_dim + j * (head_dim / 2) + i;
}

}  // namespace

void convert_hf_to_gguf(const std::string& hf_dir, const std::string& out, DType dtype, int threads) {
  namespace fs = std::filesystem;
  auto src = ModelSource::open(hf_dir);
  EV_CHECK(!src->is_gguf(), hf_dir, ": already a GGUF file");
  for (const char* f : {"tokenizer.json", "tokenizer.model"})
    EV_CHECK(!fs::exists(fs::path(hf_dir) / f), hf_dir, ": has ", f,
             "; converting a Hugging Face tokenizer to GGUF is not supported yet (the tokenizer issue adds it)");
  // Gemma 4's decoder is not Llama-like (per-layer shapes, experts): its own writer converts it.
  const std::string type = src->hf().get_string("model_type", "");
  if (type == "gemma4_text" || type == "gemma4") return convert_gemma4_text_to_gguf(hf_dir, out, dtype, threads);
  const DecoderLayout L = decoder_layout_from_hf(src->hf());
  const bool permute_qk = L.gguf_arch == "llama" || L.gguf_arch == "granite";
  gguf::Writer w;
  write_gguf_metadata(w, L);
  w.set_u32("general.file_type", gguf::llama_file_type(dtype));
  w.set_u32("general.quantization_version", 2);
  write_synthetic_vocab(w, L.dec.vocab);

  WeightLoader loader(*src);
  ThreadPool pool(threads > 0 ? threads : default_thread_count());
  auto emit = [&](const char* hf, const char* gg, const std::vector<int64_t>& shape, uint32_t flags, int64_t off,
                  int64_t layer) {
    if (!gg) return;
    const WeightRef r = loader.load(hf, gg, shape, flags, layer, off);
    if (r.empty()) return;  // optional and absent
    const std::string name = expand_layer_name(gg, layer);
    const bool permute = permute_qk && (ends_with(name, "attn_q.weight") || ends_with(name, "attn_k.weight") ||
                                        ends_with(name, "attn_q.bias") || ends_with(name, "attn_k.bias"));
    const int64_t cols = r.cols(), rows = r.rows();
    const DType to = r.shape.size() == 1 ? DType::F32 : type_for_row(dtype, cols);
    const size_t out_row = row_bytes(to, cols);
    std::vector<uint8_t> bytes(out_row * rows);
    if (r.shape.size() == 1 && permute) {
      const float* v = r.f32();
      std::vector<float> p(cols);
      for (int64_t i = 0; i < cols; ++i) p[i] = v[permuted_source_row(i, L.dec.head_dim)];
      std::memcpy(bytes.data(), p.data(), bytes.size());
    } else {
      const auto* base = static_cast<const uint8_t*>(r.data);
      pool.parallel_for(rows, 16, [&](int64_t b, int64_t e) {
        std::vector<float> row(cols);
        for (int64_t i = b; i < e; ++i) {
          const int64_t from = permute ? permuted_source_row(i, L.dec.head_dim) : i;
          dequantize_row(r.dtype, base + from * r.row_bytes, row.data(), cols);
          quantize_row(to, row.data(), bytes.data() + i * out_row, cols);
        }
      });
    }
    w.add_tensor(name, to, r.shape, std::move(bytes));
  };
  auto t0 = std::chrono::steady_clock::now();
  for (const auto& s : L.model_table) emit(s.hf, s.gguf, s.shape, s.flags, s.hf_row_offset, -1);
  for (int64_t l = 0; l < L.dec.n_layers; ++l) {
    for (const auto& s : L.layer_table) emit(s.hf, s.gguf, s.shape, s.flags, s.hf_row_offset, l);
    std::fprintf(stderr, "\rconverted layer %lld/%lld", (long long)l + 1, (long long)L.dec.n_layers);
  }
  std::fprintf(stderr, "\nconverted in %.1f s; writing %s\n",
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), out.c_str());
  w.write(out);
}

}  // namespace edgevl
