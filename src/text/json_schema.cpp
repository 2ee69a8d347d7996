#include "text/json_schema.h"

#include <cmath>

#include "core/error.h"
#include "text/pretokenizer.h"

namespace edgevl::text {

namespace {

using nlohmann::json;

bool has_type(const json& v, const std::string& t) {
  if (t == "object") return v.is_object();
  if (t == "array") return v.is_array();
  if (t == "string") return v.is_string();
  if (t == "boolean") return v.is_boolean();
  if (t == "null") return v.is_null();
  if (t == "number") return v.is_number();
  if (t == "integer") return v.is_number_integer() || (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>());
  return false;
}

int64_t utf8_length(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

class Validator {
 public:
  explicit Validator(const json& root) : root_(root) {}

  std::string check(const json& s, const json& v, const std::string& at, int depth = 0) const {
    EV_CHECK(depth < 64, "json schema: $ref nesting deeper than 64");
    if (s.is_boolean()) return s.get<bool>() ? "" : at + ": the schema allows nothing here";
    if (!s.is_object()) return "";
    if (auto r = s.find("$ref"); r != s.end() && r->is_string()) {
      const std::string ref = r->get<std::string>();
      EV_CHECK(ref.rfind("#", 0) == 0, "json schema: only local $ref is supported (", ref, ")");
      const json* target = &root_;
      if (ref.size() > 1) target = &root_.at(json::json_pointer(ref.substr(1)));
      if (auto e = check(*target, v, at, depth + 1); !e.empty()) return e;
    }
    if (auto t = s.find("type"); t != s.end()) {
      bool ok = false;
      if (t->is_string()) ok = has_type(v, *t);
      else if (t->is_array())
        for (const auto& x : *t) ok = ok || (x.is_string() && has_type(v, x));
      if (!ok) return at + ": expected " + t->dump();
    }
    if (auto e = s.find("enum"); e != s.end() && e->is_array()) {
      bool ok = false;
      for (const auto& x : *e) ok = ok || x == v;
      if (!ok) return at + ": not one of " + e->dump();
    }
    if (auto c = s.find("const"); c != s.end() && *c != v) return at + ": expected " + c->dump();
    if (v.is_string()) {
      const int64_t n = utf8_length(v.get<std::string>());
      if (s.contains("minLength") && n < s["minLength"].get<int64_t>()) return at + ": shorter than minLength";
      if (s.contains("maxLength") && n > s["maxLength"].get<int64_t>()) return at + ": longer than maxLength";
      if (auto p = s.find("pattern"); p != s.end() && p->is_string() &&
                                      !RegexMatcher(p->get<std::string>()).search(v.get<std::string>()))
        return at + ": does not match pattern " + p->dump();
    }
    if (v.is_number()) {
      const double x = v.get<double>();
      if (s.contains("minimum") && x < s["minimum"].get<double>()) return at + ": below minimum";
      if (s.contains("maximum") && x > s["maximum"].get<double>()) return at + ": above maximum";
      if (s.contains("exclusiveMinimum") && x <= s["exclusiveMinimum"].get<double>()) return at + ": not above exclusiveMinimum";
      if (s.contains("exclusiveMaximum") && x >= s["exclusiveMaximum"].get<double>()) return at + ": not below exclusiveMaximum";
      if (s.contains("multipleOf")) {
        const double m = s["multipleOf"].get<double>(), q = x / m;
        if (m > 0 && std::abs(q - std::round(q)) > 1e-9) return at + ": not a multiple of " + s["multipleOf"].dump();
      }
    }
    if (v.is_object()) {
      if (auto r = s.find("required"); r != s.end() && r->is_array())
        for (const auto& k : *r)
          if (k.is_string() && !v.contains(k.get<std::string>())) return at + ": missing required \"" + k.get<std::string>() + "\"";
      const json* props = s.contains("properties") ? &s["properties"] : nullptr;
      for (const auto& [k, x] : v.items()) {
        const std::string here = at + "." + k;
        if (props && props->contains(k)) {
          if (auto e = check((*props)[k], x, here, depth + 1); !e.empty()) return e;
        } else if (auto ap = s.find("additionalProperties"); ap != s.end()) {
          if (auto e = check(*ap, x, here, depth + 1); !e.empty()) return e;
        }
      }
    }
    if (v.is_array()) {
      const int64_t n = (int64_t)v.size();
      if (s.contains("minItems") && n < s["minItems"].get<int64_t>()) return at + ": fewer than minItems";
      if (s.contains("maxItems") && n > s["maxItems"].get<int64_t>()) return at + ": more than maxItems";
      int64_t first = 0;
      if (auto pi = s.find("prefixItems"); pi != s.end() && pi->is_array()) {
        for (; first < n && first < (int64_t)pi->size(); ++first)
          if (auto e = check((*pi)[first], v[first], at + "[" + std::to_string(first) + "]", depth + 1); !e.empty())
            return e;
      }
      if (auto it = s.find("items"); it != s.end())
        for (int64_t i = first; i < n; ++i)
          if (auto e = check(*it, v[i], at + "[" + std::to_string(i) + "]", depth + 1); !e.empty()) return e;
    }
    if (auto a = s.find("allOf"); a != s.end() && a->is_array())
      for (const auto& sub : *a)
        if (auto e = check(sub, v, at, depth + 1); !e.empty()) return e;
    if (auto a = s.find("anyOf"); a != s.end() && a->is_array()) {
      bool ok = false;
      for (const auto& sub : *a) ok = ok || check(sub, v, at, depth + 1).empty();
      if (!ok) return at + ": matches none of anyOf";
    }
    if (auto a = s.find("oneOf"); a != s.end() && a->is_array()) {
      int matches = 0;
      for (const auto& sub : *a) matches += check(sub, v, at, depth + 1).empty();
      if (matches != 1) return at + ": matches " + std::to_string(matches) + " of oneOf (needs exactly 1)";
    }
    if (auto n = s.find("not"); n != s.end() && check(*n, v, at, depth + 1).empty()) return at + ": matches \"not\"";
    return "";
  }

 private:
  const json& root_;
};

}  // namespace

std::string json_schema_violation(const nlohmann::json& schema, const nlohmann::json& value) {
  try {
    return Validator(schema).check(schema, value, "$");
  } catch (const nlohmann::json::exception& e) {
    fail("json schema: ", e.what());
  }
}

}  // namespace edgevl::text
