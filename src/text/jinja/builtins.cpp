// Filters and tests (jinja2/filters.py, jinja2/tests.py), the str / dict / list methods templates
// call, and the globals transformers provides (raise_exception, strftime_now) plus Jinja2's
// (range, namespace, dict). transformers replaces `tojson` with json.dumps(ensure_ascii=False,
// sort_keys=False), which is what `tojson` does here.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <ctime>
#include <map>

#include "text/jinja/interp.h"
#include "text/jinja/parser.h"

namespace edgevl::text::jinja {
namespace {

// Binds positional and keyword arguments to parameter names, as Python does.
class Params {
 public:
  Params(const char* fn, const CallArgs& a, std::initializer_list<const char*> names) : names_(names) {
    if (a.pos.size() > names_.size()) fail(fn, "() takes at most ", names_.size(), " argument(s)");
    vals_.resize(names_.size());
    for (size_t i = 0; i < a.pos.size(); ++i) vals_[i] = a.pos[i];
    for (const auto& kv : a.kw) {
      size_t i = 0;
      while (i < names_.size() && kv.first != names_[i]) ++i;
      if (i == names_.size()) fail(fn, "() got an unexpected keyword argument '", kv.first, "'");
      if (i < a.pos.size()) fail(fn, "() got multiple values for argument '", kv.first, "'");
      vals_[i] = kv.second;
    }
  }
  const Value& operator[](size_t i) const { return vals_[i]; }
  bool has(size_t i) const { return !vals_[i].is_undefined(); }
  bool flag(size_t i) const { return vals_[i].truthy(); }
  std::string str(size_t i, const char* fn) const {
    if (!vals_[i].is_string()) fail(fn, "(): argument '", names_[i], "' must be a string, not ", vals_[i].type_name());
    return vals_[i].str();
  }
  int64_t integer(size_t i, int64_t def, const char* fn) const {
    if (!has(i) || vals_[i].is_none()) return def;
    if (!vals_[i].is_integral()) fail(fn, "(): argument '", names_[i], "' must be an integer, not ", vals_[i].type_name());
    return vals_[i].as_int();
  }

 private:
  std::vector<const char*> names_;
  std::vector<Value> vals_;
};

std::string need_str(const Value& v, const char* fn) {
  if (!v.is_string()) fail(fn, ": expected a string, got ", v.type_name());
  return v.str();
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) { return s.size() >= p.size() && s.substr(s.size() - p.size()) == p; }

// Python str.strip / lstrip / rstrip; `chars` null means whitespace.
std::string py_strip(std::string_view s, const std::string* chars, bool left, bool right) {
  std::vector<size_t> off = utf8_offsets(s);
  size_t n = off.size() - 1;
  auto strippable = [&](size_t i) {
    std::string_view c = s.substr(off[i], off[i + 1] - off[i]);
    if (!chars) {
      uint32_t cp;
      utf8_next(s, off[i], &cp);
      return py_isspace(cp);
    }
    // `chars` is a set of characters.
    for (size_t j = 0; j < chars->size();) {
      size_t k = utf8_next(*chars, j);
      if (std::string_view(*chars).substr(j, k - j) == c) return true;
      j = k;
    }
    return false;
  };
  size_t b = 0, e = n;
  if (left)
    while (b < e && strippable(b)) ++b;
  if (right)
    while (e > b && strippable(e - 1)) --e;
  return std::string(s.substr(off[b], off[e] - off[b]));
}

std::string py_replace(Interp& in, std::string_view s, std::string_view old, std::string_view rep, int64_t count,
                       size_t limit) {
  std::string out;
  if (count < 0) count = INT64_MAX;
  auto grow = [&](std::string_view x) {
    if (out.size() + x.size() > limit) fail("replace: result longer than ", limit, " bytes");
    out += x;
  };
  if (old.empty()) {
    // Inserted before every character and at the end.
    int64_t done = 0;
    size_t i = 0;
    while (i < s.size()) {
      if (done < count) {
        grow(rep);
        ++done;
      }
      size_t n = utf8_next(s, i);
      grow(s.substr(i, n - i));
      i = n;
    }
    if (done < count) grow(rep);
    in.charge(out.size());
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (done < count) {
    size_t f = s.find(old, pos);
    if (f == std::string_view::npos) break;
    grow(s.substr(pos, f - pos));
    grow(rep);
    pos = f + old.size();
    ++done;
  }
  grow(s.substr(pos));
  in.charge(out.size());
  return out;
}

// Python str.split / rsplit.
std::vector<std::string> py_split(std::string_view s, const Value& sep, int64_t maxsplit, bool from_right) {
  std::vector<std::string> parts;
  if (maxsplit < 0) maxsplit = INT64_MAX;
  if (sep.is_none() || sep.is_undefined()) {
    // Runs of whitespace; leading/trailing whitespace ignored.
    std::vector<std::pair<size_t, size_t>> words;  // byte ranges
    size_t i = 0;
    std::vector<size_t> off = utf8_offsets(s);
    std::vector<bool> ws(off.size() - 1);
    for (size_t k = 0; k + 1 < off.size(); ++k) {
      uint32_t cp;
      utf8_next(s, off[k], &cp);
      ws[k] = py_isspace(cp);
    }
    const size_t n = ws.size();
    if (!from_right) {
      int64_t splits = 0;
      i = 0;
      while (i < n) {
        while (i < n && ws[i]) ++i;
        if (i >= n) break;
        if (splits == maxsplit) {
          size_t e = n;
          while (e > i && ws[e - 1]) --e;
          parts.emplace_back(s.substr(off[i], off[e] - off[i]));
          break;
        }
        size_t j = i;
        while (j < n && !ws[j]) ++j;
        parts.emplace_back(s.substr(off[i], off[j] - off[i]));
        ++splits;
        i = j;
      }
    } else {
      int64_t splits = 0;
      size_t e = n;
      while (e > 0) {
        while (e > 0 && ws[e - 1]) --e;
        if (e == 0) break;
        if (splits == maxsplit) {
          size_t b = 0;
          while (b < e && ws[b]) ++b;
          parts.emplace_back(s.substr(off[b], off[e] - off[b]));
          break;
        }
        size_t b = e;
        while (b > 0 && !ws[b - 1]) --b;
        parts.emplace_back(s.substr(off[b], off[e] - off[b]));
        ++splits;
        e = b;
      }
      std::reverse(parts.begin(), parts.end());
    }
    return parts;
  }
  std::string d = need_str(sep, "split");
  if (d.empty()) fail("split: empty separator");
  if (!from_right) {
    size_t pos = 0;
    int64_t splits = 0;
    while (splits < maxsplit) {
      size_t f = s.find(d, pos);
      if (f == std::string_view::npos) break;
      parts.emplace_back(s.substr(pos, f - pos));
      pos = f + d.size();
      ++splits;
    }
    parts.emplace_back(s.substr(pos));
  } else {
    size_t end = s.size();
    int64_t splits = 0;
    while (splits < maxsplit && end >= d.size()) {
      size_t f = s.rfind(d, end - d.size());
      if (f == std::string_view::npos) break;
      parts.emplace_back(s.substr(f + d.size(), end - f - d.size()));
      end = f;
      ++splits;
    }
    parts.emplace_back(s.substr(0, end));
    std::reverse(parts.begin(), parts.end());
  }
  return parts;
}

// Python str.splitlines() (keepends=False).
std::vector<std::string> py_splitlines(std::string_view s) {
  std::vector<std::string> lines;
  size_t start = 0, i = 0;
  while (i < s.size()) {
    uint32_t cp;
    size_t n = utf8_next(s, i, &cp);
    bool br = cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || cp == 0x1C || cp == 0x1D || cp == 0x1E ||
              cp == 0x85 || cp == 0x2028 || cp == 0x2029;
    if (br) {
      lines.emplace_back(s.substr(start, i - start));
      if (cp == '\r' && n < s.size() && s[n] == '\n') ++n;
      start = n;
    }
    i = n;
  }
  if (start < s.size()) lines.emplace_back(s.substr(start));
  return lines;
}

size_t cp_index(std::string_view s, size_t byte_pos) { return utf8_length(s.substr(0, byte_pos)); }

// `{}`, `{0}`, `{name}` of str.format; format specs after ':' are not supported.
std::string py_format(std::string_view fmt, const CallArgs& a) {
  std::string out;
  size_t auto_idx = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    char c = fmt[i];
    if (c == '{') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
        out += '{';
        ++i;
        continue;
      }
      size_t e = fmt.find('}', i);
      if (e == std::string_view::npos) fail("format: single '{' encountered in format string");
      std::string field(fmt.substr(i + 1, e - i - 1));
      if (field.find_first_of(":!") != std::string::npos) fail("format: format specs are not supported");
      const Value* v = nullptr;
      if (field.empty()) {
        if (auto_idx >= a.pos.size()) fail("format: replacement index ", auto_idx, " out of range");
        v = &a.pos[auto_idx++];
      } else if (std::all_of(field.begin(), field.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
        size_t k = std::stoul(field);
        if (k >= a.pos.size()) fail("format: replacement index ", k, " out of range");
        v = &a.pos[k];
      } else {
        for (const auto& kv : a.kw)
          if (kv.first == field) v = &kv.second;
        if (!v) fail("format: missing key '", field, "'");
      }
      out += to_str(*v);
      i = e;
    } else if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') ++i;
      else fail("format: single '}' encountered in format string");
      out += '}';
    } else {
      out += c;
    }
  }
  return out;
}

