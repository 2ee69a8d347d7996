// Next-token selection from raw logits: repetition penalty, temperature, top-k, top-p, min-p,
// seeded sampling; temperature <= 0 is greedy (argmax). Suppressed ids are never chosen.
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace edgevl {

struct SamplingOptions {
  float temperature = 0.8f;
  int32_t top_k = 40;           // 0 = off
  float top_p = 0.95f;          // 1 = off
  float min_p = 0.05f;          // 0 = off
  float repeat_penalty = 1.0f;  // 1 = off; as llama.cpp / HF: logit / p if > 0 else logit * p
  int32_t repeat_last_n = 64;   // how many recent tokens the penalty looks at
  uint64_t seed = 0xED6E;
  std::vector<int32_t> suppress;  // ids never sampled (e.g. placeholder tokens)
};

class Sampler {
 public:
  explicit Sampler(SamplingOptions opt);
  // `history` is the sequence so far (prompt + generated), for the repetition penalty.
  int32_t sample(std::span<const float> logits, std::span<const int32_t> history);
  const SamplingOptions& options() const { return opt_; }

 private:
  SamplingOptions opt_;
  std::mt19937_64 rng_;
  std::vector<float> work_;
  std::vector<int32_t> ids_;
};

// argmax over logits, skipping `suppress`; lowest id wins ties (as torch.argmax).
int32_t argmax(std::span<const float> logits, std::span<const int32_t> suppress = {});

}  // namespace edgevl
