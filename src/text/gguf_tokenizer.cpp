#include "text/gguf_tokenizer.h"

#include <cmath>

#include "core/error.h"

namespace edgevl::text {

namespace {

VocabKind kind_of(const std::string& model, const std::string& path) {
  if (model == "llama") return VocabKind::Spm;
  if (model == "gpt2") return VocabKind::ByteBpe;
  if (model == "gemma4") return VocabKind::MergeBpe;
  if (model == "none" || model == "no_vocab")
    fail("gguf tokenizer: ", path, ": the file has no vocabulary (tokenizer.ggml.model '", model, "')");
  fail("gguf tokenizer: ", path, ": unsupported tokenizer.ggml.model '", model,
       "' (supported: llama, gpt2, gemma4)");
}

Vocab read(const gguf::File& f) {
  const std::string& path = f.path();
  Vocab v;
  const auto model = f.get_string("tokenizer.ggml.model");
  EV_CHECK(model, "gguf tokenizer: ", path, ": missing key 'tokenizer.ggml.model'");
  v.kind = kind_of(*model, path);
  if (auto pre = f.get_string("tokenizer.ggml.pre")) v.pre = *pre;

  auto tokens = f.get_string_array("tokenizer.ggml.tokens");
  EV_CHECK(tokens, "gguf tokenizer: ", path, ": missing key 'tokenizer.ggml.tokens'");
  v.tokens = std::move(*tokens);
  const size_t n = v.tokens.size();

  if (auto scores = f.get_float_array("tokenizer.ggml.scores")) {
    EV_CHECK(scores->size() == n, "gguf tokenizer: ", path, ": tokenizer.ggml.scores has ", scores->size(),
             " entries for ", n, " tokens");
    v.scores.reserve(n);
    for (double s : *scores) v.scores.push_back(std::isfinite(s) ? (float)s : -1e30f);
  }
  if (auto types = f.get_int_array("tokenizer.ggml.token_type")) {
    EV_CHECK(types->size() == n, "gguf tokenizer: ", path, ": tokenizer.ggml.token_type has ", types->size(),
             " entries for ", n, " tokens");
    v.types.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      const int64_t t = (*types)[i];
      EV_CHECK(t >= 0 && t <= 6, "gguf tokenizer: ", path, ": token ", i, " has invalid token_type ", t);
      v.types.push_back((TokenType)t);
    }
  }
  if (auto merges = f.get_string_array("tokenizer.ggml.merges")) v.merges = std::move(*merges);

  auto id = [&](const char* key, int32_t* out) {
    if (auto x = f.get_int(key)) {
      EV_CHECK(*x >= -1 && *x <= INT32_MAX, "gguf tokenizer: ", path, ": ", key, " = ", *x, " is not a token id");
      *out = (int32_t)*x;
    }
  };
  id("tokenizer.ggml.bos_token_id", &v.bos);
  id("tokenizer.ggml.eos_token_id", &v.eos);
  id("tokenizer.ggml.unknown_token_id", &v.unk);
  id("tokenizer.ggml.padding_token_id", &v.pad);
  id("tokenizer.ggml.eot_token_id", &v.eot);
  id("tokenizer.ggml.eom_token_id", &v.eom);
  v.add_bos = f.get_bool("tokenizer.ggml.add_bos_token");
  v.add_eos = f.get_bool("tokenizer.ggml.add_eos_token");
  v.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix");
  return v;
}

}  // namespace

Vocab read_gguf_vocab(const gguf::File& file) { return read(file); }

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const gguf::File& file, std::vector<std::string>* warnings) {
  Vocab v = read(file);
  try {
    return make_vocab_tokenizer(std::move(v), warnings);
  } catch (const Error& e) {
    fail("gguf tokenizer: ", file.path(), ": ", e.what());
  }
}

}  // namespace edgevl::text