// printf-style `fmt % args` (the `format` filter): %s %r %d %i %f %%.
std::string printf_format(std::string_view fmt, const std::vector<Value>& args) {
  std::string out;
  size_t k = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out += fmt[i];
      continue;
    }
    if (++i >= fmt.size()) fail("format: incomplete format");
    char c = fmt[i];
    if (c == '%') {
      out += '%';
      continue;
    }
    if (k >= args.size()) fail("format: not enough arguments for format string");
    const Value& v = args[k++];
    if (c == 's') out += to_str(v);
    else if (c == 'r') out += repr(v);
    else if (c == 'd' || c == 'i') {
      if (!v.is_numeric()) fail("format: %", c, " requires a number, not ", v.type_name());
      out += std::to_string(v.is_float() ? (int64_t)v.as_double() : v.as_int());
    } else if (c == 'f') {
      if (!v.is_numeric()) fail("format: %f requires a number, not ", v.type_name());
      char b[64];
      std::snprintf(b, sizeof(b), "%f", v.as_double());
      out += b;
    } else {
      fail("format: unsupported format character '", std::string(1, c), "'");
    }
  }
  if (k < args.size()) fail("format: not all arguments converted during string formatting");
  return out;
}

// Jinja2's make_attrgetter: "a.b.0" looked up with getitem part by part.
Value attr_path(Interp& in, const Value& item, const std::string& path) {
  Value v = item;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (v.is_undefined()) return v;
    v = in.getitem(v, digits ? Value::integer(std::stoll(part)) : Value::string(part));
    if (dot == std::string::npos) return v;
    start = dot + 1;
  }
}

Value sort_key(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value::string(str_lower(v.str()));
  return v;
}

using FilterFn = Value (*)(Interp&, const Value&, CallArgs&);
using TestFn = bool (*)(Interp&, const Value&, CallArgs&);

Value f_trim(Interp& in, const Value& v, CallArgs& a) {
  Params p("trim", a, {"chars"});
  std::string chars;
  bool has = p.has(0) && !p[0].is_none();
  if (has) chars = p.str(0, "trim");
  return in.make_string(py_strip(to_str(v), has ? &chars : nullptr, true, true));
}

Value f_length(Interp&, const Value& v, CallArgs& a) {
  Params p("length", a, {});
  switch (v.kind()) {
    case Value::Kind::Undefined: return Value::integer(0);
    case Value::Kind::String: return Value::integer((int64_t)utf8_length(v.str()));
    case Value::Kind::List: return Value::integer((int64_t)v.list().items.size());
    case Value::Kind::Dict: return Value::integer((int64_t)v.dict().items.size());
    default: fail("object of type '", v.type_name(), "' has no len()");
  }
}

