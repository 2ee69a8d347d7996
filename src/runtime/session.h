// A session holds one conversation's state (the KV cache) over an engine's model, and runs
// prompt prefill and token-by-token decoding with streaming, sampling and stop conditions.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/model.h"
#include "runtime/sampler.h"
#include "text/tokenizer.h"
#include "train/lora.h"

namespace edgevl {

// The engine: a loaded model, its tokenizer (may be null: token ids in and out) and the
// compute context (threads, kernels). Owns the weights; sessions borrow it.
struct Engine {
  std::unique_ptr<Context> ctx;
  std::unique_ptr<CausalLM> model;
  std::unique_ptr<text::Tokenizer> tokenizer;
  std::unique_ptr<train::AttachedLora> lora;  // an adapter over the model's weights, or null
  double load_ms = 0;

  // Loads a model folder or GGUF; `threads` <= 0 uses every core.
  static Engine load(const std::string& path, int threads, const std::string& isa = "");
  const text::Tokenizer& require_tokenizer() const;
  // Applies a PEFT LoRA adapter folder to the model for everything that runs after.
  void attach_lora(const std::string& adapter_dir);  // Error if the model has none we can read
};

// The tokenizer stored with a model: GGUF vocabulary metadata, or nullptr when the format's
// tokenizer is not readable yet (HF tokenizer.json arrives with the tokenizer issue).
std::unique_ptr<text::Tokenizer> load_tokenizer(const ModelSource& src);
// The same for a path that need not hold weights (a .gguf file, or a folder with a tokenizer).
std::unique_ptr<text::Tokenizer> load_tokenizer_for(const std::string& path);

struct GenerateOptions {
  int32_t max_new_tokens = 256;
  SamplingOptions sampling;
  std::vector<std::string> stop_strings;  // generation ends before any of these appears
  bool stop_at_eog = true;                // stop on EOS / end-of-turn tokens
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // new tokens (stop strings excluded from text, not from tokens)
  std::string text;             // streamed text, stop string removed
  std::string stop_reason;      // "eos", "stop_string", "length", "cancelled" (on_text said stop)
  int32_t eog_token = -1;       // with "eos": the end-of-generation token sampled (not in tokens)
  double prefill_ms = 0, decode_ms = 0;
  int64_t prompt_tokens = 0;
};

// A prompt with multimodal soft tokens: the placeholder tokens at embed_positions take the rows
// of embeds (the model's hidden size each, in order) instead of their embeddings.
struct MediaPrompt {
  std::vector<int32_t> tokens;
  std::vector<int32_t> embed_positions;
  std::vector<float> embeds;
};

class Session {
 public:
  Session(Engine& engine, int64_t context_length);

  // Feeds tokens (prompt or continuation); returns logits of the last one.
  const Tensor& feed(const std::vector<int32_t>& tokens, const ActivationTap& tap = {});
  const Tensor& feed(const MediaPrompt& prompt, const ActivationTap& tap = {});
  // Generates after `prompt` (fed first). on_text receives streamed text (whole UTF-8 characters,
  // never part of a stop string); return false from it to stop early.
  GenerateResult generate(const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                          const std::function<bool(const std::string&)>& on_text = {});
  GenerateResult generate(const MediaPrompt& prompt, const GenerateOptions& opt,
                          const std::function<bool(const std::string&)>& on_text = {});
  int64_t position() const { return cache_.size(); }
  void reset() { cache_.clear(); history_.clear(); }
  // Forgets every position from n on (keeps the first n fed tokens).
  void rewind(int64_t n);
  const std::vector<int32_t>& history() const { return history_; }

 private:
  Engine& engine_;
  nn::KvCache cache_;
  Tensor logits_;
  std::vector<int32_t> history_;
};

}  // namespace edgevl
