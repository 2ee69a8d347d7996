#include "runtime/session.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "text/gguf_tokenizer.h"
#include "text/hf_tokenizer.h"

namespace edgevl {

namespace {
double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

Engine Engine::load(const std::string& path, int threads, const std::string& isa) {
  auto t0 = std::chrono::steady_clock::now();
  Engine e;
  e.ctx = std::make_unique<Context>(threads > 0 ? threads : default_thread_count(), isa);
  e.model = load_model(path);
  e.tokenizer = load_tokenizer(e.model->source());
  if (e.tokenizer && e.tokenizer->vocab_size() > e.model->info().vocab_size)
    std::fprintf(stderr, "edgevl: warning: %s: the tokenizer has %d tokens but the model only %lld embeddings\n",
                 path.c_str(), e.tokenizer->vocab_size(), (long long)e.model->info().vocab_size);
  e.load_ms = ms_since(t0);
  return e;
}

void Engine::attach_lora(const std::string& adapter_dir) {
  lora.reset();
  lora = std::make_unique<train::AttachedLora>(*model, adapter_dir);
}

const text::Tokenizer& Engine::require_tokenizer() const {
  EV_CHECK(tokenizer, model->source().path(),
           ": no tokenizer (a GGUF vocabulary or tokenizer.json); pass token ids instead (--ids)");
  return *tokenizer;
}

std::unique_ptr<text::Tokenizer> load_tokenizer(const ModelSource& src) {
  if (src.is_gguf()) return src.gguf().find("tokenizer.ggml.model") ? text::load_gguf_tokenizer(src.gguf()) : nullptr;
  return load_tokenizer_for(src.path());
}

std::unique_ptr<text::Tokenizer> load_tokenizer_for(const std::string& path) {
  if (std::filesystem::path(path).extension() == ".gguf") {
    auto g = gguf::File::open(path);
    return g->find("tokenizer.ggml.model") ? text::load_gguf_tokenizer(*g) : nullptr;
  }
  if (std::filesystem::exists(std::filesystem::path(path) / "tokenizer.json")) return text::load_hf_tokenizer(path);
  return nullptr;
}

Session::Session(Engine& engine, int64_t context_length)
    : engine_(engine), cache_(engine.model->new_cache(context_length)) {}

const Tensor& Session::feed(const std::vector<int32_t>& tokens, const ActivationTap& tap) {
  ForwardRequest req;
  req.tokens = tokens;
  req.tap = tap;
  engine_.model->forward(*engine_.ctx, cache_, req, logits_);
  history_.insert(history_.end(), tokens.begin(), tokens.end());
  return logits_;
}

const Tensor& Session::feed(const MediaPrompt& prompt, const ActivationTap& tap) {
  const int64_t hidden = engine_.model->info().hidden;
  EV_CHECK((int64_t)prompt.embeds.size() == (int64_t)prompt.embed_positions.size() * hidden, "feed: ",
           prompt.embed_positions.size(), " soft-token positions but ", prompt.embeds.size(), " values (hidden size ",
           hidden, ")");
  ForwardRequest req;
  req.tokens = prompt.tokens;
  req.tap = tap;
  req.embed_positions = prompt.embed_positions;
  req.embeds = prompt.embeds.empty() ? nullptr : prompt.embeds.data();
  engine_.model->forward(*engine_.ctx, cache_, req, logits_);
  history_.insert(history_.end(), prompt.tokens.begin(), prompt.tokens.end());
  return logits_;
}

void Session::rewind(int64_t n) {
  EV_CHECK(n >= 0 && n <= (int64_t)history_.size(), "rewind: ", n, " is outside the ", history_.size(),
           " fed tokens");
  cache_.truncate(n);
  history_.resize(n);
}

namespace {
// Length of the longest suffix of `text` that is a proper prefix of some stop string: that much
// must be held back from streaming until the next token decides it.
size_t stop_prefix_holdback(const std::string& text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const auto& s : stops)
    for (size_t n = std::min(s.size() - 1, text.size()); n > hold; --n)
      if (text.compare(text.size() - n, n, s, 0, n) == 0) {
        hold = n;
        break;
      }
  return hold;
}
}  // namespace

GenerateResult Session::generate(const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                                 const std::function<bool(const std::string&)>& on_text) {
  return generate(MediaPrompt{prompt, {}, {}}, opt, on_text);
}

GenerateResult Session::generate(const MediaPrompt& prompt, const GenerateOptions& opt,
                                 const std::function<bool(const std::string&)>& on_text) {
  GenerateResult r;
  r.prompt_tokens = (int64_t)prompt.tokens.size();
  EV_CHECK(!prompt.tokens.empty(), "generate: empty prompt");
  auto t0 = std::chrono::steady_clock::now();
  feed(prompt);
  r.prefill_ms = ms_since(t0);
  Sampler sampler(opt.sampling);
  const text::Tokenizer* tok = engine_.tokenizer.get();
  text::Utf8StreamDecoder utf8;
  std::string text;     // all text produced
  size_t emitted = 0;   // how much of it was streamed
  r.stop_reason = "length";
  auto t1 = std::chrono::steady_clock::now();
  for (int32_t i = 0; i < opt.max_new_tokens; ++i) {
    const int32_t id = sampler.sample({logits_.row(logits_.dim(0) - 1), (size_t)logits_.dim(1)}, history_);
    const bool eog = tok ? tok->is_end_of_generation(id) : id == engine_.model->info().eos_id;
    if (opt.stop_at_eog && eog) {
      r.stop_reason = "eos";
      r.eog_token = id;
      break;
    }
    r.tokens.push_back(id);
    bool stop = false, cancelled = false;
    if (tok) {
      if (!tok->is_special(id)) text += utf8.feed(tok->token_piece(id));
      for (const auto& s : opt.stop_strings) {
        size_t at = text.find(s, emitted >= s.size() ? emitted - s.size() + 1 : 0);
        if (at != std::string::npos) {
          text.resize(at);
          stop = true;
        }
      }
      const size_t safe = stop ? text.size() : text.size() - stop_prefix_holdback(text, opt.stop_strings);
      if (safe > emitted && on_text && !on_text(text.substr(emitted, safe - emitted))) cancelled = true;
      emitted = std::max(emitted, safe);
    }
    if (stop || cancelled) {
      r.stop_reason = stop ? "stop_string" : "cancelled";
      break;
    }
    if (i + 1 < opt.max_new_tokens) feed({id});
    else history_.push_back(id);
  }
  if (tok && r.stop_reason != "stop_string" && r.stop_reason != "cancelled") {
    text += utf8.flush();
    if (text.size() > emitted && on_text) on_text(text.substr(emitted));
  }
  r.decode_ms = ms_since(t1);
  r.text = std::move(text);
  return r;
}

}  // namespace edgevl