Value f_tojson(Interp& in, const Value& v, CallArgs& a) {
  Params p("tojson", a, {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonOptions o;
  o.ensure_ascii = p.flag(0);
  if (p.has(1) && !p[1].is_none()) {
    if (p[1].is_string()) o.indent_str = p[1].str();
    else o.indent = (int)std::clamp<int64_t>(p.integer(1, 0, "tojson"), 0, 1024);
  }
  if (p.has(2) && !p[2].is_none()) {
    std::vector<Value> seps = in.iterate(p[2]);
    if (seps.size() != 2 || !seps[0].is_string() || !seps[1].is_string())
      fail("tojson: separators must be a pair of strings");
    o.item_sep = seps[0].str();
    o.key_sep = seps[1].str();
  }
  o.sort_keys = p.flag(3);
  return in.make_string(to_json(v, o));
}

Value f_upper(Interp& in, const Value& v, CallArgs& a) {
  Params p("upper", a, {});
  return in.make_string(str_upper(to_str(v)));
}
Value f_lower(Interp& in, const Value& v, CallArgs& a) {
  Params p("lower", a, {});
  return in.make_string(str_lower(to_str(v)));
}
Value f_capitalize(Interp& in, const Value& v, CallArgs& a) {
  Params p("capitalize", a, {});
  return in.make_string(str_capitalize(to_str(v)));
}

// Jinja2's do_title: words start after whitespace, '-', '(', '{', '[' or '<'.
Value f_title(Interp& in, const Value& v, CallArgs& a) {
  Params p("title", a, {});
  std::string s = to_str(v), out;
  bool word_start = true;
  for (size_t i = 0; i < s.size();) {
    uint32_t cp;
    size_t n = utf8_next(s, i, &cp);
    bool sep = py_isspace(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<';
    std::string_view raw(s.data() + i, n - i);
    if (sep) out += raw;
    else if (word_start) out += str_upper(raw);
    else out += str_lower(raw);
    word_start = sep;
    i = n;
  }
  return in.make_string(std::move(out));
}

Value f_items(Interp& in, const Value& v, CallArgs& a) {
  Params p("items", a, {});
  if (v.is_undefined()) return in.make_list({});
  if (!v.is_dict()) fail("items: can only get item pairs from a mapping, not ", v.type_name());
  std::vector<Value> out;
  for (const auto& kv : v.dict().items) out.push_back(in.make_list({kv.first, kv.second}, true));
  return in.make_list(std::move(out));
}

Value f_first(Interp& in, const Value& v, CallArgs& a) {
  Params p("first", a, {});
  std::vector<Value> items = in.iterate(v);
  return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
}

Value f_last(Interp& in, const Value& v, CallArgs& a) {
  Params p("last", a, {});
  if (v.is_undefined()) in.undefined_error(v);
  std::vector<Value> items = in.iterate(v);
  return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
}

Value f_join(Interp& in, const Value& v, CallArgs& a) {
  Params p("join", a, {"d", "attribute"});
  std::string sep = p.has(0) ? to_str(p[0]) : "";
  std::string out;
  bool first = true;
  for (const Value& item : in.iterate(v)) {
    Value x = p.has(1) ? attr_path(in, item, to_str(p[1])) : item;
    if (!first) out += sep;
    first = false;
    out += to_str(x);
    if (out.size() > (64u << 20)) fail("join: result too long");
  }
  return in.make_string(std::move(out));
}

Value f_default(Interp&, const Value& v, CallArgs& a) {
  Params p("default", a, {"default_value", "boolean"});
  Value def = p.has(0) ? p[0] : Value::string("");
  if (v.is_undefined() || (p.flag(1) && !v.truthy())) return def;
  return v;
}

// select / reject / selectattr / rejectattr
Value select_impl(Interp& in, const Value& v, CallArgs& a, bool by_attr, bool keep) {
  std::vector<Value> out;
  std::string attr;
  size_t next = 0;
  if (by_attr) {
    if (a.pos.empty()) fail(keep ? "selectattr" : "rejectattr", ": missing attribute name");
    attr = to_str(a.pos[0]);
    next = 1;
  }
  std::string test;
  CallArgs targs;
  if (a.pos.size() > next) {
    test = to_str(a.pos[next]);
    if (!is_known_test(test)) fail("no test named '", test, "'");
    targs.pos.assign(a.pos.begin() + next + 1, a.pos.end());
    targs.kw = a.kw;
  }
  for (const Value& item : in.iterate(v)) {
    Value x = by_attr ? attr_path(in, item, attr) : item;
    CallArgs copy = targs;
    bool r = test.empty() ? x.truthy() : in.test(test, x, copy);
    if (r == keep) out.push_back(item);
  }
  return in.make_list(std::move(out));
}
Value f_selectattr(Interp& in, const Value& v, CallArgs& a) { return select_impl(in, v, a, true, true); }
Value f_rejectattr(Interp& in, const Value& v, CallArgs& a) { return select_impl(in, v, a, true, false); }
Value f_select(Interp& in, const Value& v, CallArgs& a) { return select_impl(in, v, a, false, true); }
Value f_reject(Interp& in, const Value& v, CallArgs& a) { return select_impl(in, v, a, false, false); }

Value f_map(Interp& in, const Value& v, CallArgs& a) {
  std::vector<Value> out;
  const Value* attribute = nullptr;
  const Value* def = nullptr;
  for (const auto& kv : a.kw) {
    if (kv.first == "attribute") attribute = &kv.second;
    else if (kv.first == "default") def = &kv.second;
  }
  if (attribute) {
    if (!a.pos.empty()) fail("map: attribute= takes no positional arguments");
    for (const auto& kv : a.kw)
      if (kv.first != "attribute" && kv.first != "default") fail("map: unexpected keyword argument '", kv.first, "'");
    std::string path = to_str(*attribute);
    for (const Value& item : in.iterate(v)) {
      Value x = attr_path(in, item, path);
      out.push_back(x.is_undefined() && def ? *def : x);
    }
    return in.make_list(std::move(out));
  }
  if (a.pos.empty()) fail("map: requires a filter name or attribute=");
  std::string name = to_str(a.pos[0]);
  if (!is_known_filter(name)) fail("no filter named '", name, "'");
  CallArgs fargs;
  fargs.pos.assign(a.pos.begin() + 1, a.pos.end());
  fargs.kw = a.kw;
  for (const Value& item : in.iterate(v)) {
    CallArgs copy = fargs;
    out.push_back(in.filter(name, item, copy));
  }
  return in.make_list(std::move(out));
}

Value f_list(Interp& in, const Value& v, CallArgs& a) {
  Params p("list", a, {});
  return in.make_list(in.iterate(v));
}

Value f_string(Interp& in, const Value& v, CallArgs& a) {
  Params p("string", a, {});
  return in.make_string(to_str(v));
}

Value f_int(Interp&, const Value& v, CallArgs& a) {
  Params p("int", a, {"default", "base"});
  Value def = p.has(0) ? p[0] : Value::integer(0);
  int base = (int)p.integer(1, 10, "int");
  if (v.is_integral()) return Value::integer(v.as_int());
  if (v.is_float()) {
    double d = v.as_double();
    if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return def;
    return Value::integer((int64_t)d);
  }
  if (v.is_string()) {
    std::string s = py_strip(v.str(), nullptr, true, true);
    s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
    if (s.empty()) return def;
    errno = 0;
    char* end = nullptr;
    long long x = std::strtoll(s.c_str(), &end, base);
    if (end && *end == 0 && errno == 0) return Value::integer(x);
    end = nullptr;
    double d = std::strtod(s.c_str(), &end);
    if (end && *end == 0 && std::isfinite(d) && std::fabs(d) < 9.2e18) return Value::integer((int64_t)d);
  }
  return def;
}

Value f_float(Interp&, const Value& v, CallArgs& a) {
  Params p("float", a, {"default"});
  Value def = p.has(0) ? p[0] : Value::number(0.0);
  if (v.is_numeric()) return Value::number(v.as_double());
  if (v.is_string()) {
    std::string s = py_strip(v.str(), nullptr, true, true);
    char* end = nullptr;
    double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && end && *end == 0) return Value::number(d);
  }
  return def;
}

Value f_abs(Interp&, const Value& v, CallArgs& a) {
  Params p("abs", a, {});
  if (v.is_float()) return Value::number(std::fabs(v.as_double()));
  if (v.is_integral()) {
    if (v.as_int() == INT64_MIN) fail("integer overflow");
    return Value::integer(std::llabs(v.as_int()));
  }
  fail("bad operand type for abs(): '", v.type_name(), "'");
}

Value f_replace(Interp& in, const Value& v, CallArgs& a) {
  Params p("replace", a, {"old", "new", "count"});
  return in.make_string(py_replace(in, to_str(v), to_str(p[0]), to_str(p[1]), p.integer(2, -1, "replace"), 64u << 20));
}

// Python's round(): half to even on the exact decimal value.
double py_round(double x, int64_t nd) {
  if (!std::isfinite(x)) return x;
  if (nd > 300 || nd < -300) return nd > 0 ? x : 0.0 * x;
  double p = std::pow(10.0, (double)nd);
  double y = x * p;
  double r = std::nearbyint(y);  // default rounding mode: half to even
  if (std::fabs(y - r) == 0.5) {
    // Decide ties on the exact value, as Python does via the decimal representation.
    long double exact = (long double)x * (long double)p;
    r = (double)std::nearbyintl(exact);
  }
  return r / p;
}

Value f_round(Interp&, const Value& v, CallArgs& a) {
  Params p("round", a, {"precision", "method"});
  int64_t prec = p.integer(0, 0, "round");
  std::string method = p.has(1) ? to_str(p[1]) : "common";
  if (!v.is_numeric()) fail("round: expected a number, got ", v.type_name());
  if (method == "common") {
    if (v.is_integral()) return Value::integer(v.as_int());
    return Value::number(py_round(v.as_double(), prec));
  }
  if (method != "ceil" && method != "floor") fail("round: method must be common, ceil or floor");
  double m = std::pow(10.0, (double)prec);
  double x = v.as_double() * m;
  return Value::number((method == "ceil" ? std::ceil(x) : std::floor(x)) / m);
}

Value f_unique(Interp& in, const Value& v, CallArgs& a) {
  Params p("unique", a, {"case_sensitive", "attribute"});
  std::vector<Value> out, seen;
  for (const Value& item : in.iterate(v)) {
    Value key = sort_key(p.has(1) ? attr_path(in, item, to_str(p[1])) : item, p.flag(0));
    bool dup = false;
    for (const auto& s : seen)
      if (equals(s, key)) dup = true;
    if (!dup) {
      seen.push_back(key);
      out.push_back(item);
    }
  }
  return in.make_list(std::move(out));
}

Value f_reverse(Interp& in, const Value& v, CallArgs& a) {
  Params p("reverse", a, {});
  if (v.is_string()) {
    std::vector<size_t> off = utf8_offsets(v.str());
    std::string out;
    for (size_t i = off.size() - 1; i > 0; --i) out.append(v.str(), off[i - 1], off[i] - off[i - 1]);
    return in.make_string(std::move(out));
  }
  std::vector<Value> items = in.iterate(v);
  std::reverse(items.begin(), items.end());
  return in.make_list(std::move(items));
}

Value f_sort(Interp& in, const Value& v, CallArgs& a) {
  Params p("sort", a, {"reverse", "case_sensitive", "attribute"});
  std::vector<Value> items = in.iterate(v);
  std::vector<std::pair<Value, size_t>> keyed;
  for (size_t i = 0; i < items.size(); ++i)
    keyed.emplace_back(sort_key(p.has(2) ? attr_path(in, items[i], to_str(p[2])) : items[i], p.flag(1)), i);
  bool rev = p.flag(0);
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return rev ? compare(y.first, x.first) < 0 : compare(x.first, y.first) < 0;
  });
  std::vector<Value> out;
  for (const auto& k : keyed) out.push_back(items[k.second]);
  return in.make_list(std::move(out));
}

