// libFuzzer target for the text layer: encodes arbitrary bytes with small built-in vocabularies
// of each kind (SentencePiece scores, merges over U+2581 text, byte-level BPE with each regex
// family), decodes arbitrary id sequences, and feeds the streaming UTF-8 decoder.
// Invariants checked: no crash; the token pieces of an encoding reproduce the input bytes
// exactly; decode() output is valid UTF-8; bad ids raise edgevl::Error, nothing else.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "text/tokenizer.h"
#include "text/vocab.h"

using namespace edgevl;
using namespace edgevl::text;

namespace {

void add_bytes_tokens(Vocab& v) {
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    v.tokens.push_back(name);
    v.types.push_back(TokenType::Byte);
  }
}

Vocab spm_vocab(VocabKind kind) {
  Vocab v;
  v.kind = kind;
  v.tokens = {"<unk>", "<s>", "</s>", "<ctl>", "<ud>"};
  v.types = {TokenType::Unknown, TokenType::Control, TokenType::Control, TokenType::Control, TokenType::UserDefined};
  add_bytes_tokens(v);
  const char* pieces[] = {"▁", "a", "b", "c", "é", "ab", "bc", "abc", "▁a", "▁ab", "a▁", "▁▁", "日", "本"};
  for (const char* p : pieces) {
    v.tokens.push_back(p);
    v.types.push_back(TokenType::Normal);
  }
  if (kind == VocabKind::Spm) {
    for (size_t i = 0; i < v.tokens.size(); ++i) v.scores.push_back(-(float)(i % 7));
  } else {
    v.merges = {"a b", "b c", "a bc", "▁ a", "▁a b", "a ▁", "▁ ▁"};
  }
  v.bos = 1;
  v.eos = 2;
  v.unk = 0;
  v.add_space_prefix = false;
  return v;
}

Vocab byte_vocab(const char* pre) {
  Vocab v;
  v.kind = VocabKind::ByteBpe;
  v.pre = pre;
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    std::string s;
    utf8::append_codepoint(s, printable ? b : next++);
    v.tokens.push_back(s);
  }
  v.merges = {"Ġ t", "h e", "Ġt he", "i n", "Ġ Ġ", "ĠĠ ĠĠ", "1 2", "12 3"};
  for (const std::string& m : v.merges) {
    const size_t sp = m.find(' ');
    v.tokens.push_back(m.substr(0, sp) + m.substr(sp + 1));
  }
  v.tokens.push_back("<|end|>");
  v.tokens.push_back("<think>");
  v.types.assign(v.tokens.size(), TokenType::Normal);
  v.types[v.tokens.size() - 2] = TokenType::Control;
  v.types[v.tokens.size() - 1] = TokenType::UserDefined;
  return v;
}

struct Tokenizers {
  std::vector<std::unique_ptr<Tokenizer>> all;
  Tokenizers() {
    std::vector<std::string> warnings;
    all.push_back(make_vocab_tokenizer(spm_vocab(VocabKind::Spm), &warnings));
    all.push_back(make_vocab_tokenizer(spm_vocab(VocabKind::MergeBpe), &warnings));
    for (const char* pre : {"gpt-2", "llama3", "qwen2", "qwen35", "smollm", "unknown-pre"})
      all.push_back(make_vocab_tokenizer(byte_vocab(pre), &warnings));
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Tokenizers toks;
  if (size == 0) return 0;
  // First byte: which tokenizer and flags; the rest: the text / the id sequence.
  const size_t which = data[0] % toks.all.size();
  const Tokenizer& tok = *toks.all[which];
  const bool add_special = data[0] & 0x10, parse_special = data[0] & 0x20;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);

  const std::vector<int32_t> ids = tok.encode(text, add_special, parse_special);
  // Every vocabulary here represents every byte and none adds a prefix space, so the pieces
  // (without the BOS/EOS that add_special put at the ends) are exactly the input bytes.
  size_t first = 0, last = ids.size();
  if (add_special && tok.bos_id() >= 0 && last > first && ids[first] == tok.bos_id()) ++first;
  if (add_special && tok.eos_id() >= 0 && tok.eos_id() != tok.bos_id() && last > first && ids[last - 1] == tok.eos_id()) --last;
  std::string pieces;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= tok.vocab_size()) std::abort();
    if (i >= first && i < last) pieces += tok.token_piece(ids[i]);
  }
  // SentencePiece-style vocabularies (the first two) cannot tell a literal U+2581 from a space.
  std::string want = text;
  if (which < 2)
    for (size_t p; (p = want.find("\xE2\x96\x81")) != std::string::npos;) want.replace(p, 3, " ");
  if (pieces != want) std::abort();
  if (!utf8::is_valid(tok.decode(ids, false))) std::abort();

  // Arbitrary ids: 2 bytes each, some out of range.
  std::vector<int32_t> raw;
  for (size_t i = 1; i + 1 < size; i += 2) raw.push_back((int32_t)(data[i] | (data[i + 1] << 8)) - 16);
  try {
    const std::string s = tok.decode(raw, data[0] & 0x40);
    if (!utf8::is_valid(s)) std::abort();
  } catch (const Error&) {
  }
  Utf8StreamDecoder d;
  std::string streamed;
  for (size_t i = 1; i < size; i += 3) streamed += d.feed(text.substr(i - 1, 3));
  streamed += d.flush();
  if (!utf8::is_valid(streamed)) std::abort();
  return 0;
}
