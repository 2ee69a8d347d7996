// A causal language model: the interface every family implements, and the loader that picks
// the family from a file's architecture (models/registry.cpp).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "core/error.h"
#include "models/source.h"
#include "nn/kv_cache.h"
#include "tensor/context.h"
#include "tensor/tensor.h"

namespace edgevl {

struct ModelInfo {
  std::string family;        // "llama", "gemma3", "granite"
  std::string architecture;  // as the file names it (HF model_type or GGUF general.architecture)
  int64_t vocab_size = 0, hidden = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, ffn = 0;
  int64_t max_positions = 0;   // the model's trained context
  int32_t bos_id = -1, eos_id = -1;
  int64_t n_params = 0;        // from the loaded tensors
};

// A named intermediate activation, rows × cols float32 (e.g. "hidden_states.03").
using ActivationTap = std::function<void(std::string_view name, const float* data, int64_t rows, int64_t cols)>;

struct ForwardRequest {
  std::span<const int32_t> tokens;  // T new tokens of one sequence, at positions cache.size() ...
  bool all_logits = false;          // logits for every token, else only for the last
  ActivationTap tap;                // optional: receives hidden_states.NN as in HF's output_hidden_states
  // Optional, one entry per position of the whole sequence (cache + these tokens): 0 = padding,
  // never attended to (HF attention_mask). Positions still count for RoPE, as in HF.
  std::span<const uint8_t> key_mask;
  // Optional multimodal input: rows of `hidden` floats (projected image/audio soft tokens) that
  // replace the token embeddings at these indices into `tokens`, in order. The tokens there are
  // the family's placeholder ids.
  std::span<const int32_t> embed_positions;
  const float* embeds = nullptr;
};

// The special ids a multimodal family's prompts use: `<boi>` + n × `<image>` + `<eoi>` for an
// image of n soft tokens, likewise for audio. -1 where the model has none.
struct MediaTokens {
  int32_t image = -1, begin_image = -1, end_image = -1;
  int32_t audio = -1, begin_audio = -1, end_audio = -1;
};

class CausalLM {
 public:
  virtual ~CausalLM() = default;
  const ModelInfo& info() const { return info_; }
  const ModelSource& source() const { return *source_; }
  virtual nn::KvCache new_cache(int64_t max_positions) const = 0;
  // Appends the tokens' keys/values to `cache` and writes logits ([T, V] or [1, V]) to `logits`.
  virtual void forward(Context& ctx, nn::KvCache& cache, const ForwardRequest& req, Tensor& logits) = 0;

  // Multimodal families: the placeholder ids, and encoders from preprocessed media to soft
  // tokens [N, hidden] (returning N) for ForwardRequest::embeds. The defaults say the model
  // cannot see or hear.
  virtual bool has_vision() const { return false; }
  virtual bool has_audio() const { return false; }
  virtual MediaTokens media_tokens() const { return {}; }
  // pixels [n_patches, patch values] and positions [n_patches, 2] (x, y), as the family's
  // image processor lays them out.
  virtual int64_t encode_image(Context& ctx, const float* pixels, const int64_t* positions, int64_t n_patches,
                               Tensor& out, const ActivationTap& tap = {});
  // features [frames, bins] and mask [frames] (1 = real frame), as the audio feature extractor
  // writes them.
  virtual int64_t encode_audio(Context& ctx, const float* features, const uint8_t* mask, int64_t frames, int64_t bins,
                               Tensor& out, const ActivationTap& tap = {});
  // Reproduce HF transformers' eager-attention numerics where they differ from the model as
  // intended (Gemma 4's audio tower: eager inverts its window mask). Off by default; golden
  // comparisons (`edgevl dump`, the parity tests) turn it on, since the goldens used eager.
  virtual void match_hf_eager_attention(bool on) {}
  // Attaches the media towers of a llama.cpp mmproj GGUF (the file its converter writes next to a
  // text-only GGUF). Error when the family takes none or the file does not fit the model.
  // Mel bins per frame the audio tower takes (0 without one), for callers that make features.
  virtual int64_t audio_mel_bins() const { return 0; }
  virtual void attach_mmproj(const std::string& path) {
    fail(path, ": the ", info_.family, " family takes no mmproj file");
  }
  // The weights by Hugging Face name ("model.layers.0.self_attn.q_proj.weight"), whatever the
  // file format: what adapters (LoRA, WeightRef::delta) attach to.
  const std::map<std::string, WeightRef*>& weights_by_hf_name() const { return by_hf_name_; }

 protected:
  // Families call this once their loaders are done (later loaders add to the map).
  void register_weights(const std::map<std::string, WeightRef*>& m) { by_hf_name_.insert(m.begin(), m.end()); }

  ModelInfo info_;
  std::unique_ptr<ModelSource> source_;
  std::map<std::string, WeightRef*> by_hf_name_;
};

// Opens a model folder or GGUF file and builds the family its architecture names.
// Throws Error for an unknown architecture (listing the supported ones) or bad weights.
std::unique_ptr<CausalLM> load_model(const std::string& path);

}  // namespace edgevl
