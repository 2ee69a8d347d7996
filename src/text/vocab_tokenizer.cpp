// The GGUF-vocabulary tokenizer (vocab.h): text -> special-token partition -> per fragment one of
// three BPE flavours -> ids; ids -> precomputed byte pieces -> UTF-8.
//
// Behaviour follows what llama.cpp does with the same GGUF metadata (llama-vocab.cpp is the
// reference for the semantics; this is an independent implementation), except where noted:
//  - user-defined tokens are always recognised in text, control/unknown ones only with
//    parse_special; matching is leftmost-longest (Hugging Face's added-token rule);
//  - SentencePiece merges only form Normal/UserDefined/Undefined tokens (SentencePiece never
//    merges into control or unused pieces);
//  - decode() returns valid UTF-8 (U+FFFD for bytes that do not form a character).
#include <array>
#include <cstdio>

#include "core/error.h"
#include "text/bpe.h"
#include "text/pretokenizer.h"
#include "text/vocab.h"

namespace edgevl::text {

namespace {

using detail::Candidate;
using detail::FlatMap64;
using detail::pair_key;
using detail::Symbol;

constexpr char kSpaceMark[] = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's space

struct MergeInfo {
  int32_t rank = 0;
  int32_t result = 0;
};

// Scratch buffers of one encode() call (encode is const and may run on several threads).
struct Scratch {
  std::string buf;
  std::vector<Symbol> syms;
  std::vector<Candidate> heap;
  std::vector<Span> pieces;
};

class VocabTokenizer final : public Tokenizer {
 public:
  VocabTokenizer(Vocab v, std::vector<std::string>* warnings);

  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const override;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const override;
  std::string token_piece(int32_t id) const override { return pieces_[check_id(id)]; }
  int32_t vocab_size() const override { return (int32_t)v_.tokens.size(); }
  int32_t bos_id() const override { return v_.bos; }
  int32_t eos_id() const override { return v_.eos; }
  bool is_end_of_generation(int32_t id) const override { return in_range(id) && eog_[id]; }
  bool is_special(int32_t id) const override {
    return in_range(id) && (type(id) == TokenType::Control || type(id) == TokenType::Unknown);
  }
  std::string token_text(int32_t id) const override { return v_.tokens[check_id(id)]; }

 private:
  bool in_range(int32_t id) const { return id >= 0 && id < vocab_size(); }
  int32_t check_id(int32_t id) const {
    EV_CHECK(in_range(id), "tokenizer: token id ", id, " is outside the vocabulary [0, ", vocab_size(), ")");
    return id;
  }
  TokenType type(int32_t id) const { return v_.types[id]; }
  // Id of `s` if it is a token BPE may produce (Normal / UserDefined / Undefined), else -1.
  int32_t piece_id(std::string_view s) const {
    if (s.size() == 1 && (uint8_t)s[0] < 128) return ascii_piece_[(uint8_t)s[0]];
    const int32_t id = token_to_id_.find(s);
    return (id >= 0 && mergeable_[id]) ? id : -1;
  }
  void encode_fragment(std::string_view frag, bool after_special, Scratch& sc, std::vector<int32_t>& out) const;
  void encode_escaped(std::string_view frag, bool prefix, Scratch& sc, std::vector<int32_t>& out) const;
  void encode_byte_level(std::string_view frag, Scratch& sc, std::vector<int32_t>& out) const;
  void byte_fallback(std::string_view bytes, std::vector<int32_t>& out) const;
  void build_pieces();
  void build_eog();

