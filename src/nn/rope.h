// Rotary position embeddings, as Hugging Face's ROPE_INIT_FUNCTIONS compute them
// (transformers/modeling_rope_utils.py): default, linear, llama3, proportional (Gemma 4's global
// layers: the first partial_rotary_factor of the frequency pairs rotate, with exponents over the
// whole head, the others have frequency 0 and pass through). The rotation pairs either
// dimension i with i + rotary_dim/2 (HF's rotate_half, "NeoX" order) or 2i with 2i+1 (the
// interleaved order llama.cpp's converter produces by permuting Llama's q/k rows in GGUF).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace edgevl::nn {

struct RopeConfig {
  std::string type = "default";  // default | linear | llama3
  double theta = 10000.0;
  double factor = 1.0;                       // linear, llama3
  double low_freq_factor = 1.0;              // llama3
  double high_freq_factor = 4.0;             // llama3
  double original_max_position = 8192;       // llama3
  double partial_rotary_factor = 1.0;        // proportional: the share of frequency pairs that rotate
  int64_t rotary_dim = 0;                    // 0 = the whole head
  bool interleaved = false;
};

class Rope {
 public:
  Rope() = default;
  Rope(const RopeConfig& cfg, int64_t head_dim);
  // Rotates x[n_heads][head_dim] for one token at position pos, in place.
  void apply(float* x, int64_t n_heads, int64_t head_dim, int64_t pos) const;
  const std::vector<float>& inv_freq() const { return inv_freq_; }
  // inv_freq[i] /= factors[i]: llama.cpp stores Llama 3's scaling as such a table (rope_freqs).
  void divide_frequencies(const std::vector<float>& factors);

 private:
  std::vector<float> inv_freq_;  // rotary_dim / 2 entries
  int64_t rotary_dim_ = 0;
  bool interleaved_ = false;
  float attention_scaling_ = 1.0f;
};

}  // namespace edgevl::nn
