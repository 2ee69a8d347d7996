#include "text/jinja/lexer.h"
#include "text/tokenizer.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "text/jinja/value.h"

namespace edgevl::text::jinja {
namespace {

bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

// Python's str.rstrip() / lstrip() (Unicode whitespace).
std::string_view rstrip_ws(std::string_view s) {
  size_t end = 0;
  for (size_t i = 0; i < s.size();) {
    uint32_t cp;
    size_t n = utf8_next(s, i, &cp);
    if (!py_isspace(cp)) end = n;
    i = n;
  }
  return s.substr(0, end);
}

size_t skip_ws(std::string_view s, size_t pos) {
  while (pos < s.size()) {
    uint32_t cp;
    size_t n = utf8_next(s, pos, &cp);
    if (!py_isspace(cp)) break;
    pos = n;
  }
  return pos;
}

// Only whitespace (and at least one character) from `from` to the end of `s`.
bool all_ws_from(std::string_view s, size_t from) {
  return from < s.size() && skip_ws(s, from) == s.size();
}

const char* const kOps[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "/", "*", "%", "~", "[", "]",
                            "(", ")", "{", "}", "<", ">", "=", ".", ":", "|", ",", ";"};

class Lexer {
 public:
  explicit Lexer(std::string src) : s_(std::move(src)) {}

  std::vector<Token> run() {
    const size_t n = s_.size();
    while (pos_ < n) {
      size_t t = find_tag(pos_);
      std::string_view text(s_.data() + pos_, t - pos_);
      if (t == n) {
        emit_text(text, pos_);
        break;
      }
      char kind = s_[t + 1];
      char mod = t + 2 < n ? s_[t + 2] : 0;
      if (mod != '-' && mod != '+') mod = 0;
      if (mod == '-') {
        text = rstrip_ws(text);
      } else if (mod != '+' && kind != '{') {
        // lstrip_blocks: drop the whitespace between the line start and a block/comment tag.
        size_t l_pos = text.rfind('\n');
        l_pos = l_pos == std::string_view::npos ? 0 : l_pos + 1;
        if ((l_pos > 0 || line_starting_) && all_ws_from(text, l_pos)) text = text.substr(0, l_pos);
      }
      emit_text(text, pos_);
      size_t p = t + 2 + (mod ? 1 : 0);
      if (kind == '#') {
        comment(t, p);
      } else if (kind == '%' && raw_begin(p)) {
        raw(t);
      } else {
        tag(kind, t, p);
      }
    }
    out_.push_back(Token{Token::Eof, "", 0, 0, line_at(n)});
    return std::move(out_);
  }

 private:
  int line_at(size_t p) {
    while (line_pos_ < p && line_pos_ < s_.size()) {
      if (s_[line_pos_] == '\n') ++line_;
      ++line_pos_;
    }
    return line_;
  }

  size_t find_tag(size_t from) const {
    for (size_t i = s_.find('{', from); i != std::string::npos; i = s_.find('{', i + 1)) {
      if (i + 1 < s_.size() && (s_[i + 1] == '{' || s_[i + 1] == '%' || s_[i + 1] == '#')) return i;
    }
    return s_.size();
  }

  void emit_text(std::string_view text, size_t at) {
    if (text.empty()) return;
    out_.push_back(Token{Token::Text, std::string(text), 0, 0, line_at(at)});
  }

  // After a tag end at `after` (one past `}`): apply `-` (strip all whitespace), `+` (keep) or
  // trim_blocks (drop one newline, for block and comment tags only).
  void finish_tag(size_t after, char mod, bool trim) {
    if (mod == '-') after = skip_ws(s_, after);
    else if (mod != '+' && trim && after < s_.size() && s_[after] == '\n') ++after;
    line_starting_ = after > 0 && s_[after - 1] == '\n';
    pos_ = after;
  }

  void comment(size_t start, size_t p) {
    size_t end = s_.find("#}", p);
    if (end == std::string::npos) fail("jinja: line ", line_at(start), ": unclosed comment");
    char mod = (end > p && (s_[end - 1] == '-' || s_[end - 1] == '+')) ? s_[end - 1] : 0;
    finish_tag(end + 2, mod, true);
  }