  Vocab v_;
  detail::StringIndex token_to_id_;  // over v_.tokens
  std::array<int32_t, 128> ascii_piece_;  // piece_id of each single ASCII character
  std::vector<uint8_t> mergeable_;
  std::vector<std::string> pieces_;  // output bytes per token
  std::vector<uint8_t> eog_;
  std::array<int32_t, 256> byte_token_;       // <0xXX> tokens (Spm, MergeBpe)
  std::array<int32_t, 256> byte_char_token_;  // GPT-2 byte-alphabet tokens (ByteBpe)
  std::array<uint32_t, 256> byte_cp_;
  FlatMap64<MergeInfo> merges_;
  detail::ByteTrie special_;  // control / user-defined / unknown token strings
  std::unique_ptr<RegexSplitter> splitter_;
  bool add_bos_ = false, add_eos_ = false, add_space_prefix_ = false, ignore_merges_ = false;
};

VocabTokenizer::VocabTokenizer(Vocab v, std::vector<std::string>* warnings) : v_(std::move(v)) {
  auto warn = [&](std::string msg) {
    if (warnings) warnings->push_back(std::move(msg));
    else std::fprintf(stderr, "edgevl: warning: %s\n", msg.c_str());
  };
  const size_t n = v_.tokens.size();
  EV_CHECK(n > 0, "tokenizer: the vocabulary has no tokens");
  EV_CHECK(n < (size_t)INT32_MAX, "tokenizer: ", n, " tokens is too many");
  EV_CHECK(v_.scores.empty() || v_.scores.size() == n, "tokenizer: ", v_.scores.size(), " scores for ", n, " tokens");
  EV_CHECK(v_.types.empty() || v_.types.size() == n, "tokenizer: ", v_.types.size(), " token types for ", n, " tokens");
  if (v_.scores.empty()) v_.scores.assign(n, 0.0f);
  if (v_.types.empty()) v_.types.assign(n, TokenType::Normal);
  for (size_t i = 0; i < n; ++i) {
    const auto t = (int32_t)v_.types[i];
    EV_CHECK(t >= 0 && t <= 6, "tokenizer: token ", i, " has invalid type ", t);
  }
  auto check_special = [&](int32_t& id, const char* what, bool required_in_range) {
    if (id < 0 || (size_t)id < n) return;
    if (required_in_range) fail("tokenizer: ", what, " token id ", id, " is outside the vocabulary of ", n);
    warn(str_cat("tokenizer: ignoring ", what, " token id ", id, " outside the vocabulary of ", n));
    id = -1;
  };
  check_special(v_.bos, "BOS", true);
  check_special(v_.eos, "EOS", true);
  check_special(v_.unk, "unknown", true);
  check_special(v_.pad, "padding", false);
  check_special(v_.eot, "EOT", false);
  check_special(v_.eom, "EOM", false);

  token_to_id_.build(v_.tokens);  // first id wins for duplicates
  mergeable_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const TokenType t = v_.types[i];
    mergeable_[i] = t == TokenType::Normal || t == TokenType::UserDefined || t == TokenType::Undefined;
    if (t == TokenType::Control || t == TokenType::UserDefined || t == TokenType::Unknown)
      special_.add(v_.tokens[i], (int32_t)i);
    if (v_.unk < 0 && t == TokenType::Unknown) v_.unk = (int32_t)i;
  }

  for (int c = 0; c < 128; ++c) {
    const int32_t id = token_to_id_.find(std::string(1, (char)c));
    ascii_piece_[c] = (id >= 0 && mergeable_[id]) ? id : -1;
  }
  byte_cp_ = detail::gpt2_byte_to_codepoint();
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    byte_token_[b] = token_to_id_.find(name);
    std::string ch;
    utf8::append_codepoint(ch, byte_cp_[b]);
    byte_char_token_[b] = token_to_id_.find(ch);
  }

  merges_.reserve(v_.merges.size());
  std::string joined;
  for (size_t r = 0; r < v_.merges.size(); ++r) {
    const std::string& m = v_.merges[r];
    // Split at the first space after position 0, so a left part that is itself " " still parses.
    const size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
    EV_CHECK(sp != std::string::npos && sp + 1 < m.size(), "tokenizer: merge ", r, " ('", m, "') is not 'left right'");
    const std::string_view a(m.data(), sp), b(m.data() + sp + 1, m.size() - sp - 1);
    joined.assign(a);
    joined.append(b);
    int32_t ids[3];
    const std::string_view parts[3] = {a, b, joined};
    for (int k = 0; k < 3; ++k) {
      ids[k] = token_to_id_.find(parts[k]);
      EV_CHECK(ids[k] >= 0, "tokenizer: merge ", r, " ('", m, "') refers to unknown token '", std::string(parts[k]), "'");
    }
    merges_.insert(pair_key(ids[0], ids[1]), MergeInfo{(int32_t)r, ids[2]});  // lowest rank wins
  }

  const bool spm_like = v_.kind != VocabKind::ByteBpe;
  add_bos_ = v_.add_bos.value_or(spm_like);
  add_eos_ = v_.add_eos.value_or(false);
  add_space_prefix_ = spm_like && v_.add_space_prefix.value_or(v_.kind == VocabKind::Spm);
  if (v_.kind == VocabKind::ByteBpe) {
    bool known = false;
    splitter_ = std::make_unique<RegexSplitter>(pre_tokenizer_patterns(v_.pre, &known));
    if (!known) warn(str_cat("tokenizer: unknown pre-tokenizer '", v_.pre, "', using the GPT-2 pattern"));
    // Llama 3's tokenizer.json sets ignore_merges: a piece that is a whole token is taken as is.
    ignore_merges_ = v_.pre == "llama3" || v_.pre == "llama-bpe" || v_.pre == "llama-v3";
    int missing = 0;
    for (int b = 0; b < 256; ++b) missing += byte_char_token_[b] < 0;
    if (missing) warn(str_cat("tokenizer: ", missing, " of the 256 byte-level tokens are missing; those bytes encode as unknown"));
  }
  build_pieces();
  build_eog();
}