Value f_dictsort(Interp& in, const Value& v, CallArgs& a) {
  Params p("dictsort", a, {"case_sensitive", "by", "reverse"});
  if (!v.is_dict()) fail("dictsort: expected a mapping, got ", v.type_name());
  std::string by = p.has(1) ? to_str(p[1]) : "key";
  if (by != "key" && by != "value") fail("dictsort: you can only sort by either 'key' or 'value'");
  auto items = v.dict().items;
  bool cs = p.flag(0), rev = p.flag(2);
  std::stable_sort(items.begin(), items.end(), [&](const auto& x, const auto& y) {
    const Value& kx = by == "key" ? x.first : x.second;
    const Value& ky = by == "key" ? y.first : y.second;
    int c = compare(sort_key(kx, cs), sort_key(ky, cs));
    return rev ? c > 0 : c < 0;
  });
  std::vector<Value> out;
  for (const auto& kv : items) out.push_back(in.make_list({kv.first, kv.second}, true));
  return in.make_list(std::move(out));
}

Value f_indent(Interp& in, const Value& v, CallArgs& a) {
  Params p("indent", a, {"width", "first", "blank"});
  std::string ind;
  if (p.has(0) && p[0].is_string()) ind = p[0].str();
  else ind.assign((size_t)std::clamp<int64_t>(p.integer(0, 4, "indent"), 0, 1 << 16), ' ');
  std::string s = to_str(v) + "\n";
  std::vector<std::string> lines = py_splitlines(s);
  std::string out;
  if (p.flag(2)) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i) out += "\n" + ind;
      out += lines[i];
      if (out.size() > (64u << 20)) fail("indent: result too long");
    }
  } else {
    out = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      out += "\n";
      if (!lines[i].empty()) out += ind;
      out += lines[i];
      if (out.size() > (64u << 20)) fail("indent: result too long");
    }
  }
  if (p.flag(1)) out = ind + out;
  return in.make_string(std::move(out));
}

