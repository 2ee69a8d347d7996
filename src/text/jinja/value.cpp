// Python semantics of the template values: truthiness, equality, ordering, str(), repr() and
// json.dumps() as transformers' `tojson` filter calls it.
#include "text/jinja/value.h"
#include "text/tokenizer.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "core/error.h"

namespace edgevl::text::jinja {

bool Value::truthy() const {
  switch (kind_) {
    case Kind::Undefined:
    case Kind::None: return false;
    case Kind::Bool: return b_;
    case Kind::Int: return i_ != 0;
    case Kind::Float: return f_ != 0.0;
    case Kind::String: return !s_.empty();
    case Kind::List: return !l_->items.empty();
    case Kind::Dict: return !d_->items.empty();
    default: return true;
  }
}

const char* Value::type_name() const {
  switch (kind_) {
    case Kind::Undefined: return "Undefined";
    case Kind::None: return "NoneType";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::List: return l_->tuple ? "tuple" : "list";
    case Kind::Dict: return "dict";
    case Kind::Namespace: return "Namespace";
    case Kind::Function: return "function";
    case Kind::Loop: return "LoopContext";
  }
  return "?";
}

const Value* Dict::find(const Value& key) const {
  for (const auto& kv : items)
    if (equals(kv.first, key)) return &kv.second;
  return nullptr;
}

const Value* Dict::find(std::string_view key) const {
  for (const auto& kv : items)
    if (kv.first.is_string() && kv.first.str() == key) return &kv.second;
  return nullptr;
}

void Dict::set(const Value& key, Value value) {
  for (auto& kv : items)
    if (equals(kv.first, key)) {
      kv.second = std::move(value);
      return;
    }
  items.emplace_back(key, std::move(value));
}

static void check_depth(int depth) {
  if (depth > kMaxDepth) fail("jinja: value nested deeper than ", kMaxDepth, " levels");
}

bool equals(const Value& a, const Value& b, int depth) {
  check_depth(depth);
  using K = Value::Kind;
  if (a.is_numeric() && b.is_numeric()) {
    if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) {
    // Namespaces and dicts are different types; so are lists and tuples in Python.
    return false;
  }
  switch (a.kind()) {
    case K::Undefined:
    case K::None: return true;
    case K::String: return a.str() == b.str();
    case K::List: {
      const auto& x = a.list();
      const auto& y = b.list();
      if (&x == &y) return true;
      if (x.tuple != y.tuple || x.items.size() != y.items.size()) return false;
      for (size_t i = 0; i < x.items.size(); ++i)
        if (!equals(x.items[i], y.items[i], depth + 1)) return false;
      return true;
    }
    case K::Dict: {
      const auto& x = a.dict();
      const auto& y = b.dict();
      if (&x == &y) return true;
      if (x.items.size() != y.items.size()) return false;
      for (const auto& kv : x.items) {
        const Value* o = y.find(kv.first);
        if (!o || !equals(kv.second, *o, depth + 1)) return false;
      }
      return true;
    }
    case K::Namespace: return &a.dict() == &b.dict();
    case K::Function: return &a.fn() == &b.fn();
    case K::Loop: return &a.loop_state() == &b.loop_state();
    default: return false;
  }
}

int compare(const Value& a, const Value& b, int depth) {
  check_depth(depth);
  if (a.is_numeric() && b.is_numeric()) {
    if (a.is_float() || b.is_float()) {
      double x = a.as_double(), y = b.as_double();
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    int64_t x = a.as_int(), y = b.as_int();
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is_string() && b.is_string()) {
    // Byte order of UTF-8 is code point order, as Python compares str.
    int c = a.str().compare(b.str());
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_list() && b.is_list() && a.list().tuple == b.list().tuple) {
    const auto& x = a.list().items;
    const auto& y = b.list().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (equals(x[i], y[i], depth + 1)) continue;
      return compare(x[i], y[i], depth + 1);
    }
    return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
  }
  fail("jinja: '<' not supported between instances of '", a.type_name(), "' and '", b.type_name(), "'");
}

std::string py_float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string s(buf, r.ptr);
  std::string out;
  if (s[0] == '-') {
    out = "-";
    s.erase(0, 1);
  }
  size_t e = s.find('e');
  int exp = std::atoi(s.c_str() + e + 1);
  std::string digits;
  for (size_t i = 0; i < e; ++i)
    if (s[i] != '.') digits += s[i];
  // Python's repr: fixed notation for 1e-4 <= |d| < 1e16, scientific otherwise.
  if (exp >= -4 && exp < 16) {
    int point = exp + 1;
    if (point <= 0) {
      out += "0." + std::string(-point, '0') + digits;
    } else if (point >= (int)digits.size()) {
      out += digits + std::string(point - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, point) + "." + digits.substr(point);
    }
  } else {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof(eb), "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += eb;
  }
  return out;
}

