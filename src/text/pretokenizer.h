// Regex pre-splitting for byte-level BPE (GPT-2 family), on PCRE2 in UTF + UCP mode so \p{L},
// \p{N} and \s have their Unicode meaning, as in the Rust `regex`/Oniguruma patterns the
// Hugging Face tokenizers use. Invalid UTF-8 never matches (PCRE2_MATCH_INVALID_UTF), so stray
// bytes become pieces of their own and still reach the byte-level encoder.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace edgevl::text {

struct Span {
  uint32_t begin, size;
};

class RegexSplitter {
 public:
  // Patterns applied one after another: each splits every current piece into its matches and
  // the unmatched gaps between them (Hugging Face Split behaviour "Isolated"). Throws Error on a
  // pattern that does not compile.
  explicit RegexSplitter(const std::vector<std::string>& patterns);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // Appends the pieces of text (offsets into text), in order, covering it exactly.
  void split(std::string_view text, std::vector<Span>& pieces) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One pattern, compiled as RegexSplitter's are, reporting its matches rather than a split: for
// the Hugging Face Split pre-tokenizer behaviours and the Replace normalizer/decoder.
class RegexMatcher {
 public:
  explicit RegexMatcher(const std::string& pattern);  // throws Error when it does not compile
  ~RegexMatcher();
  RegexMatcher(const RegexMatcher&) = delete;
  RegexMatcher& operator=(const RegexMatcher&) = delete;

  // Appends the successive non-overlapping, non-empty matches in text (offsets into text).
  void find_all(std::string_view text, std::vector<Span>& matches) const;
  // Whether the pattern matches anywhere in text (an empty match counts). PCRE2's match and heap
  // limits bound the work on hostile patterns: hitting them is an Error, never a hang.
  bool search(std::string_view text) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The patterns of a `tokenizer.ggml.pre` name. Unknown names give the GPT-2 pattern and
// *known = false (the caller warns).
std::vector<std::string> pre_tokenizer_patterns(const std::string& pre, bool* known);

}  // namespace edgevl::text