Value f_safe(Interp&, const Value& v, CallArgs& a) {
  Params p("safe", a, {});
  return v;
}

Value f_escape(Interp& in, const Value& v, CallArgs& a) {
  Params p("escape", a, {});
  std::string s = to_str(v), out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return in.make_string(std::move(out));
}

Value f_format(Interp& in, const Value& v, CallArgs& a) {
  if (!a.kw.empty()) fail("format: keyword arguments are not supported");
  return in.make_string(printf_format(to_str(v), a.pos));
}

Value f_attr(Interp& in, const Value& v, CallArgs& a) {
  Params p("attr", a, {"name"});
  return in.getattr(v, to_str(p[0]));
}

Value minmax(Interp& in, const Value& v, CallArgs& a, bool want_max) {
  Params p(want_max ? "max" : "min", a, {"case_sensitive", "attribute"});
  std::vector<Value> items = in.iterate(v);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  auto key = [&](size_t i) { return sort_key(p.has(1) ? attr_path(in, items[i], to_str(p[1])) : items[i], p.flag(0)); };
  for (size_t i = 1; i < items.size(); ++i) {
    int c = compare(key(i), key(best));
    if (want_max ? c > 0 : c < 0) best = i;
  }
  return items[best];
}
Value f_max(Interp& in, const Value& v, CallArgs& a) { return minmax(in, v, a, true); }
Value f_min(Interp& in, const Value& v, CallArgs& a) { return minmax(in, v, a, false); }

Value f_sum(Interp& in, const Value& v, CallArgs& a) {
  Params p("sum", a, {"attribute", "start"});
  Value total = p.has(1) ? p[1] : Value::integer(0);
  for (const Value& item : in.iterate(v))
    total = in.binary("+", total, p.has(0) ? attr_path(in, item, to_str(p[0])) : item);
  return total;
}

Value f_wordcount(Interp&, const Value& v, CallArgs& a) {
  Params p("wordcount", a, {});
  std::string s = to_str(v);
  int64_t n = 0;
  bool in_word = false;
  for (size_t i = 0; i < s.size();) {
    uint32_t cp;
    size_t k = utf8_next(s, i, &cp);
    bool w = cp == '_' || (cp >= '0' && cp <= '9') || cp_lower(cp) != cp_upper(cp) || cp >= 0x80;
    if (w && !in_word) ++n;
    in_word = w;
    i = k;
  }
  return Value::integer(n);
}

Value f_center(Interp& in, const Value& v, CallArgs& a) {
  Params p("center", a, {"width"});
  std::string s = to_str(v);
  int64_t width = std::min<int64_t>(p.integer(0, 80, "center"), 1 << 20);
  int64_t len = (int64_t)utf8_length(s);
  if (width <= len) return in.make_string(s);
  int64_t marg = width - len;
  int64_t left = marg / 2 + (marg & width & 1);
  return in.make_string(std::string((size_t)left, ' ') + s + std::string((size_t)(marg - left), ' '));
}

Value f_batch(Interp& in, const Value& v, CallArgs& a) {
  Params p("batch", a, {"linecount", "fill_with"});
  int64_t n = p.integer(0, 1, "batch");
  if (n <= 0) fail("batch: linecount must be positive");
  std::vector<Value> out, cur;
  for (const Value& item : in.iterate(v)) {
    cur.push_back(item);
    if ((int64_t)cur.size() == n) {
      out.push_back(in.make_list(std::move(cur)));
      cur.clear();
    }
  }
  if (!cur.empty()) {
    if (p.has(1))
      while ((int64_t)cur.size() < n) cur.push_back(p[1]);
    out.push_back(in.make_list(std::move(cur)));
  }
  return in.make_list(std::move(out));
}

const std::map<std::string, FilterFn, std::less<>>& filters() {
  static const std::map<std::string, FilterFn, std::less<>> t = {
      {"abs", f_abs},          {"attr", f_attr},         {"batch", f_batch},       {"capitalize", f_capitalize},
      {"center", f_center},    {"count", f_length},      {"d", f_default},         {"default", f_default},
      {"dictsort", f_dictsort}, {"e", f_escape},         {"escape", f_escape},     {"first", f_first},
      {"float", f_float},      {"format", f_format},     {"indent", f_indent},     {"int", f_int},
      {"items", f_items},      {"join", f_join},         {"last", f_last},         {"length", f_length},
      {"list", f_list},        {"lower", f_lower},       {"map", f_map},           {"max", f_max},
      {"min", f_min},          {"reject", f_reject},     {"rejectattr", f_rejectattr}, {"replace", f_replace},
      {"reverse", f_reverse},  {"round", f_round},       {"safe", f_safe},         {"select", f_select},
      {"selectattr", f_selectattr}, {"sort", f_sort},    {"string", f_string},     {"sum", f_sum},
      {"title", f_title},      {"tojson", f_tojson},     {"trim", f_trim},         {"unique", f_unique},
      {"upper", f_upper},      {"wordcount", f_wordcount},
  };
  return t;
}