void VocabTokenizer::build_pieces() {
  const size_t n = v_.tokens.size();
  pieces_.resize(n);
  std::array<int32_t, 512> cp_to_byte;  // inverse of byte_cp_ (all values < 512)
  cp_to_byte.fill(-1);
  for (int b = 0; b < 256; ++b) cp_to_byte[byte_cp_[b]] = b;
  for (size_t i = 0; i < n; ++i) {
    const std::string& t = v_.tokens[i];
    const TokenType ty = v_.types[i];
    std::string& p = pieces_[i];
    if (v_.kind == VocabKind::ByteBpe) {
      if (ty == TokenType::Control || ty == TokenType::UserDefined || ty == TokenType::Unknown) {
        p = t;  // added tokens are stored as plain text, not in the byte alphabet
        continue;
      }
      for (size_t j = 0; j < t.size();) {
        const size_t len = utf8::valid_char_len(t, j);
        if (len == 0) {  // malformed vocabulary entry: keep the byte
          p += t[j++];
          continue;
        }
        const uint32_t cp = detail::utf8_codepoint_at(t, j, len);
        if (cp < cp_to_byte.size() && cp_to_byte[cp] >= 0) p += (char)cp_to_byte[cp];
        else p.append(t, j, len);
        j += len;
      }
    } else {
      const int byte = ty == TokenType::Byte ? detail::parse_byte_token_name(t) : -1;
      if (byte >= 0) {
        p.assign(1, (char)byte);
        continue;
      }
      // The Gemma/Llama decoders replace U+2581 by a space in every token.
      for (size_t j = 0; j < t.size();) {
        if (t.compare(j, 3, kSpaceMark) == 0) {
          p += ' ';
          j += 3;
        } else {
          p += t[j++];
        }
      }
    }
  }
}

void VocabTokenizer::build_eog() {
  eog_.assign(v_.tokens.size(), 0);
  for (int32_t id : {v_.eos, v_.eot, v_.eom})
    if (id >= 0) eog_[id] = 1;
  // End-of-turn markers of common chat formats, when they are control/user-defined tokens.
  static const char* const kEnd[] = {"<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<end_of_turn>", "<turn|>",
                                     "<|endoftext|>", "<|end|>", "<|return|>", "<|call|>", "<EOT>",
                                     "<|end_of_text|>", "<|end▁of▁sentence|>"};
  for (const char* s : kEnd) {
    const int32_t id = token_to_id_.find(s);
    if (id < 0) continue;
    const TokenType t = v_.types[id];
    if (t == TokenType::Control || t == TokenType::UserDefined) eog_[id] = 1;
  }
}

std::vector<int32_t> VocabTokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  EV_CHECK(text.size() < (size_t)INT32_MAX, "tokenizer: text of ", text.size(), " bytes is too long");
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special && add_bos_ && v_.bos >= 0) out.push_back(v_.bos);
  Scratch sc;
  auto accept = [&](int32_t id) { return parse_special || v_.types[id] == TokenType::UserDefined; };
  bool after_special = true;  // the start of the text counts (SentencePiece's prefix space)
  size_t frag = 0;
  for (size_t i = 0; i < text.size();) {
    int32_t id = -1;
    const size_t len = special_.may_start((uint8_t)text[i]) ? special_.longest(text, i, accept, &id) : 0;
    if (len == 0) {
      ++i;
      continue;
    }
    if (i > frag) {
      encode_fragment(text.substr(frag, i - frag), after_special, sc, out);
    }
    out.push_back(id);
    after_special = true;
    i += len;
    frag = i;
  }
  if (frag < text.size()) encode_fragment(text.substr(frag), after_special, sc, out);
  if (add_special && add_eos_ && v_.eos >= 0) out.push_back(v_.eos);
  return out;
}

void VocabTokenizer::encode_fragment(std::string_view frag, bool after_special, Scratch& sc,
                                     std::vector<int32_t>& out) const {
  if (v_.kind == VocabKind::ByteBpe) {
    encode_byte_level(frag, sc, out);
  } else {
    // llama.cpp prepends the space to every text fragment that follows a special token (and to
    // the first one), not only to the start of the text.
    encode_escaped(frag, add_space_prefix_ && after_special, sc, out);
  }
}

void VocabTokenizer::byte_fallback(std::string_view bytes, std::vector<int32_t>& out) const {
  for (char c : bytes) {
    const int32_t id = byte_token_[(uint8_t)c];
    if (id >= 0) out.push_back(id);
    else if (v_.unk >= 0) out.push_back(v_.unk);
    // else: no byte token and no unknown token: the byte cannot be represented and is dropped
  }
}

