// The text layer's tokenizer interface. Two families implement it:
//  - the GGUF vocabulary tokenizer (gguf_tokenizer.h: SentencePiece-style BPE by scores, byte-level
//    BPE with merges, merges-BPE over U+2581-escaped text), built from `tokenizer.ggml.*` metadata;
//  - the Hugging Face tokenizer.json pipeline (normalizers, pre-tokenizers, added tokens, decoders),
//    which a later issue adds behind the same interface.
// Implementations are immutable after construction: every method is const and thread-safe.
// Ids outside [0, vocab_size()) make decode/token_piece/token_text throw edgevl::Error; the
// is_* predicates answer false for them.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace edgevl::text {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // add_special: add BOS/EOS as the model's rules say (tokenizer.ggml.add_bos_token / add_eos_token,
  // or the tokenizer.json post-processor). parse_special: recognise control-token strings such as
  // "<start_of_turn>" or "<|im_end|>" in `text` and emit their ids; when false those strings are
  // tokenized as plain text. User-defined tokens (GGUF token_type 4, tokenizer.json added tokens
  // with special=false) are always recognised, as in llama.cpp and Hugging Face.
  // Any bytes are accepted: invalid UTF-8 is encoded losslessly through byte tokens where the
  // vocabulary has them (the unknown token otherwise).
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const = 0;

  // Concatenated token pieces; skip_special drops control/unknown tokens (is_special). The result
  // is always valid UTF-8: byte sequences that do not form a character become U+FFFD.
  virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special) const = 0;

  // Bytes of one token as it appears in output (for streaming; may be a partial UTF-8 sequence).
  // Feed them to a Utf8StreamDecoder to print only whole characters.
  virtual std::string token_piece(int32_t id) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;  // -1 when none
  virtual int32_t eos_id() const = 0;  // -1 when none
  // EOS, EOT, EOM and the end-of-turn tokens of known chat formats (<end_of_turn>, <|im_end|>,
  // <|eot_id|>, <turn|>, ...) present in the vocabulary.
  virtual bool is_end_of_generation(int32_t id) const = 0;
  // Control and unknown tokens: the ones decode(skip_special=true) drops.
  virtual bool is_special(int32_t id) const = 0;
  // The raw vocabulary string ("▁the", "Ġthe", "<0x0A>", "<bos>").
  virtual std::string token_text(int32_t id) const = 0;
};

// Streaming helper: feed it token pieces, get back only complete UTF-8 characters, so a partial
// multi-byte sequence split across tokens is never printed half. Bytes that can never complete a
// character are emitted as U+FFFD as soon as that is certain; flush() emits U+FFFD for a trailing
// incomplete sequence.
class Utf8StreamDecoder {
 public:
  std::string feed(std::string_view bytes);
  std::string flush();
  bool empty() const { return pending_.empty(); }

 private:
  std::string pending_;  // at most 3 bytes: the start of an incomplete character
};

// UTF-8 helpers shared by the text layer.
namespace utf8 {
// Length of the valid UTF-8 character starting at s[i] (1..4), or 0 if the bytes at i are not a
// valid character (invalid lead, bad continuation, overlong, surrogate, > U+10FFFF, truncated).
size_t valid_char_len(std::string_view s, size_t i);
// Number of bytes at i that form the longest prefix of some valid character ("maximal subpart",
// Unicode 15 §3.9 / WHATWG): 1..3 for an invalid or truncated sequence. Used to size U+FFFD.
size_t maximal_subpart(std::string_view s, size_t i);
// s with each maximal invalid subpart replaced by U+FFFD.
std::string sanitize(std::string_view s);
bool is_valid(std::string_view s);
void append_codepoint(std::string& out, uint32_t cp);
}  // namespace utf8

}  // namespace edgevl::text