// ---- tests ----

void no_args(const char* name, const CallArgs& a) {
  if (!a.pos.empty() || !a.kw.empty()) fail("test '", name, "' takes no arguments");
}
const Value& one_arg(const char* name, const CallArgs& a) {
  Params p(name, a, {"other"});
  if (a.pos.size() + a.kw.size() != 1) fail("test '", name, "' takes one argument");
  return a.pos.empty() ? a.kw[0].second : a.pos[0];
}

bool t_defined(Interp&, const Value& v, CallArgs& a) { return no_args("defined", a), !v.is_undefined(); }
bool t_undefined(Interp&, const Value& v, CallArgs& a) { return no_args("undefined", a), v.is_undefined(); }
bool t_none(Interp&, const Value& v, CallArgs& a) { return no_args("none", a), v.is_none(); }
bool t_string(Interp&, const Value& v, CallArgs& a) { return no_args("string", a), v.is_string(); }
bool t_number(Interp&, const Value& v, CallArgs& a) { return no_args("number", a), v.is_numeric(); }
bool t_integer(Interp&, const Value& v, CallArgs& a) { return no_args("integer", a), v.is_int(); }
bool t_float(Interp&, const Value& v, CallArgs& a) { return no_args("float", a), v.is_float(); }
bool t_boolean(Interp&, const Value& v, CallArgs& a) { return no_args("boolean", a), v.is_bool(); }
bool t_true(Interp&, const Value& v, CallArgs& a) { return no_args("true", a), v.is_bool() && v.as_bool(); }
bool t_false(Interp&, const Value& v, CallArgs& a) { return no_args("false", a), v.is_bool() && !v.as_bool(); }
bool t_mapping(Interp&, const Value& v, CallArgs& a) { return no_args("mapping", a), v.is_dict(); }
bool t_callable(Interp&, const Value& v, CallArgs& a) { return no_args("callable", a), v.is_function(); }
// Python objects with __iter__ (Undefined has one).
bool t_iterable(Interp&, const Value& v, CallArgs& a) {
  no_args("iterable", a);
  return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
}
bool t_sequence(Interp&, const Value& v, CallArgs& a) {
  no_args("sequence", a);
  return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
}
int64_t need_int(const Value& v, const char* test) {
  if (v.is_undefined()) fail("test '", test, "' on an undefined value");
  if (!v.is_integral()) fail("test '", test, "' needs an integer, got ", v.type_name());
  return v.as_int();
}
bool t_odd(Interp&, const Value& v, CallArgs& a) { return no_args("odd", a), (need_int(v, "odd") & 1) != 0; }
bool t_even(Interp&, const Value& v, CallArgs& a) { return no_args("even", a), (need_int(v, "even") & 1) == 0; }
bool t_divisibleby(Interp&, const Value& v, CallArgs& a) {
  const Value& n = one_arg("divisibleby", a);
  int64_t d = need_int(n, "divisibleby");
  if (d == 0) fail("integer division or modulo by zero");
  if (d == -1) return true;
  return need_int(v, "divisibleby") % d == 0;
}
bool t_eq(Interp&, const Value& v, CallArgs& a) { return equals(v, one_arg("eq", a)); }
bool t_ne(Interp&, const Value& v, CallArgs& a) { return !equals(v, one_arg("ne", a)); }
bool t_lt(Interp&, const Value& v, CallArgs& a) { return compare(v, one_arg("lt", a)) < 0; }
bool t_le(Interp&, const Value& v, CallArgs& a) { return compare(v, one_arg("le", a)) <= 0; }
bool t_gt(Interp&, const Value& v, CallArgs& a) { return compare(v, one_arg("gt", a)) > 0; }
bool t_ge(Interp&, const Value& v, CallArgs& a) { return compare(v, one_arg("ge", a)) >= 0; }
bool t_in(Interp& in, const Value& v, CallArgs& a) { return in.contains(one_arg("in", a), v); }
bool t_sameas(Interp&, const Value& v, CallArgs& a) {
  const Value& o = one_arg("sameas", a);
  if (v.kind() != o.kind()) return false;
  if (v.is_none() || v.is_undefined()) return true;
  if (v.is_bool()) return v.as_bool() == o.as_bool();
  if (v.is_list() || v.is_dict() || v.is_namespace() || v.is_function()) return equals(v, o) && repr(v) == repr(o);
  return equals(v, o);
}
bool t_lower(Interp&, const Value& v, CallArgs& a) {
  no_args("lower", a);
  std::string s = to_str(v);
  return str_lower(s) == s && str_upper(s) != s;
}
bool t_upper(Interp&, const Value& v, CallArgs& a) {
  no_args("upper", a);
  std::string s = to_str(v);
  return str_upper(s) == s && str_lower(s) != s;
}
bool t_escaped(Interp&, const Value& v, CallArgs& a) { return no_args("escaped", a), false; }
bool t_filter(Interp&, const Value& v, CallArgs& a) { return no_args("filter", a), v.is_string() && is_known_filter(v.str()); }
bool t_test(Interp&, const Value& v, CallArgs& a) { return no_args("test", a), v.is_string() && is_known_test(v.str()); }

