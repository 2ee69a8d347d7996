// libFuzzer target for the tokenizer.json tokenizer (text/hf_tokenizer.h).
// First byte even: the rest is a tokenizer.json; loading must give a tokenizer or an
// edgevl::Error, nothing else; a loaded one then encodes a fixed text and decodes its ids.
// First byte odd: the rest is text for one of two built-in tokenizers (byte-level BPE with a
// regex Split and NFC; Metaspace + byte fallback with lstrip/rstrip/single_word added tokens);
// invariants: ids in range, the byte-level pieces reproduce the NFC-stable input, decode() is
// valid UTF-8, arbitrary id sequences decode or raise Error.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/hf_tokenizer.h"
#include "text/tokenizer.h"

using namespace edgevl;
using namespace edgevl::text;
using json = nlohmann::json;

namespace {

std::string byte_char(uint32_t b) {
  uint32_t next = 256;
  for (uint32_t x = 0; x < b; ++x)
    if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE))) ++next;
  const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
  std::string s;
  utf8::append_codepoint(s, printable ? b : next);
  return s;
}

json byte_level_json() {
  json vocab = json::object();
  for (uint32_t b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  const char* merges[][2] = {{"Ġ", "t"}, {"h", "e"}, {"Ġt", "he"}, {"i", "n"}, {"Ġ", "Ġ"}, {"1", "2"}};
  json m = json::array();
  for (auto& p : merges) {
    vocab[std::string(p[0]) + p[1]] = vocab.size();
    m.push_back({p[0], p[1]});
  }
  const std::string regex =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  return {{"added_tokens",
           {{{"id", 300}, {"content", "<|end|>"}, {"special", true}, {"normalized", false}},
            {{"id", 301}, {"content", "<think>"}, {"special", false}, {"normalized", false}}}},
          {"normalizer", {{"type", "NFC"}}},
          {"pre_tokenizer",
           {{"type", "Sequence"},
            {"pretokenizers",
             {{{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}},
              {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
          {"post_processor", {{"type", "ByteLevel"}}},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", m}}}};
}

json metaspace_json() {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    vocab[name] = vocab.size();
  }
  for (const char* t : {"▁", "a", "b", "▁a", "ab", "▁ab", "é"}) vocab[t] = vocab.size();
  return {{"added_tokens",
           {{{"id", 1}, {"content", "<s>"}, {"special", true}},
            {{"id", 2}, {"content", "</s>"}, {"special", true}, {"lstrip", true}, {"rstrip", true}},
            {{"id", 400}, {"content", "ab"}, {"single_word", true}, {"normalized", true}}}},
          {"normalizer", {{"type", "Sequence"}, {"normalizers", {{{"type", "NFKC"}}, {{"type", "Lowercase"}}}}}},
          {"pre_tokenizer", {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "first"}, {"split", true}}},
          {"post_processor", {{"type", "TemplateProcessing"}, {"single", "<s> $A </s>"}, {"special_tokens", json::object()}}},
          {"decoder",
           {{"type", "Sequence"},
            {"decoders",
             {{{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "first"}},
              {{"type", "ByteFallback"}},
              {{"type", "Fuse"}}}}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"▁ a", "a b", "▁a b"}}, {"unk_token", "<unk>"},
                     {"byte_fallback", true}, {"fuse_unk", true}}}};
}

struct Tokenizers {
  std::unique_ptr<Tokenizer> byte_level = make_hf_tokenizer(byte_level_json().dump());
  std::unique_ptr<Tokenizer> metaspace = make_hf_tokenizer(metaspace_json().dump());
};

void check_decode(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip) {
  for (int32_t id : ids)
    if (id < 0 || id >= tok.vocab_size()) std::abort();
  if (!utf8::is_valid(tok.decode(ids, skip))) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Tokenizers toks;
  if (size == 0) return 0;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if ((data[0] & 1) == 0) {
    std::unique_ptr<Tokenizer> tok;
    try {
      tok = make_hf_tokenizer(rest);
    } catch (const Error&) {
      return 0;
    }
    try {
      check_decode(*tok, tok->encode("Hello <s> wörld  12 \xF0\x9F\x98\x80\xFF", true, true), false);
    } catch (const Error&) {
      // a pathological but loadable file may still refuse (e.g. a regex that hits PCRE2 limits)
    }
    return 0;
  }
  const bool meta = data[0] & 2, add_special = data[0] & 4, parse_special = data[0] & 8;
  const Tokenizer& tok = meta ? *toks.metaspace : *toks.byte_level;
  const std::vector<int32_t> ids = tok.encode(rest, add_special, parse_special);
  check_decode(tok, ids, data[0] & 16);
  if (!meta && !parse_special && utf8::is_valid(rest)) {
    // Byte-level BPE is lossless up to NFC; ASCII is NFC-stable.
    bool ascii = true;
    for (char c : rest) ascii = ascii && (uint8_t)c < 0x80;
    std::string pieces;
    for (int32_t id : ids) pieces += tok.token_piece(id);
    if (ascii && pieces != rest) std::abort();
  }
  std::vector<int32_t> raw;
  for (size_t i = 1; i + 1 < size; i += 2) raw.push_back((int32_t)(data[i] | (data[i + 1] << 8)) - 16);
  try {
    if (!utf8::is_valid(tok.decode(raw, data[0] & 16))) std::abort();
  } catch (const Error&) {
  }
  return 0;
}
