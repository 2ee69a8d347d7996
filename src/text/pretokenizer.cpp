#include "text/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"

namespace edgevl::text {

namespace {

// The split patterns of the models' own tokenizer.json files (Split pre-tokenizers, and the
// ByteLevel pre-tokenizer's built-in GPT-2 pattern), keyed by the names llama.cpp's converter
// writes to `tokenizer.ggml.pre`.
constexpr const char* kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Llama 3: case-insensitive contractions, digits in runs of at most three.
constexpr const char* kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen2/Qwen3: as Llama 3 with single digits.
constexpr const char* kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen3.5: combining marks (\p{M}) stay with their letters and out of punctuation runs.
constexpr const char* kQwen35 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// StarCoder, SmolLM, Refact, Command-R, ...: Digits(individual_digits) then the GPT-2 pattern.
constexpr const char* kDigits = R"(\p{N})";

struct Named {
  const char* name;
  std::vector<std::string> patterns;
};

const std::vector<Named>& table() {
  static const std::vector<Named> t = {
      {"default", {kGpt2}},   {"gpt-2", {kGpt2}},        {"gpt2", {kGpt2}},
      {"phi-2", {kGpt2}},     {"mpt", {kGpt2}},          {"olmo", {kGpt2}},
      {"jais", {kGpt2}},      {"roberta-bpe", {kGpt2}},
      {"llama3", {kLlama3}},  {"llama-bpe", {kLlama3}},  {"llama-v3", {kLlama3}},
      {"smaug-bpe", {kLlama3}}, {"dbrx", {kLlama3}},
      {"qwen2", {kQwen2}},    {"deepseek-r1-qwen", {kQwen2}}, {"stablelm2", {kQwen2}},
      {"qwen35", {kQwen35}},
      {"starcoder", {kDigits, kGpt2}}, {"refact", {kDigits, kGpt2}}, {"smollm", {kDigits, kGpt2}},
      {"command-r", {kDigits, kGpt2}}, {"codeshell", {kDigits, kGpt2}}, {"exaone", {kDigits, kGpt2}},
  };
  return t;
}

}  // namespace

std::vector<std::string> pre_tokenizer_patterns(const std::string& pre, bool* known) {
  for (const Named& n : table()) {
    if (pre == n.name) {
      *known = true;
      return n.patterns;
    }
  }
  *known = false;
  return {kGpt2};
}

struct RegexSplitter::Impl {
  std::vector<pcre2_code*> codes;
  ~Impl() {
    for (pcre2_code* c : codes) pcre2_code_free(c);
  }
};

namespace {

pcre2_code* compile_pattern(const std::string& p) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    fail("tokenizer: pre-tokenizer pattern does not compile at offset ", err_off, ": ",
         reinterpret_cast<const char*>(msg));
  }
  // JIT is an optimisation only: without it pcre2_match interprets.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  return code;
}

}  // namespace

RegexSplitter::RegexSplitter(const std::vector<std::string>& patterns) : impl_(std::make_unique<Impl>()) {
  for (const std::string& p : patterns) impl_->codes.push_back(compile_pattern(p));
}

RegexSplitter::~RegexSplitter() = default;

namespace {

// Calls on_match(begin, end) for each non-empty match in subject[0, size), left to right.
template <typename OnMatch>
void for_each_match(pcre2_code* code, pcre2_match_data* md, const char* text, size_t size, OnMatch&& on_match) {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text);
  PCRE2_SIZE pos = 0;
  while (pos < size) {
    const int rc = pcre2_match(code, subject, size, pos, 0, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      fail("tokenizer: pre-tokenizer match failed: ", reinterpret_cast<const char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const PCRE2_SIZE mb = ov[0], me = ov[1];
    if (me == mb) {  // empty match: step over one byte (patterns here never match empty)
      pos = mb + 1;
      continue;
    }
    on_match(mb, me);
    pos = me;
  }
}

// Splits text[s.begin, s.begin + s.size) by one pattern into matches and gaps.
void split_one(pcre2_code* code, pcre2_match_data* md, std::string_view text, Span s, std::vector<Span>& out) {
  size_t last = 0;
  for_each_match(code, md, text.data() + s.begin, s.size, [&](size_t mb, size_t me) {
    if (mb > last) out.push_back({s.begin + (uint32_t)last, (uint32_t)(mb - last)});
    out.push_back({s.begin + (uint32_t)mb, (uint32_t)(me - mb)});
    last = me;
  });
  if (last < s.size) out.push_back({s.begin + (uint32_t)last, (uint32_t)(s.size - last)});
}

}  // namespace

void RegexSplitter::split(std::string_view text, std::vector<Span>& pieces) const {
  EV_CHECK(text.size() < UINT32_MAX, "tokenizer: text of ", text.size(), " bytes is too long");
  if (text.empty()) return;
  std::vector<Span> cur{{0, (uint32_t)text.size()}}, next;
  for (size_t k = 0; k < impl_->codes.size(); ++k) {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(impl_->codes[k], nullptr);
    EV_CHECK(md, "tokenizer: out of memory");
    try {
      next.clear();
      for (const Span& s : cur) split_one(impl_->codes[k], md, text, s, next);
    } catch (...) {
      pcre2_match_data_free(md);
      throw;
    }
    pcre2_match_data_free(md);
    cur.swap(next);
  }
  pieces.insert(pieces.end(), cur.begin(), cur.end());
}

struct RegexMatcher::Impl {
  pcre2_code* code = nullptr;
  ~Impl() { pcre2_code_free(code); }
};

RegexMatcher::RegexMatcher(const std::string& pattern) : impl_(std::make_unique<Impl>()) {
  impl_->code = compile_pattern(pattern);
}

RegexMatcher::~RegexMatcher() = default;

bool RegexMatcher::search(std::string_view text) const {
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(impl_->code, nullptr);
  EV_CHECK(md, "regex: out of memory");
  const int rc = pcre2_match(impl_->code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0, 0, md, nullptr);
  pcre2_match_data_free(md);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    fail("regex: match failed: ", reinterpret_cast<const char*>(msg));
  }
  return true;
}

void RegexMatcher::find_all(std::string_view text, std::vector<Span>& matches) const {
  EV_CHECK(text.size() < UINT32_MAX, "tokenizer: text of ", text.size(), " bytes is too long");
  if (text.empty()) return;
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(impl_->code, nullptr);
  EV_CHECK(md, "tokenizer: out of memory");
  try {
    for_each_match(impl_->code, md, text.data(), text.size(),
                   [&](size_t mb, size_t me) { matches.push_back({(uint32_t)mb, (uint32_t)(me - mb)}); });
  } catch (...) {
    pcre2_match_data_free(md);
    throw;
  }
  pcre2_match_data_free(md);
}

}  // namespace edgevl::text