const std::map<std::string, TestFn, std::less<>>& tests() {
  static const std::map<std::string, TestFn, std::less<>> t = {
      {"!=", t_ne},          {"<", t_lt},           {"<=", t_le},           {"==", t_eq},
      {">", t_gt},           {">=", t_ge},          {"boolean", t_boolean}, {"callable", t_callable},
      {"defined", t_defined}, {"divisibleby", t_divisibleby}, {"eq", t_eq}, {"equalto", t_eq},
      {"escaped", t_escaped}, {"even", t_even},     {"false", t_false},     {"filter", t_filter},
      {"float", t_float},    {"ge", t_ge},          {"greaterthan", t_gt},  {"gt", t_gt},
      {"in", t_in},          {"integer", t_integer}, {"iterable", t_iterable}, {"le", t_le},
      {"lessthan", t_lt},    {"lower", t_lower},    {"lt", t_lt},           {"mapping", t_mapping},
      {"ne", t_ne},          {"none", t_none},      {"number", t_number},   {"odd", t_odd},
      {"sameas", t_sameas},  {"sequence", t_sequence}, {"string", t_string}, {"test", t_test},
      {"true", t_true},      {"undefined", t_undefined}, {"upper", t_upper},
  };
  return t;
}

const char* const kStrMethods[] = {"startswith", "endswith", "split", "rsplit", "strip", "lstrip", "rstrip",
                                   "replace", "upper", "lower", "title", "capitalize", "find", "rfind",
                                   "index", "count", "format", "join", "splitlines", "isdigit", "isalpha",
                                   "isalnum", "isspace", "islower", "isupper", "center", "zfill"};
const char* const kDictMethods[] = {"get", "items", "keys", "values", "copy"};
const char* const kListMethods[] = {"index", "count", "copy"};

template <size_t N>
bool in_list(const char* const (&names)[N], std::string_view n) {
  for (const char* x : names)
    if (n == x) return true;
  return false;
}

}  // namespace

bool is_known_filter(std::string_view name) { return filters().count(name) != 0; }
bool is_known_test(std::string_view name) { return tests().count(name) != 0; }

Value Interp::filter(const std::string& name, const Value& v, CallArgs& args) {
  auto it = filters().find(name);
  if (it == filters().end()) fail("no filter named '", name, "'");
  return it->second(*this, v, args);
}

bool Interp::test(const std::string& name, const Value& v, CallArgs& args) {
  auto it = tests().find(name);
  if (it == tests().end()) fail("no test named '", name, "'");
  return it->second(*this, v, args);
}

bool Interp::has_method(const Value& self, const std::string& name) const {
  if (self.is_string()) return in_list(kStrMethods, name);
  if (self.is_dict()) return in_list(kDictMethods, name);
  if (self.is_list()) return in_list(kListMethods, name);
  return false;
}

bool Interp::call_method(const Value& self, const std::string& name, CallArgs& a, Value* out) {
  if (!has_method(self, name)) return false;
  const char* fn = name.c_str();
  if (self.is_dict()) {
    const Dict& d = self.dict();
    if (name == "get") {
      Params p("get", a, {"key", "default"});
      const Value* v = d.find(p[0]);
      *out = v ? *v : (p.has(1) ? p[1] : Value::none());
    } else if (name == "items") {
      Params p("items", a, {});
      std::vector<Value> items;
      for (const auto& kv : d.items) items.push_back(make_list({kv.first, kv.second}, true));
      *out = make_list(std::move(items));
    } else if (name == "keys" || name == "values") {
      Params p(fn, a, {});
      std::vector<Value> items;
      for (const auto& kv : d.items) items.push_back(name == "keys" ? kv.first : kv.second);
      *out = make_list(std::move(items));
    } else {  // copy
      Params p("copy", a, {});
      *out = make_dict(d.items);
    }
    return true;
  }
  if (self.is_list()) {
    const auto& items = self.list().items;
    if (name == "copy") {
      Params p("copy", a, {});
      *out = make_list(items, self.list().tuple);
      return true;
    }
    Params p(fn, a, {"value"});
    int64_t n = 0;
    for (size_t i = 0; i < items.size(); ++i)
      if (equals(items[i], p[0])) {
        if (name == "index") {
          *out = Value::integer((int64_t)i);
          return true;
        }
        ++n;
      }
    if (name == "index") fail(repr(p[0]), " is not in list");
    *out = Value::integer(n);
    return true;
  }
  const std::string& s = self.str();
  if (name == "startswith" || name == "endswith") {
    Params p(fn, a, {"prefix"});
    std::vector<Value> opts = p[0].is_list() ? p[0].list().items : std::vector<Value>{p[0]};
    bool r = false;
    for (const auto& o : opts) {
      std::string x = need_str(o, fn);
      r = r || (name == "startswith" ? starts_with(s, x) : ends_with(s, x));
    }
    *out = Value::boolean(r);
  } else if (name == "split" || name == "rsplit") {
    Params p(fn, a, {"sep", "maxsplit"});
    std::vector<Value> parts;
    for (auto& x : py_split(s, p[0], p.integer(1, -1, fn), name == "rsplit")) parts.push_back(Value::string(std::move(x)));
    charge(s.size());
    *out = make_list(std::move(parts));
  } else if (name == "strip" || name == "lstrip" || name == "rstrip") {
    Params p(fn, a, {"chars"});
    std::string chars;
    bool has = p.has(0) && !p[0].is_none();
    if (has) chars = p.str(0, fn);
    *out = make_string(py_strip(s, has ? &chars : nullptr, name != "rstrip", name != "lstrip"));
  } else if (name == "replace") {
    Params p(fn, a, {"old", "new", "count"});
    *out = make_string(py_replace(*this, s, p.str(0, fn), p.str(1, fn), p.integer(2, -1, fn), 64u << 20));
  } else if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    Params p(fn, a, {});
    *out = make_string(name == "upper" ? str_upper(s)
                       : name == "lower" ? str_lower(s)
                       : name == "title" ? str_title(s)
                                         : str_capitalize(s));
  } else if (name == "find" || name == "rfind" || name == "index" || name == "count") {
    Params p(fn, a, {"sub", "start", "end"});
    std::string sub = p.str(0, fn);
    std::vector<size_t> off = utf8_offsets(s);
    int64_t n = (int64_t)off.size() - 1;
    auto norm = [&](int64_t x) { return x < 0 ? std::max<int64_t>(0, x + n) : std::min(x, n); };
    int64_t b = norm(p.integer(1, 0, fn)), e = norm(p.integer(2, n, fn));
    std::string_view win = b <= e ? std::string_view(s).substr(off[b], off[e] - off[b]) : std::string_view();
    if (name == "count") {
      int64_t c = 0;
      if (b > e) c = 0;
      else if (sub.empty()) c = (int64_t)utf8_length(win) + 1;
      else
        for (size_t pos = win.find(sub); pos != std::string_view::npos; pos = win.find(sub, pos + sub.size())) ++c;
      *out = Value::integer(c);
    } else {
      size_t f = b > e ? std::string_view::npos : (name == "rfind" ? win.rfind(sub) : win.find(sub));
      if (f == std::string_view::npos && name == "index") fail("substring not found");
      *out = Value::integer(f == std::string_view::npos ? -1 : b + (int64_t)cp_index(win, f));
    }
  } else if (name == "format") {
    *out = make_string(py_format(s, a));
  } else if (name == "join") {
    Params p(fn, a, {"iterable"});
    std::string r;
    bool first = true;
    for (const Value& x : iterate(p[0])) {
      if (!first) r += s;
      first = false;
      r += need_str(x, "join");
      if (r.size() > limits_.max_output) fail("join: result too long");
    }
    *out = make_string(std::move(r));
  } else if (name == "splitlines") {
    Params p(fn, a, {});
    std::vector<Value> parts;
    for (auto& x : py_splitlines(s)) parts.push_back(Value::string(std::move(x)));
    *out = make_list(std::move(parts));
  } else if (name == "center" || name == "zfill") {
    Params p(fn, a, {"width"});
    int64_t width = std::min<int64_t>(p.integer(0, 0, fn), 1 << 20);
    int64_t len = (int64_t)utf8_length(s);
    if (width <= len) {
      *out = self;
    } else if (name == "zfill") {
      size_t sign = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
      *out = make_string(s.substr(0, sign) + std::string((size_t)(width - len), '0') + s.substr(sign));
    } else {
      int64_t marg = width - len, left = marg / 2 + (marg & width & 1);
      *out = make_string(std::string((size_t)left, ' ') + s + std::string((size_t)(marg - left), ' '));
    }
  } else {  // is* predicates
    Params p(fn, a, {});
    bool any = false, all = true, cased = false, has_upper = false, has_lower = false;
    for (size_t i = 0; i < s.size();) {
      uint32_t cp;
      size_t n = utf8_next(s, i, &cp);
      any = true;
      bool digit = cp >= '0' && cp <= '9';
      bool alpha = cp_lower(cp) != cp_upper(cp) || (cp >= 0x80 && !py_isspace(cp) && cp_lower(cp) == cp_upper(cp) && cp >= 0x3040);
      if (cp_lower(cp) != cp) has_upper = true;
      if (cp_upper(cp) != cp) has_lower = true;
      cased = cased || cp_lower(cp) != cp_upper(cp);
      if (name == "isdigit") all = all && digit;
      else if (name == "isalpha") all = all && alpha;
      else if (name == "isalnum") all = all && (alpha || digit);
      else if (name == "isspace") all = all && py_isspace(cp);
      i = n;
    }
    if (name == "islower") *out = Value::boolean(has_lower && !has_upper);
    else if (name == "isupper") *out = Value::boolean(has_upper && !has_lower);
    else *out = Value::boolean(any && all);
  }
  return true;
}