static void repr_string(std::string& out, const std::string& s) {
  bool has_single = s.find('\'') != std::string::npos;
  bool has_double = s.find('"') != std::string::npos;
  char q = (has_single && !has_double) ? '"' : '\'';
  out += q;
  for (unsigned char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == (unsigned char)q) { out += '\\'; out += (char)c; }
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7f) {
      char b[8];
      std::snprintf(b, sizeof(b), "\\x%02x", c);
      out += b;
    } else {
      out += (char)c;
    }
  }
  out += q;
}

static void str_impl(std::string& out, const Value& v, bool as_repr, int depth) {
  check_depth(depth);
  using K = Value::Kind;
  switch (v.kind()) {
    case K::Undefined: return;
    case K::None: out += "None"; return;
    case K::Bool: out += v.as_bool() ? "True" : "False"; return;
    case K::Int: out += std::to_string(v.as_int()); return;
    case K::Float: out += py_float_repr(v.as_double()); return;
    case K::String:
      if (as_repr) repr_string(out, v.str());
      else out += v.str();
      return;
    case K::List: {
      const auto& l = v.list();
      out += l.tuple ? '(' : '[';
      for (size_t i = 0; i < l.items.size(); ++i) {
        if (i) out += ", ";
        str_impl(out, l.items[i], true, depth + 1);
      }
      if (l.tuple && l.items.size() == 1) out += ',';
      out += l.tuple ? ')' : ']';
      return;
    }
    case K::Dict:
    case K::Namespace: {
      if (v.is_namespace()) out += "<Namespace ";
      out += '{';
      bool first = true;
      for (const auto& kv : v.dict().items) {
        if (!first) out += ", ";
        first = false;
        str_impl(out, kv.first, true, depth + 1);
        out += ": ";
        str_impl(out, kv.second, true, depth + 1);
      }
      out += '}';
      if (v.is_namespace()) out += '>';
      return;
    }
    case K::Function: out += "<function " + v.fn().name + ">"; return;
    case K::Loop: out += "<LoopContext>"; return;
  }
}

std::string to_str(const Value& v) {
  if (v.is_string()) return v.str();
  std::string out;
  str_impl(out, v, false, 0);
  return out;
}

std::string repr(const Value& v) {
  std::string out;
  str_impl(out, v, true, 0);
  return out;
}

static void json_string(std::string& out, std::string_view s, bool ensure_ascii) {
  out += '"';
  for (size_t i = 0; i < s.size();) {
    unsigned char c = s[i];
    if (c == '"') out += "\\\"";
    else if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c == '\b') out += "\\b";
    else if (c == '\f') out += "\\f";
    else if (c < 0x20 || (ensure_ascii && c == 0x7f)) {
      char b[8];
      std::snprintf(b, sizeof(b), "\\u%04x", c);
      out += b;
    } else if (c >= 0x80 && ensure_ascii) {
      uint32_t cp;
      size_t n = utf8_next(s, i, &cp);
      auto esc = [&](uint32_t u) {
        char b[16];
        std::snprintf(b, sizeof(b), "\\u%04x", u);
        out += b;
      };
      if (cp >= 0x10000) {
        cp -= 0x10000;
        esc(0xD800 + (cp >> 10));
        esc(0xDC00 + (cp & 0x3FF));
      } else {
        esc(cp);
      }
      i = n;
      continue;
    } else {
      out += (char)c;
    }
    ++i;
  }
  out += '"';
}