  // `{%[-+] raw [-]%}` starting with the tag body at p?
  bool raw_begin(size_t p) const {
    size_t q = p;
    while (q < s_.size() && is_ascii_space(s_[q])) ++q;
    if (s_.compare(q, 3, "raw") != 0) return false;
    q += 3;
    if (q < s_.size() && is_name_char(s_[q])) return false;
    while (q < s_.size() && is_ascii_space(s_[q])) ++q;
    return s_.compare(q, 2, "%}") == 0 || s_.compare(q, 3, "-%}") == 0;
  }

  void raw(size_t start) {
    // Past the begin tag; `{% raw -%}` strips following whitespace, `{% raw %}` keeps the newline.
    size_t q = s_.find("%}", start + 2);
    bool minus = s_[q - 1] == '-';
    size_t body = q + 2;
    if (minus) body = skip_ws(s_, body);
    bool body_line_starting = body > 0 && s_[body - 1] == '\n';
    // Find `{%[-+] endraw [-+]%}`.
    for (size_t i = s_.find("{%", body); i != std::string::npos; i = s_.find("{%", i + 1)) {
      size_t k = i + 2;
      char mod = (k < s_.size() && (s_[k] == '-' || s_[k] == '+')) ? s_[k++] : 0;
      while (k < s_.size() && is_ascii_space(s_[k])) ++k;
      if (s_.compare(k, 6, "endraw") != 0) continue;
      k += 6;
      while (k < s_.size() && is_ascii_space(s_[k])) ++k;
      char end_mod = 0;
      if (k < s_.size() && (s_[k] == '-' || s_[k] == '+')) end_mod = s_[k++];
      if (s_.compare(k, 2, "%}") != 0) continue;
      std::string_view text(s_.data() + body, i - body);
      if (mod == '-') {
        text = rstrip_ws(text);
      } else if (mod != '+') {
        size_t l_pos = text.rfind('\n');
        l_pos = l_pos == std::string_view::npos ? 0 : l_pos + 1;
        if ((l_pos > 0 || body_line_starting) && all_ws_from(text, l_pos)) text = text.substr(0, l_pos);
      }
      emit_text(text, body);
      finish_tag(k + 2, end_mod, true);
      return;
    }
    fail("jinja: line ", line_at(start), ": missing {% endraw %}");
  }

  void tag(char kind, size_t start, size_t p) {
    const bool block = kind == '%';
    const int line = line_at(start);
    out_.push_back(Token{block ? Token::BlockBegin : Token::VarBegin, "", 0, 0, line});
    std::vector<char> braces;
    size_t i = p;
    const size_t n = s_.size();
    while (true) {
      while (i < n && is_ascii_space(s_[i])) ++i;
      if (i >= n) fail("jinja: line ", line, ": unclosed ", block ? "'{%'" : "'{{'", " tag");
      if (braces.empty()) {
        const char* close = block ? "%}" : "}}";
        char mod = 0;
        size_t at = i;
        if ((s_[i] == '-' || (block && s_[i] == '+')) && s_.compare(i + 1, 2, close) == 0) {
          mod = s_[i];
          at = i + 1;
        }
        if (s_.compare(at, 2, close) == 0) {
          out_.push_back(Token{block ? Token::BlockEnd : Token::VarEnd, "", 0, 0, line_at(i)});
          finish_tag(at + 2, mod, block);
          return;
        }
      }
      const char c = s_[i];
      const bool after_dot = !out_.empty() && out_.back().type == Token::Op && out_.back().value == ".";
      if (is_digit(c)) {
        i = number(i, after_dot);
      } else if (is_name_start(c) || (unsigned char)c >= 0x80) {
        size_t j = i;
        while (j < n && (is_name_char(s_[j]) || (unsigned char)s_[j] >= 0x80)) ++j;
        out_.push_back(Token{Token::Name, s_.substr(i, j - i), 0, 0, line_at(i)});
        i = j;
      } else if (c == '\'' || c == '"') {
        i = string(i);
      } else {
        const char* op = nullptr;
        for (const char* o : kOps)
          if (s_.compare(i, std::strlen(o), o) == 0) {
            op = o;
            break;
          }
        if (!op) fail("jinja: line ", line_at(i), ": unexpected character '", std::string(1, c), "'");
        std::string o(op);
        if (o == "(" || o == "[" || o == "{") {
          braces.push_back(o[0]);
        } else if (o == ")" || o == "]" || o == "}") {
          char want = o == ")" ? '(' : (o == "]" ? '[' : '{');
          if (braces.empty() || braces.back() != want)
            fail("jinja: line ", line_at(i), ": unexpected '", o, "'");
          braces.pop_back();
        }
        out_.push_back(Token{Token::Op, o, 0, 0, line_at(i)});
        i += o.size();
      }
    }
  }

