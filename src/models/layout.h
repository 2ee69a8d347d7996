// A decoder family's layout for writing files: its configuration, weight tables (HF and GGUF
// names, shapes, flags) and the GGUF architecture with the keys llama.cpp reads for it.
// `edgevl init` uses it to write random-weight models at real shapes.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "io/gguf.h"
#include "models/common/decoder.h"

namespace edgevl {

struct DecoderLayout {
  DecoderConfig dec;
  std::string gguf_arch;
  std::vector<WeightSpec<DecoderWeights>> model_table;
  std::vector<WeightSpec<DecoderLayerWeights>> layer_table;
  std::vector<std::pair<std::string, float>> gguf_f32_keys;  // e.g. granite.embedding_scale
};

// The layout of the family named by the config's model_type; Error if unknown.
DecoderLayout decoder_layout_from_hf(const HfConfig& hf);

// `general.*` and `<arch>.*` keys llama.cpp reads for this layout.
void write_gguf_metadata(gguf::Writer& w, const DecoderLayout& L);
// A byte-fallback SentencePiece-style vocabulary of exactly `n` tokens (<unk> <s> </s>, the 256
// byte tokens, filler pieces), for models that come without a tokenizer (random or test weights).
void write_synthetic_vocab(gguf::Writer& w, int64_t n);

// Converts an HF folder of a supported family to GGUF with llama.cpp's names, keys and layouts
// (Llama/Granite q/k rows permuted for llama.cpp's RoPE, Gemma norms stored as 1 + w), weight
// matrices in `dtype` (F32/F16/BF16 or a block format; rows that do not fit fall back as
// llama-quantize does). A folder without a tokenizer gets a synthetic vocabulary.
void convert_hf_to_gguf(const std::string& hf_dir, const std::string& out, DType dtype, int threads);

// What `edgevl init` writes for one family, whatever its forward looks like: every tensor
// (expanded names in both formats), the GGUF metadata, and the config.json of HF output.
struct LayoutTensor {
  std::string hf, gguf;        // names; empty: not written in that format
  std::vector<int64_t> shape;  // GGUF shape; HF: the slice at hf_row_offset of a fused tensor
  uint32_t flags = kRequired;  // WeightFlags (kOptional: skipped, e.g. a tied lm_head)
  int64_t hf_row_offset = -1;
  std::vector<float> values;   // non-empty: fixed contents instead of random ones (rope_freqs)
  std::optional<float> center; // vectors: the value random ones scatter around (default: 1 for norm
                               // scales, 0 for biases and HF (1 + w) norms)
};

struct ModelLayout {
  int64_t vocab = 0;
  std::vector<LayoutTensor> tensors;
  std::function<void(gguf::Writer&)> gguf_metadata;  // general.* and <arch>.* keys (not the vocabulary)
  std::string hf_config;  // config.json of HF output; empty: a copy of the input
};

// Appends a weight table's entries for `layer` (-1: model-level) with {L} expanded.
template <typename Slots>
void append_layout(std::vector<LayoutTensor>& out, const std::vector<WeightSpec<Slots>>& table, int64_t layer = -1) {
  for (const auto& s : table)
    out.push_back({s.hf ? expand_layer_name(s.hf, layer) : "", s.gguf ? expand_layer_name(s.gguf, layer) : "",
                   s.shape, s.flags, s.hf_row_offset, {}, {}});
}
// A Llama-like family's init layout, from its DecoderLayout.
ModelLayout model_layout_from_decoder(const DecoderLayout& L);
// The init layout of the family named by the config's model_type (registry.cpp); Error if unknown
// or not supported.
ModelLayout model_layout_from_hf(const HfConfig& hf);

struct InitOptions {
  bool gguf = false;           // write one .gguf file instead of an HF folder
  DType dtype = DType::F32;    // weight matrices' type (GGUF: any supported type; HF: F32/F16/BF16)
  uint64_t seed = 0;
  int threads = 0;
};

// Writes a random-initialised model (weights ~ N(0, initializer_range), norms near their
// neutral value) for the configuration in `config_path`, to an HF folder or a GGUF file whose
// metadata llama.cpp reads (with a synthetic byte-fallback vocabulary of vocab_size tokens).
void init_random_model(const std::string& config_path, const std::string& out, const InitOptions& opt);

}  // namespace edgevl