static void json_impl(std::string& out, const Value& v, const JsonOptions& o, int level) {
  check_depth(level);
  using K = Value::Kind;
  const bool pretty = o.indent >= 0 || !o.indent_str.empty();
  const std::string item_sep = !o.item_sep.empty() ? o.item_sep : (pretty ? "," : ", ");
  const std::string key_sep = !o.key_sep.empty() ? o.key_sep : ": ";
  auto newline = [&](int lvl) {
    if (!pretty) return;
    out += '\n';
    for (int i = 0; i < lvl; ++i) {
      if (!o.indent_str.empty()) out += o.indent_str;
      else out.append((size_t)o.indent, ' ');
    }
  };
  switch (v.kind()) {
    case K::None: out += "null"; return;
    case K::Bool: out += v.as_bool() ? "true" : "false"; return;
    case K::Int: out += std::to_string(v.as_int()); return;
    case K::Float: {
      double d = v.as_double();
      if (std::isnan(d)) out += "NaN";
      else if (std::isinf(d)) out += d < 0 ? "-Infinity" : "Infinity";
      else out += py_float_repr(d);
      return;
    }
    case K::String: json_string(out, v.str(), o.ensure_ascii); return;
    case K::List: {
      const auto& items = v.list().items;
      if (items.empty()) { out += "[]"; return; }
      out += '[';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += item_sep;
        newline(level + 1);
        json_impl(out, items[i], o, level + 1);
      }
      newline(level);
      out += ']';
      return;
    }
    case K::Dict: {
      std::vector<const std::pair<Value, Value>*> items;
      for (const auto& kv : v.dict().items) items.push_back(&kv);
      if (items.empty()) { out += "{}"; return; }
      auto key_text = [](const Value& k) -> std::string {
        if (k.is_string()) return k.str();
        if (k.is_bool()) return k.as_bool() ? "true" : "false";
        if (k.is_none()) return "null";
        if (k.is_int()) return std::to_string(k.as_int());
        if (k.is_float()) return py_float_repr(k.as_double());
        fail("jinja: tojson: keys must be str, int, float, bool or None, not ", k.type_name());
      };
      if (o.sort_keys)
        std::stable_sort(items.begin(), items.end(),
                         [](auto* a, auto* b) { return compare(a->first, b->first) < 0; });
      out += '{';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += item_sep;
        newline(level + 1);
        json_string(out, key_text(items[i]->first), o.ensure_ascii);
        out += key_sep;
        json_impl(out, items[i]->second, o, level + 1);
      }
      newline(level);
      out += '}';
      return;
    }
    default:
      fail("jinja: tojson: Object of type ", v.type_name(), " is not JSON serializable");
  }
}

std::string to_json(const Value& v, const JsonOptions& opt) {
  std::string out;
  json_impl(out, v, opt, 0);
  return out;
}

// --- UTF-8 and case mapping -------------------------------------------------------------------

size_t utf8_next(std::string_view s, size_t pos, uint32_t* cp) {
  unsigned char c = s[pos];
  int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (n == 0 || pos + n > s.size()) {
    if (cp) *cp = 0xFFFD;
    return pos + 1;
  }
  uint32_t u = n == 1 ? c : (c & (0x7F >> n));
  for (int i = 1; i < n; ++i) {
    unsigned char d = s[pos + i];
    if ((d & 0xC0) != 0x80) {
      if (cp) *cp = 0xFFFD;
      return pos + 1;
    }
    u = (u << 6) | (d & 0x3F);
  }
  if (cp) *cp = u;
  return pos + n;
}

std::vector<size_t> utf8_offsets(std::string_view s) {
  std::vector<size_t> off;
  off.reserve(s.size() + 1);
  for (size_t i = 0; i < s.size(); i = utf8_next(s, i)) off.push_back(i);
  off.push_back(s.size());
  return off;
}

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); i = utf8_next(s, i)) ++n;
  return n;
}