void Interp::add_globals(Frame& g) {
  g.vars["raise_exception"] = make_function("raise_exception", [](CallArgs& a) -> Value {
    std::string msg = a.pos.empty() ? std::string("(no message)") : to_str(a.pos[0]);
    fail("template raised an exception: ", msg);
  });
  g.vars["strftime_now"] = make_function("strftime_now", [this](CallArgs& a) -> Value {
    Params p("strftime_now", a, {"format"});
    std::string fmt = p.str(0, "strftime_now");
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    localtime_r(&t, &tm);
    std::string buf(fmt.size() * 8 + 64, '\0');
    size_t n = fmt.empty() ? 0 : std::strftime(buf.data(), buf.size(), fmt.c_str(), &tm);
    buf.resize(n);
    return make_string(std::move(buf));
  });
  g.vars["range"] = make_function("range", [this](CallArgs& a) -> Value {
    if (!a.kw.empty() || a.pos.empty() || a.pos.size() > 3) fail("range() takes 1 to 3 integer arguments");
    for (const auto& v : a.pos)
      if (!v.is_integral()) fail("range(): '", v.type_name(), "' object cannot be interpreted as an integer");
    int64_t start = 0, stop, step = 1;
    if (a.pos.size() == 1) stop = a.pos[0].as_int();
    else {
      start = a.pos[0].as_int();
      stop = a.pos[1].as_int();
      if (a.pos.size() == 3) step = a.pos[2].as_int();
    }
    if (step == 0) fail("range() arg 3 must not be zero");
    long double count = step > 0 ? ((long double)stop - start + step - 1) / step : ((long double)start - stop - step - 1) / -step;
    if (count > (long double)limits_.max_loop_iterations) fail("range() too large (more than ", limits_.max_loop_iterations, " items)");
    std::vector<Value> items;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) items.push_back(Value::integer(i));
    return make_list(std::move(items));
  });
  g.vars["namespace"] = make_function("namespace", [this](CallArgs& a) -> Value {
    Value ns = make_namespace();
    for (const auto& v : a.pos) {
      if (!v.is_dict()) fail("namespace() positional arguments must be mappings");
      for (const auto& kv : v.dict().items) ns.dict().set(kv.first, kv.second);
    }
    for (const auto& kv : a.kw) ns.dict().set(Value::string(kv.first), kv.second);
    return ns;
  });
  g.vars["dict"] = make_function("dict", [this](CallArgs& a) -> Value {
    Value d = make_dict();
    for (const auto& v : a.pos) {
      if (!v.is_dict()) fail("dict() positional arguments must be mappings");
      for (const auto& kv : v.dict().items) d.dict().set(kv.first, kv.second);
    }
    for (const auto& kv : a.kw) d.dict().set(Value::string(kv.first), kv.second);
    return d;
  });
}

}  // namespace edgevl::text::jinja