  size_t number(size_t i, bool after_dot) {
    const size_t n = s_.size();
    auto digits = [&](size_t j) {
      while (j < n && (is_digit(s_[j]) || (s_[j] == '_' && j + 1 < n && is_digit(s_[j + 1])))) ++j;
      return j;
    };
    size_t j = digits(i);
    bool is_float = false;
    if (!after_dot) {
      if (j + 1 < n && s_[j] == '.' && is_digit(s_[j + 1])) {
        j = digits(j + 1);
        is_float = true;
      }
      if (j < n && (s_[j] == 'e' || s_[j] == 'E')) {
        size_t k = j + 1;
        if (k < n && (s_[k] == '+' || s_[k] == '-')) ++k;
        if (k < n && is_digit(s_[k])) {
          j = digits(k);
          is_float = true;
        }
      }
    }
    std::string text;
    for (size_t k = i; k < j; ++k)
      if (s_[k] != '_') text += s_[k];
    Token t{is_float ? Token::Float : Token::Int, text, 0, 0, line_at(i)};
    if (is_float) {
      t.fval = std::strtod(text.c_str(), nullptr);
    } else {
      errno = 0;
      t.ival = std::strtoll(text.c_str(), nullptr, 10);
      if (errno == ERANGE) fail("jinja: line ", t.line, ": integer literal out of range");
    }
    out_.push_back(std::move(t));
    return j;
  }

  static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // A quoted string with Python's backslash escapes (jinja2 decodes them with "unicode-escape").
  size_t string(size_t i) {
    const char q = s_[i];
    const int line = line_at(i);
    std::string v;
    size_t j = i + 1;
    const size_t n = s_.size();
    while (true) {
      if (j >= n) fail("jinja: line ", line, ": unterminated string literal");
      char c = s_[j];
      if (c == q) break;
      if (c != '\\') {
        v += c;
        ++j;
        continue;
      }
      if (j + 1 >= n) fail("jinja: line ", line, ": unterminated string literal");
      char e = s_[j + 1];
      j += 2;
      switch (e) {
        case '\n': break;
        case '\\': v += '\\'; break;
        case '\'': v += '\''; break;
        case '"': v += '"'; break;
        case 'a': v += '\a'; break;
        case 'b': v += '\b'; break;
        case 'f': v += '\f'; break;
        case 'n': v += '\n'; break;
        case 'r': v += '\r'; break;
        case 't': v += '\t'; break;
        case 'v': v += '\v'; break;
        case 'x':
        case 'u':
        case 'U': {
          int len = e == 'x' ? 2 : (e == 'u' ? 4 : 8);
          uint32_t cp = 0;
          for (int k = 0; k < len; ++k) {
            int h = j < n ? hexval(s_[j]) : -1;
            if (h < 0) fail("jinja: line ", line, ": truncated \\", std::string(1, e), " escape in string");
            cp = cp * 16 + h;
            ++j;
          }
          if (cp > 0x10FFFF) fail("jinja: line ", line, ": invalid \\U escape in string");
          utf8::append_codepoint(v, cp);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            uint32_t cp = e - '0';
            for (int k = 0; k < 2 && j < n && s_[j] >= '0' && s_[j] <= '7'; ++k) cp = cp * 8 + (s_[j++] - '0');
            utf8::append_codepoint(v, cp);
          } else {
            v += '\\';
            v += e;
          }
      }
    }
    out_.push_back(Token{Token::String, std::move(v), 0, 0, line});
    return j + 1;
  }

  std::string s_;
  size_t pos_ = 0;
  size_t line_pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
  std::vector<Token> out_;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source) {
  // Newlines are normalized and one trailing newline is dropped (keep_trailing_newline=False).
  std::string s;
  s.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      s += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      s += source[i];
    }
  }
  if (!s.empty() && s.back() == '\n') s.pop_back();
  return Lexer(std::move(s)).run();
}

}  // namespace edgevl::text::jinja
