// tokenizer.json pre-tokenizers (the `tokenizers` pre_tokenizers module): ByteLevel, Split,
// Metaspace, Digits, Punctuation, Whitespace, WhitespaceSplit, BertPreTokenizer and Sequence.
// Splitting pre-tokenizers re-cut the spans over the same text; ByteLevel and Metaspace rewrite
// the text. Empty pieces are dropped, as PreTokenizedString::split does.
#include <array>
#include <cstring>

#include "core/error.h"
#include "text/bpe.h"
#include "text/hf/components.h"
#include "text/tokenizer.h"

namespace edgevl::text::hf {

namespace {

constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// tokenizers' SplitDelimiterBehavior.
enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

Behavior parse_behavior(const json& j, const char* what, const char* def) {
  const std::string b = get_string(j, "behavior", what, def);
  if (b == "Removed") return Behavior::Removed;
  if (b == "Isolated") return Behavior::Isolated;
  if (b == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::MergedWithNext;
  if (b == "Contiguous") return Behavior::Contiguous;
  fail("tokenizer.json: ", what, ": unsupported split behavior '", b, "'");
}

// Cuts the piece text[base, base + len) whose matches (offsets relative to base, in order) are
// `matches`, and appends the resulting non-empty spans, following NormalizedString::split.
void split_by_matches(uint32_t base, uint32_t len, const std::vector<Span>& matches, bool invert, Behavior behavior,
                      std::vector<Span>& out) {
  struct Part {
    uint32_t b, e;
    bool match;
  };
  std::vector<Part> parts;
  parts.reserve(matches.size() * 2 + 1);
  uint32_t last = 0;
  for (const Span& m : matches) {
    if (m.begin > last) parts.push_back({last, m.begin, invert});
    parts.push_back({m.begin, m.begin + m.size, !invert});
    last = m.begin + m.size;
  }
  if (last < len) parts.push_back({last, len, invert});

  std::vector<Part> merged;
  merged.reserve(parts.size());
  switch (behavior) {
    case Behavior::Removed:
      for (const Part& p : parts)
        if (!p.match) merged.push_back(p);
      break;
    case Behavior::Isolated:
      merged.insert(merged.end(), parts.begin(), parts.end());
      break;
    case Behavior::MergedWithPrevious: {
      bool prev_match = false;
      for (const Part& p : parts) {
        if (p.match && !prev_match && !merged.empty()) merged.back().e = p.e;
        else merged.push_back(p);
        prev_match = p.match;
      }
      break;
    }
    case Behavior::MergedWithNext: {
      bool prev_match = false;  // walking from the right: "previous" is the part after
      for (size_t k = parts.size(); k-- > 0;) {
        const Part& p = parts[k];
        if (p.match && !prev_match && !merged.empty()) merged.back().b = p.b;
        else merged.push_back(p);
        prev_match = p.match;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    }
    case Behavior::Contiguous: {
      bool prev_match = false;
      for (const Part& p : parts) {
        if (p.match == prev_match && !merged.empty()) merged.back().e = p.e;
        else merged.push_back(p);
        prev_match = p.match;
      }
      break;
    }
  }
  for (const Part& p : merged)
    if (p.e > p.b) out.push_back({base + p.b, p.e - p.b});
}

// A pre-tokenizer that only re-cuts spans: `find` lists the matches in one piece.
class Splitting : public PreTokenizer {
 public:
  Splitting(bool invert, Behavior behavior) : invert_(invert), behavior_(behavior) {}
  void pre_tokenize(Pieces& p, Pieces& tmp, bool) const override {
    tmp.spans.clear();
    std::vector<Span> matches;
    for (const Span& s : p.spans) {
      matches.clear();
      find(std::string_view(p.text).substr(s.begin, s.size), matches);
      split_by_matches(s.begin, s.size, matches, invert_, behavior_, tmp.spans);
    }
    p.spans.swap(tmp.spans);
  }

 protected:
  virtual void find(std::string_view piece, std::vector<Span>& matches) const = 0;

 private:
  bool invert_;
  Behavior behavior_;
};

class Split final : public Splitting {
 public:
  explicit Split(const json& j)
      : Splitting(get_bool(j, "invert", "Split pre-tokenizer", false), parse_behavior(j, "Split pre-tokenizer", "Isolated")),
        pattern_(j.value("pattern", json()), "Split pre-tokenizer") {}

 protected:
  void find(std::string_view piece, std::vector<Span>& matches) const override { pattern_.find_all(piece, matches); }

 private:
  Pattern pattern_;
};

// Matches every single character for which Pred holds (tokenizers' char-predicate patterns).
template <bool (*Pred)(uint32_t)>
class CharClass final : public Splitting {
 public:
  using Splitting::Splitting;

 protected:
  void find(std::string_view piece, std::vector<Span>& matches) const override {
    for (size_t i = 0; i < piece.size();) {
      size_t n;
      if (Pred(uni::next_char(piece, i, &n))) matches.push_back({(uint32_t)i, (uint32_t)n});
      i += n;
    }
  }
};

// Whitespace: keeps the runs of \w+ and of [^\w\s]+ (an inverted, removed regex split).
class Whitespace final : public Splitting {
 public:
  Whitespace() : Splitting(true, Behavior::Removed), regex_(R"(\w+|[^\w\s]+)") {}

 protected:
  void find(std::string_view piece, std::vector<Span>& matches) const override { regex_.find_all(piece, matches); }

 private:
  RegexMatcher regex_;
};

// ByteLevel: optional prefix space, optional GPT-2 regex split, then every byte -> its printable
// code point of GPT-2's byte alphabet.
class ByteLevel final : public PreTokenizer {
 public:
  explicit ByteLevel(const json& j)
      : add_prefix_space_(get_bool(j, "add_prefix_space", "ByteLevel pre-tokenizer", true)),
        use_regex_(get_bool(j, "use_regex", "ByteLevel pre-tokenizer", true)) {
    if (use_regex_) regex_ = std::make_unique<RegexSplitter>(std::vector<std::string>{kGpt2Pattern});
    const auto cps = detail::gpt2_byte_to_codepoint();
    for (int b = 0; b < 256; ++b) {
      std::string c;
      utf8::append_codepoint(c, cps[b]);  // U+0021..U+0143: one or two bytes
      EV_CHECK(c.size() <= 2, "ByteLevel: byte alphabet");
      std::memcpy(alphabet_[b].data(), c.data(), c.size());
      alphabet_len_[b] = (uint8_t)c.size();
    }
  }
  void pre_tokenize(Pieces& p, Pieces& tmp, bool) const override {
    tmp.text.clear();
    tmp.spans.clear();
    tmp.text.reserve(p.text.size() * 3 / 2 + 8);
    std::string prefixed;
    std::vector<Span> sub;
    for (const Span& s : p.spans) {
      std::string_view piece = std::string_view(p.text).substr(s.begin, s.size);
      if (add_prefix_space_ && (piece.empty() || piece[0] != ' ')) {
        prefixed.assign(1, ' ');
        prefixed.append(piece);
        piece = prefixed;
      }
      sub.clear();
      if (regex_) regex_->split(piece, sub);
      else if (!piece.empty()) sub.push_back({0, (uint32_t)piece.size()});
      for (const Span& q : sub) {
        const size_t begin = tmp.text.size();
        tmp.text.resize(begin + 2 * (size_t)q.size);  // each byte becomes 1 or 2 bytes
        char* d = tmp.text.data() + begin;
        for (size_t i = q.begin; i < q.begin + q.size; ++i) {
          const uint8_t b = (uint8_t)piece[i];
          std::memcpy(d, &alphabet_[b], 2);
          d += alphabet_len_[b];
        }
        tmp.text.resize((size_t)(d - tmp.text.data()));
        tmp.spans.push_back({(uint32_t)begin, (uint32_t)(tmp.text.size() - begin)});
      }
    }
    std::swap(p, tmp);
  }

 private:
  bool add_prefix_space_, use_regex_;
  std::unique_ptr<RegexSplitter> regex_;
  std::array<std::array<char, 2>, 256> alphabet_{};  // byte -> its code point in UTF-8
  std::array<uint8_t, 256> alphabet_len_{};
};

// Metaspace: spaces -> the replacement character, a prepended one by the prepend scheme, then
// optionally a split before each replacement character.
class Metaspace final : public PreTokenizer {
 public:
  explicit Metaspace(const json& j) {
    const char* what = "Metaspace pre-tokenizer";
    replacement_ = get_string(j, "replacement", what, "\xE2\x96\x81");
    EV_CHECK(utf8::valid_char_len(replacement_, 0) == replacement_.size() && !replacement_.empty(),
             "tokenizer.json: ", what, ": replacement is not one character");
    std::string scheme = get_string(j, "prepend_scheme", what, "");
    if (scheme.empty()) scheme = get_bool(j, "add_prefix_space", what, true) ? "always" : "never";
    EV_CHECK(scheme == "always" || scheme == "first" || scheme == "never", "tokenizer.json: ", what,
             ": unsupported prepend_scheme '", scheme, "'");
    scheme_ = scheme[0];
    split_ = get_bool(j, "split", what, true);
  }
  void pre_tokenize(Pieces& p, Pieces& tmp, bool first) const override {
    tmp.text.clear();
    tmp.spans.clear();
    std::string piece;
    std::vector<Span> matches;
    for (const Span& s : p.spans) {
      piece.clear();
      const bool prepend = scheme_ == 'a' || (scheme_ == 'f' && first && s.begin == 0);
      const std::string_view src = std::string_view(p.text).substr(s.begin, s.size);
      if (prepend && src.substr(0, replacement_.size()) != replacement_ && !(src.size() && src[0] == ' '))
        piece += replacement_;
      for (char c : src) {
        if (c == ' ') piece += replacement_;
        else piece += c;
      }
      const auto base = (uint32_t)tmp.text.size();
      tmp.text += piece;
      if (!split_) {
        if (!piece.empty()) tmp.spans.push_back({base, (uint32_t)piece.size()});
        continue;
      }
      matches.clear();
      for (size_t k = piece.find(replacement_); k != std::string::npos; k = piece.find(replacement_, k + replacement_.size()))
        matches.push_back({(uint32_t)k, (uint32_t)replacement_.size()});
      split_by_matches(base, (uint32_t)piece.size(), matches, false, Behavior::MergedWithNext, tmp.spans);
    }
    std::swap(p, tmp);
  }

 private:
  std::string replacement_;
  char scheme_;  // 'a'lways, 'f'irst, 'n'ever
  bool split_;
};

class Sequence final : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void pre_tokenize(Pieces& p, Pieces& tmp, bool first) const override {
    for (const auto& part : parts_) part->pre_tokenize(p, tmp, first);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = component_type(j, "pre_tokenizer");
  if (type == "ByteLevel") return std::make_unique<ByteLevel>(j);
  if (type == "Split") return std::make_unique<Split>(j);
  if (type == "Metaspace") return std::make_unique<Metaspace>(j);
  if (type == "Digits") {
    const bool individual = get_bool(j, "individual_digits", "Digits pre-tokenizer", false);
    return std::make_unique<CharClass<uni::is_numeric>>(false, individual ? Behavior::Isolated : Behavior::Contiguous);
  }
  if (type == "Punctuation")
    return std::make_unique<CharClass<uni::is_punctuation>>(false, parse_behavior(j, "Punctuation pre-tokenizer", "Isolated"));
  if (type == "Whitespace") return std::make_unique<Whitespace>();
  if (type == "WhitespaceSplit") return std::make_unique<CharClass<uni::is_whitespace>>(false, Behavior::Removed);
  if (type == "BertPreTokenizer") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    parts.push_back(std::make_unique<CharClass<uni::is_whitespace>>(false, Behavior::Removed));
    parts.push_back(std::make_unique<CharClass<uni::is_punctuation>>(false, Behavior::Isolated));
    return std::make_unique<Sequence>(std::move(parts));
  }
  if (type == "Sequence") {
    const auto it = j.find("pretokenizers");
    EV_CHECK(it != j.end() && it->is_array(), "tokenizer.json: Sequence pre-tokenizer has no 'pretokenizers' list");
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const json& p : *it)
      if (auto t = make_pre_tokenizer(p)) parts.push_back(std::move(t));
    return std::make_unique<Sequence>(std::move(parts));
  }
  fail("tokenizer.json: unsupported pre_tokenizer type '", type, "'");
}

}  // namespace edgevl::text::hf