// Spm and MergeBpe: spaces -> U+2581, one symbol per character, merge, byte fallback.
void VocabTokenizer::encode_escaped(std::string_view frag, bool prefix, Scratch& sc, std::vector<int32_t>& out) const {
  std::string& buf = sc.buf;
  buf.clear();
  buf.reserve(frag.size() + 8);
  if (prefix) buf += kSpaceMark;
  for (char c : frag) {
    if (c == ' ') buf += kSpaceMark;
    else buf += c;
  }
  EV_CHECK(buf.size() < (size_t)INT32_MAX, "tokenizer: text is too long");
  std::vector<Symbol>& syms = sc.syms;
  syms.clear();
  for (size_t i = 0; i < buf.size();) {
    size_t len = utf8::valid_char_len(buf, i);
    if (len == 0) len = 1;  // an invalid byte is a symbol of its own and goes to byte fallback
    const int32_t k = (int32_t)syms.size();
    syms.push_back({k - 1, k + 1, (uint32_t)i, (uint32_t)len, piece_id(std::string_view(buf).substr(i, len))});
    i += len;
  }
  if (syms.empty()) return;
  syms.back().next = -1;

  if (v_.kind == VocabKind::Spm) {
    // SentencePiece BPE: the pair whose concatenation is the best-scoring vocabulary piece.
    detail::bpe_merge(syms, sc.heap, [&](const Symbol& l, const Symbol& r, double* cost, int32_t* id) {
      const int32_t t = piece_id(std::string_view(buf.data() + l.start, l.len + r.len));
      if (t < 0) return false;
      *cost = -(double)v_.scores[t];
      *id = t;
      return true;
    });
  } else {
    // Merges by rank (Hugging Face BPE); characters outside the vocabulary never merge.
    detail::bpe_merge(syms, sc.heap, [&](const Symbol& l, const Symbol& r, double* cost, int32_t* id) {
      if (l.id < 0 || r.id < 0) return false;
      const MergeInfo* m = merges_.find(pair_key(l.id, r.id));
      if (!m) return false;
      *cost = m->rank;
      *id = m->result;
      return true;
    });
  }
  for (int32_t k = 0; k >= 0; k = syms[k].next) {
    const Symbol& s = syms[k];
    if (s.id >= 0) out.push_back(s.id);
    else byte_fallback(std::string_view(buf.data() + s.start, s.len), out);
  }
}

// ByteBpe: regex pieces, each byte -> its byte-alphabet token, merges by rank.
void VocabTokenizer::encode_byte_level(std::string_view frag, Scratch& sc, std::vector<int32_t>& out) const {
  sc.pieces.clear();
  splitter_->split(frag, sc.pieces);
  std::vector<Symbol>& syms = sc.syms;
  for (const Span& sp : sc.pieces) {
    const std::string_view word = frag.substr(sp.begin, sp.size);
    if (ignore_merges_) {
      std::string& bl = sc.buf;
      bl.clear();
      for (char c : word) utf8::append_codepoint(bl, byte_cp_[(uint8_t)c]);
      const int32_t id = piece_id(bl);
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
    }
    syms.clear();
    for (size_t i = 0; i < word.size(); ++i) {
      const int32_t k = (int32_t)syms.size();
      syms.push_back({k - 1, k + 1, (uint32_t)i, 1u, byte_char_token_[(uint8_t)word[i]]});
    }
    if (syms.empty()) continue;
    syms.back().next = -1;
    if (syms.size() > 1) {
      detail::bpe_merge(syms, sc.heap, [&](const Symbol& l, const Symbol& r, double* cost, int32_t* id) {
        if (l.id < 0 || r.id < 0) return false;
        const MergeInfo* m = merges_.find(pair_key(l.id, r.id));
        if (!m) return false;
        *cost = m->rank;
        *id = m->result;
        return true;
      });
    }
    for (int32_t k = 0; k >= 0; k = syms[k].next) {
      if (syms[k].id >= 0) out.push_back(syms[k].id);
      else if (v_.unk >= 0) out.push_back(v_.unk);
    }
  }
}

std::string VocabTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string out;
  bool first = true;
  for (int32_t id : ids) {
    check_id(id);
    const bool special = is_special(id);
    if (skip_special && special) continue;
    const std::string& p = pieces_[id];
    // SentencePiece's prefix space is not part of the text: drop it from a leading piece.
    if (first && add_space_prefix_ && !special && !p.empty() && p[0] == ' ') out.append(p, 1);
    else out += p;
    first = false;
  }
  return utf8::sanitize(out);
}

}  // namespace

std::unique_ptr<Tokenizer> make_vocab_tokenizer(Vocab vocab, std::vector<std::string>* warnings) {
  return std::make_unique<VocabTokenizer>(std::move(vocab), warnings);
}

}  // namespace edgevl::text
