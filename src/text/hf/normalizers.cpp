// tokenizer.json normalizers (the `tokenizers` normalizers module): NFC, NFD, NFKC, NFKD,
// Lowercase, Replace, Prepend, Strip, StripAccents and Sequence; plus the JSON, Unicode and
// pattern helpers the other stages share. Unicode data comes from utf8proc.
#include <utf8proc.h>

#include "core/error.h"
#include "text/bpe.h"
#include "text/hf/components.h"
#include "text/tokenizer.h"

namespace edgevl::text::hf {

// ---------------------------------------------------------------------------------------------
// JSON helpers

namespace {
const json* member(const json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return (it == j.end() || it->is_null()) ? nullptr : &*it;
}
}  // namespace

std::string get_string(const json& j, const char* key, const char* what, const std::string& def) {
  const json* v = member(j, key);
  if (!v) return def;
  EV_CHECK(v->is_string(), "tokenizer.json: ", what, ": '", key, "' is not a string");
  return v->get<std::string>();
}

bool get_bool(const json& j, const char* key, const char* what, bool def) {
  const json* v = member(j, key);
  if (!v) return def;
  EV_CHECK(v->is_boolean(), "tokenizer.json: ", what, ": '", key, "' is not a boolean");
  return v->get<bool>();
}

int64_t get_int(const json& j, const char* key, const char* what, int64_t def) {
  const json* v = member(j, key);
  if (!v) return def;
  EV_CHECK(v->is_number_integer(), "tokenizer.json: ", what, ": '", key, "' is not an integer");
  return v->get<int64_t>();
}

std::string component_type(const json& j, const char* what) {
  EV_CHECK(j.is_object(), "tokenizer.json: ", what, " is not an object");
  const json* t = member(j, "type");
  EV_CHECK(t && t->is_string(), "tokenizer.json: ", what, " has no 'type'");
  return t->get<std::string>();
}

// ---------------------------------------------------------------------------------------------
// Unicode

namespace uni {

uint32_t next_char(std::string_view s, size_t i, size_t* len) {
  const size_t n = utf8::valid_char_len(s, i);
  if (n == 0) {
    *len = 1;
    return 0xFFFFFFFFu;  // not a code point: every predicate answers false
  }
  *len = n;
  return detail::utf8_codepoint_at(s, i, n);
}

namespace {
utf8proc_category_t category(uint32_t cp) {
  return cp > 0x10FFFF ? UTF8PROC_CATEGORY_CN : utf8proc_category((utf8proc_int32_t)cp);
}
}  // namespace

bool is_whitespace(uint32_t cp) {
  if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85) return true;
  if (cp < 0x80) return false;
  const auto c = category(cp);
  return c == UTF8PROC_CATEGORY_ZS || c == UTF8PROC_CATEGORY_ZL || c == UTF8PROC_CATEGORY_ZP;
}

bool is_numeric(uint32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  const auto c = category(cp);
  return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

bool is_punctuation(uint32_t cp) {
  if (cp < 0x80) return cp > 0x20 && cp < 0x7F && !((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') && !(cp >= '0' && cp <= '9');
  const auto c = category(cp);
  return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

bool is_word_char(uint32_t cp) {
  if (cp < 0x80) return cp == '_' || ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') || (cp >= '0' && cp <= '9');
  const auto c = category(cp);
  return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) || (c >= UTF8PROC_CATEGORY_MN && c <= UTF8PROC_CATEGORY_NO) ||
         c == UTF8PROC_CATEGORY_PC;
}

}  // namespace uni

// ---------------------------------------------------------------------------------------------
// Patterns

Pattern::Pattern(const json& j, const char* what) {
  EV_CHECK(j.is_object() && j.size() == 1, "tokenizer.json: ", what, ": pattern is not {\"String\": ...} or {\"Regex\": ...}");
  const std::string& kind = j.begin().key();
  const json& value = j.begin().value();
  EV_CHECK(value.is_string(), "tokenizer.json: ", what, ": pattern ", kind, " is not a string");
  if (kind == "String") {
    literal_ = value.get<std::string>();
    EV_CHECK(!literal_.empty(), "tokenizer.json: ", what, ": empty String pattern");
  } else if (kind == "Regex") {
    try {
      regex_ = std::make_unique<RegexMatcher>(value.get<std::string>());
    } catch (const Error& e) {
      fail("tokenizer.json: ", what, ": ", e.what());
    }
  } else {
    fail("tokenizer.json: ", what, ": unsupported pattern kind '", kind, "'");
  }
}

void Pattern::find_all(std::string_view text, std::vector<Span>& out) const {
  if (regex_) {
    regex_->find_all(text, out);
    return;
  }
  for (size_t p = text.find(literal_); p != std::string_view::npos; p = text.find(literal_, p + literal_.size()))
    out.push_back({(uint32_t)p, (uint32_t)literal_.size()});
}

void replace_all(const Pattern& pattern, const std::string& content, std::string& s, std::vector<Span>& scratch) {
  scratch.clear();
  pattern.find_all(s, scratch);
  if (scratch.empty()) return;
  std::string out;
  out.reserve(s.size() + scratch.size() * content.size());
  size_t last = 0;
  for (const Span& m : scratch) {
    out.append(s, last, m.begin - last);
    out += content;
    last = m.begin + m.size;
  }
  out.append(s, last, std::string::npos);
  s.swap(out);
}

// ---------------------------------------------------------------------------------------------
// Normalizers

namespace {

bool is_ascii(std::string_view s) {
  for (char c : s)
    if ((uint8_t)c >= 0x80) return false;
  return true;
}

// Unicode normalization forms. Invalid UTF-8 bytes are kept and split the text into runs that
// are normalized separately (utf8proc needs valid input).
class UnicodeForm final : public Normalizer {
 public:
  explicit UnicodeForm(int options) : options_(options) {}
  void normalize(std::string& s) const override {
    if (is_ascii(s)) return;  // every form leaves ASCII unchanged
    std::string out;
    out.reserve(s.size() + 8);
    size_t run = 0;
    for (size_t i = 0; i < s.size();) {
      const size_t n = utf8::valid_char_len(s, i);
      if (n > 0) {
        i += n;
        continue;
      }
      map_run(std::string_view(s).substr(run, i - run), out);
      out += s[i];
      run = ++i;
    }
    map_run(std::string_view(s).substr(run), out);
    s.swap(out);
  }

 private:
  // Whether every form leaves the character as it is and it never joins the one before it: no
  // decomposition, combining class 0, never the second of a composition (utf8proc's comb_index),
  // not a Hangul jamo or syllable (composed by rule). Normalization starts afresh at such a
  // character: NFx(a + c + b) = NFx(a) + NFx(c + b). (Checked over all of Unicode against utf8proc.)
  static bool inert(uint32_t cp) {
    if (cp < 0x80) return true;
    if ((cp >= 0x1100 && cp <= 0x11FF) || (cp >= 0xAC00 && cp <= 0xD7A3)) return false;
    const utf8proc_property_t* p = utf8proc_get_property((utf8proc_int32_t)cp);
    return p->decomp_seqindex == UINT16_MAX && p->combining_class == 0 &&
           (p->comb_index == UINT16_MAX || p->comb_index < 0x8000);
  }
  // A valid run: only its stretches of non-inert characters go through utf8proc, each with the
  // character before it (a combining mark may compose with that one); the rest stays as it is.
  void map_run(std::string_view run, std::string& out) const {
    size_t done = 0;  // run[0, done) is in out
    size_t prev = 0;  // where the character before i starts
    for (size_t i = 0; i < run.size();) {
      if ((uint8_t)run[i] < 0x80) {
        prev = i++;
        continue;
      }
      size_t n = utf8::valid_char_len(run, i);
      if (inert(detail::utf8_codepoint_at(run, i, n))) {
        prev = i;
        i += n;
        continue;
      }
      const size_t begin = i > done ? prev : i;
      size_t k = i + n;
      while (k < run.size() && (uint8_t)run[k] >= 0x80) {
        n = utf8::valid_char_len(run, k);
        if (inert(detail::utf8_codepoint_at(run, k, n))) break;
        k += n;
      }
      out.append(run.substr(done, begin - done));
      map_utf8proc(run.substr(begin, k - begin), out);
      done = i = k;
    }
    out.append(run.substr(done));
  }
  void map_utf8proc(std::string_view run, std::string& out) const {
    if (run.empty()) return;
    utf8proc_uint8_t* dst = nullptr;
    const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(run.data()), (utf8proc_ssize_t)run.size(),
                                            &dst, (utf8proc_option_t)options_);
    if (n < 0) {  // cannot happen on valid UTF-8 short of memory; keep the text as it is
      out.append(run);
      return;
    }
    out.append(reinterpret_cast<const char*>(dst), (size_t)n);
    std::free(dst);
  }
  int options_;
};

// Rust's str::to_lowercase: full lower-case mapping (utf8proc's simple mapping plus the two
// context rules that differ: U+0130 and the final sigma).
class Lowercase final : public Normalizer {
 public:
  void normalize(std::string& s) const override {
    std::string out;
    out.reserve(s.size());
    bool after_letter = false;
    for (size_t i = 0; i < s.size();) {
      size_t n;
      const uint32_t cp = uni::next_char(s, i, &n);
      if (cp < 0x80) {
        out += (cp >= 'A' && cp <= 'Z') ? (char)(cp + 32) : (char)cp;
      } else if (cp > 0x10FFFF) {
        out += s[i];  // invalid byte: kept
      } else if (cp == 0x130) {
        out += "i\xCC\x87";
      } else if (cp == 0x3A3) {
        size_t m;
        const bool letter_next = i + n < s.size() && is_letter(uni::next_char(s, i + n, &m));
        utf8::append_codepoint(out, after_letter && !letter_next ? 0x3C2 : 0x3C3);
      } else {
        utf8::append_codepoint(out, (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp));
      }
      const bool mark = cp < 0x10FFFF && utf8proc_category((utf8proc_int32_t)cp) == UTF8PROC_CATEGORY_MN;
      if (!mark) after_letter = is_letter(cp);
      i += n;
    }
    s.swap(out);
  }

 private:
  static bool is_letter(uint32_t cp) {
    if (cp > 0x10FFFF) return false;
    const auto c = utf8proc_category((utf8proc_int32_t)cp);
    return c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO;
  }
};

class Replace final : public Normalizer {
 public:
  explicit Replace(const json& j)
      : pattern_(j.value("pattern", json()), "Replace normalizer"), content_(get_string(j, "content", "Replace normalizer", "")) {}
  void normalize(std::string& s) const override {
    std::vector<Span> scratch;
    replace_all(pattern_, content_, s, scratch);
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class Prepend final : public Normalizer {
 public:
  explicit Prepend(const json& j) : prepend_(get_string(j, "prepend", "Prepend normalizer", "")) {}
  void normalize(std::string& s) const override {
    if (!s.empty()) s.insert(0, prepend_);
  }

 private:
  std::string prepend_;
};

// Whitespace off the ends (Rust's trim_start / trim_end).
class Strip final : public Normalizer {
 public:
  explicit Strip(const json& j)
      : left_(get_bool(j, "strip_left", "Strip normalizer", true)), right_(get_bool(j, "strip_right", "Strip normalizer", true)) {}
  void normalize(std::string& s) const override {
    size_t b = 0, e = s.size();
    if (left_) {
      size_t n;
      while (b < e && uni::is_whitespace(uni::next_char(s, b, &n))) b += n;
    }
    if (right_) {
      while (e > b) {
        size_t k = e - 1;
        while (k > b && ((uint8_t)s[k] & 0xC0) == 0x80) --k;  // start of the last character
        size_t n;
        if (!uni::is_whitespace(uni::next_char(s, k, &n)) || k + n != e) break;
        e = k;
      }
    }
    s = s.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

// Removes combining marks (category Mn), as tokenizers' StripAccents (usually after NFD).
class StripAccents final : public Normalizer {
 public:
  void normalize(std::string& s) const override {
    if (is_ascii(s)) return;
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
      size_t n;
      const uint32_t cp = uni::next_char(s, i, &n);
      if (!(cp <= 0x10FFFF && utf8proc_category((utf8proc_int32_t)cp) == UTF8PROC_CATEGORY_MN)) out.append(s, i, n);
      i += n;
    }
    s.swap(out);
  }
};

class Sequence final : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  void normalize(std::string& s) const override {
    for (const auto& p : parts_) p->normalize(s);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = component_type(j, "normalizer");
  if (type == "NFC") return std::make_unique<UnicodeForm>(UTF8PROC_STABLE | UTF8PROC_COMPOSE);
  if (type == "NFD") return std::make_unique<UnicodeForm>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE);
  if (type == "NFKC") return std::make_unique<UnicodeForm>(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
  if (type == "NFKD") return std::make_unique<UnicodeForm>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "Replace") return std::make_unique<Replace>(j);
  if (type == "Prepend") return std::make_unique<Prepend>(j);
  if (type == "Strip") return std::make_unique<Strip>(j);
  if (type == "StripAccents") return std::make_unique<StripAccents>();
  if (type == "Sequence") {
    const auto it = j.find("normalizers");
    EV_CHECK(it != j.end() && it->is_array(), "tokenizer.json: Sequence normalizer has no 'normalizers' list");
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const json& p : *it)
      if (auto n = make_normalizer(p)) parts.push_back(std::move(n));
    return std::make_unique<Sequence>(std::move(parts));
  }
  fail("tokenizer.json: unsupported normalizer type '", type, "'");
}

}  // namespace edgevl::text::hf
