// The pipeline stages of a Hugging Face tokenizer.json, as the `tokenizers` library defines them
// (normalizers, pre_tokenizers, processors, decoders modules): each is built from its JSON object
// and throws edgevl::Error naming any component type or option it does not support. Internal to
// text/ (hf_tokenizer.cpp assembles them).
//
// No stage tracks offsets (edgevl needs ids, not alignments), so a normalizer rewrites a string
// in place and a pre-tokenizer rewrites a list of pieces.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "text/pretokenizer.h"

namespace edgevl::text::hf {

using json = nlohmann::json;

// ---- tokenizer.json, read with simdjson ----
// model.vocab and model.merges (the bulk of the file) are views of the parsed document's strings
// (alive as long as `storage`); everything else is kept as JSON. Throws Error on malformed JSON
// or a vocab/merges of the wrong shape.
struct TokenizerFile {
  struct Token {
    std::string_view text;
    int32_t id;
  };
  json rest;  // the document without model.vocab and model.merges
  bool has_vocab = false, has_merges = false;
  std::vector<Token> vocab;                                         // in file order
  std::vector<std::pair<std::string_view, std::string_view>> merges;  // by rank
  std::shared_ptr<const void> storage;                              // owns the strings above
};
TokenizerFile parse_tokenizer_json(std::string_view text);

// ---- JSON access with tokenizer.json-specific messages ----
// Member `key` of object `j` (of component `what`) as a string / bool / integer; `def` when absent
// or null; Error when present with the wrong type.
std::string get_string(const json& j, const char* key, const char* what, const std::string& def);
bool get_bool(const json& j, const char* key, const char* what, bool def);
int64_t get_int(const json& j, const char* key, const char* what, int64_t def);
// The "type" of a component object (Error when j is not an object or has no string type).
std::string component_type(const json& j, const char* what);

// ---- Unicode helpers (utf8proc) ----
namespace uni {
// Code point at s[i] and its byte length in *len; an invalid byte is returned as itself with
// *len = 1 (never a valid code point >= 0x80 of its own, so the predicates below say false).
uint32_t next_char(std::string_view s, size_t i, size_t* len);
bool is_whitespace(uint32_t cp);   // Rust char::is_whitespace (the White_Space property)
bool is_numeric(uint32_t cp);      // Rust char::is_numeric (categories Nd, Nl, No)
bool is_punctuation(uint32_t cp);  // ASCII punctuation or a P* category (tokenizers' rule)
bool is_word_char(uint32_t cp);    // letters, digits, marks, '_' (a word boundary's \w)
}  // namespace uni

// A literal string or a regex (tokenizer.json's {"String": ...} / {"Regex": ...}).
class Pattern {
 public:
  Pattern(const json& j, const char* what);
  // Appends the non-overlapping non-empty matches in text, left to right.
  void find_all(std::string_view text, std::vector<Span>& out) const;

 private:
  std::string literal_;
  std::unique_ptr<RegexMatcher> regex_;
};

// Replaces every match of `pattern` in s by `content`.
void replace_all(const Pattern& pattern, const std::string& content, std::string& s, std::vector<Span>& scratch);

// ---- normalizers ----
class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& s) const = 0;
};
// nullptr for a null normalizer.
std::unique_ptr<Normalizer> make_normalizer(const json& j);

// ---- pre-tokenizers ----
// The pieces of one text fragment: spans over `text`, in order.
struct Pieces {
  std::string text;
  std::vector<Span> spans;
};
class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Rewrites p (tmp is scratch). `first` says p.text starts at the beginning of the input (the
  // Metaspace "first" prepend scheme).
  virtual void pre_tokenize(Pieces& p, Pieces& tmp, bool first) const = 0;
};
// nullptr for a null pre-tokenizer.
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j);

// ---- post-processors ----
// What encode(add_special = true) puts around the sequence: the single-sequence template.
struct Template {
  std::vector<int32_t> before, after;
};
// `token_id` resolves a special token string (Error when unknown). An absent processor or one
// that adds nothing (ByteLevel) gives an empty template.
Template make_post_processor(const json& j, const std::function<int32_t(const std::string&)>& token_id);

// ---- decoders ----
struct DecodeMode {
  bool at_start = true;  // the first token is the first of the text (Metaspace drops its space)
  bool raw = false;      // keep partial UTF-8 bytes (token_piece) instead of U+FFFD
};
class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens, const DecodeMode& mode) const = 0;
};
// nullptr for a null decoder.
std::unique_ptr<Decoder> make_decoder(const json& j);

}  // namespace edgevl::text::hf