bool py_isspace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// Simple case mappings for the scripts chat content mostly uses (Latin, Greek, Cyrillic,
// full-width Latin); other code points are left unchanged.
uint32_t cp_lower(uint32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  if ((c >= 0xC0 && c <= 0xDE && c != 0xD7)) return c + 32;
  if (c >= 0x100 && c <= 0x17F) {
    if (c == 0x130) return 'i';
    if (c == 0x178) return 0xFF;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c & 1) ? c + 1 : c;
    if (c == 0x131 || c == 0x138 || c == 0x149 || c == 0x17F) return c;
    return (c & 1) ? c : c + 1;
  }
  if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 32;
  if (c == 0x386) return 0x3AC;
  if (c >= 0x388 && c <= 0x38A) return c + 37;
  if (c == 0x38C) return 0x3CC;
  if (c == 0x38E || c == 0x38F) return c + 63;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  if ((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF)) return (c & 1) ? c : c + 1;
  if (c >= 0xFF21 && c <= 0xFF3A) return c + 32;
  return c;
}

uint32_t cp_upper(uint32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') ? c - 32 : c;
  if (c == 0xB5) return 0x39C;
  if ((c >= 0xE0 && c <= 0xFE && c != 0xF7)) return c - 32;
  if (c == 0xFF) return 0x178;
  if (c >= 0x100 && c <= 0x17F) {
    if (c == 0x131) return 'I';
    if (c == 0x17F) return 'S';
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c & 1) ? c : c - 1;
    if (c == 0x130 || c == 0x138 || c == 0x149 || c == 0x178) return c;
    return (c & 1) ? c - 1 : c;
  }
  if (c >= 0x3B1 && c <= 0x3CB && c != 0x3C2) return c - 32;
  if (c == 0x3C2) return 0x3A3;
  if (c == 0x3AC) return 0x386;
  if (c >= 0x3AD && c <= 0x3AF) return c - 37;
  if (c == 0x3CC) return 0x38C;
  if (c == 0x3CD || c == 0x3CE) return c - 63;
  if (c >= 0x430 && c <= 0x44F) return c - 32;
  if (c >= 0x450 && c <= 0x45F) return c - 80;
  if ((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF)) return (c & 1) ? c - 1 : c;
  if (c >= 0xFF41 && c <= 0xFF5A) return c - 32;
  return c;
}

static void append_upper(std::string& out, uint32_t cp, std::string_view raw) {
  if (cp == 0xDF) { out += "SS"; return; }  // Python's full mapping of U+00DF
  uint32_t u = cp_upper(cp);
  if (u == cp) out += raw;
  else utf8::append_codepoint(out, u);
}

static void append_lower(std::string& out, uint32_t cp, std::string_view raw) {
  uint32_t u = cp_lower(cp);
  if (u == cp) out += raw;
  else utf8::append_codepoint(out, u);
}

std::string str_upper(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    uint32_t cp;
    size_t n = utf8_next(s, i, &cp);
    append_upper(out, cp, s.substr(i, n - i));
    i = n;
  }
  return out;
}

std::string str_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    uint32_t cp;
    size_t n = utf8_next(s, i, &cp);
    append_lower(out, cp, s.substr(i, n - i));
    i = n;
  }
  return out;
}

std::string str_capitalize(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    uint32_t cp;
    size_t n = utf8_next(s, i, &cp);
    if (i == 0) append_upper(out, cp, s.substr(i, n - i));
    else append_lower(out, cp, s.substr(i, n - i));
    i = n;
  }
  return out;
}

std::string str_title(std::string_view s) {
  std::string out;
  bool prev_cased = false;
  for (size_t i = 0; i < s.size();) {
    uint32_t cp;
    size_t n = utf8_next(s, i, &cp);
    bool cased = cp_upper(cp) != cp || cp_lower(cp) != cp || cp == 0xDF;
    if (cased && !prev_cased) append_upper(out, cp, s.substr(i, n - i));
    else if (cased) append_lower(out, cp, s.substr(i, n - i));
    else out += s.substr(i, n - i);
    prev_cased = cased;
    i = n;
  }
  return out;
}

}  // namespace edgevl::text::jinja
