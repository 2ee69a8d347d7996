#include "io/hf_config.h"

#include <cmath>
#include <filesystem>
#include <limits>

#include "core/error.h"
#include "core/mmap.h"

namespace edgevl {

namespace {

using Json = nlohmann::json;

const char* kind(const Json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a bool";
  if (v.is_number_integer()) return "an integer";
  if (v.is_number_float()) return "a float";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  return "an object";
}

// Python's json.dumps writes non-finite floats as bare Infinity / -Infinity / NaN, which is not
// JSON. Rewrite them (outside strings) into the {"__float__": ...} form transformers uses.
std::string rewrite_nonfinite(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char ch = text[i];
    if (in_string) {
      out += ch;
      if (ch == '\\' && i + 1 < text.size()) out += text[++i];
      else if (ch == '"') in_string = false;
      continue;
    }
    if (ch == '"') in_string = true;
    static const char* kTokens[] = {"-Infinity", "Infinity", "NaN"};
    bool replaced = false;
    for (const char* tok : kTokens) {
      size_t n = std::char_traits<char>::length(tok);
      if (text.compare(i, n, tok) == 0) {
        out += "{\"__float__\": \"";
        out += tok;
        out += "\"}";
        i += n - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += ch;
  }
  return out;
}

}  // namespace

HfConfig parse_hf_config(const std::string& text, const std::string& name) {
  Json j;
  try {
    j = Json::parse(rewrite_nonfinite(text));
  } catch (const Json::exception& e) {
    fail("hf_config: ", name, ": invalid JSON: ", e.what());
  }
  EV_CHECK(j.is_object(), "hf_config: ", name, ": top level is not a JSON object");
  return HfConfig(std::move(j), name);
}

HfConfig load_hf_config(const std::string& path_or_dir) {
  std::filesystem::path p(path_or_dir);
  std::error_code ec;
  if (std::filesystem::is_directory(p, ec)) p /= "config.json";
  std::string text;
  try {
    text = read_text_file(p.string());
  } catch (const Error& e) {
    fail("hf_config: ", e.what());
  }
  return parse_hf_config(text, p.string());
}

std::string HfConfig::where(const std::string& key) const {
  return str_cat("hf_config: ", path_, ": key '", prefix_, key, "'");
}

const Json* HfConfig::lookup(const std::string& key) const {
  if (!j_.is_object()) return nullptr;
  auto it = j_.find(key);  // a literal key that itself contains dots wins
  if (it != j_.end()) return it->is_null() ? nullptr : &*it;
  const Json* cur = &j_;
  size_t start = 0;
  while (true) {
    size_t dot = key.find('.', start);
    std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!cur->is_object()) return nullptr;
    auto f = cur->find(part);
    if (f == cur->end()) return nullptr;
    cur = &*f;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return cur->is_null() ? nullptr : cur;
}

int64_t HfConfig::to_int(const Json& v, const std::string& key) const {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    EV_CHECK(u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), where(key), ": ", u, " is too large");
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {  // e.g. "rope_theta": 10000.0 read as an integer
    double d = v.get<double>();
    EV_CHECK(std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.2e18, where(key), " is ", d,
             ", expected an integer");
    return static_cast<int64_t>(d);
  }
  fail(where(key), " is ", kind(v), ", expected an integer");
}

double HfConfig::to_float(const Json& v, const std::string& key) const {
  if (v.is_number()) return v.get<double>();
  if (v.is_object() && v.size() == 1 && v.contains("__float__") && v["__float__"].is_string()) {
    const std::string s = v["__float__"].get<std::string>();
    if (s == "Infinity" || s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-Infinity" || s == "-inf") return -std::numeric_limits<double>::infinity();
    if (s == "NaN" || s == "nan") return std::numeric_limits<double>::quiet_NaN();
    fail(where(key), ": unknown __float__ value '", s, "'");
  }
  fail(where(key), " is ", kind(v), ", expected a number");
}

int64_t HfConfig::get_int(const std::string& key, int64_t def) const {
  const Json* v = lookup(key);
  return v ? to_int(*v, key) : def;
}
double HfConfig::get_float(const std::string& key, double def) const {
  const Json* v = lookup(key);
  return v ? to_float(*v, key) : def;
}
bool HfConfig::get_bool(const std::string& key, bool def) const {
  const Json* v = lookup(key);
  if (!v) return def;
  EV_CHECK(v->is_boolean(), where(key), " is ", kind(*v), ", expected a bool");
  return v->get<bool>();
}
std::string HfConfig::get_string(const std::string& key, const std::string& def) const {
  const Json* v = lookup(key);
  if (!v) return def;
  EV_CHECK(v->is_string(), where(key), " is ", kind(*v), ", expected a string");
  return v->get<std::string>();
}
int64_t HfConfig::require_int(const std::string& key) const {
  const Json* v = lookup(key);
  EV_CHECK(v, where(key), " is missing");
  return to_int(*v, key);
}
double HfConfig::require_float(const std::string& key) const {
  const Json* v = lookup(key);
  EV_CHECK(v, where(key), " is missing");
  return to_float(*v, key);
}
std::string HfConfig::require_string(const std::string& key) const {
  EV_CHECK(lookup(key), where(key), " is missing");
  return get_string(key, "");
}

std::vector<int64_t> HfConfig::get_int_array(const std::string& key, const std::vector<int64_t>& def) const {
  const Json* v = lookup(key);
  if (!v) return def;
  EV_CHECK(v->is_array(), where(key), " is ", kind(*v), ", expected an array");
  std::vector<int64_t> out;
  for (size_t i = 0; i < v->size(); ++i) out.push_back(to_int((*v)[i], str_cat(key, "[", i, "]")));
  return out;
}
std::vector<double> HfConfig::get_float_array(const std::string& key, const std::vector<double>& def) const {
  const Json* v = lookup(key);
  if (!v) return def;
  EV_CHECK(v->is_array(), where(key), " is ", kind(*v), ", expected an array");
  std::vector<double> out;
  for (size_t i = 0; i < v->size(); ++i) out.push_back(to_float((*v)[i], str_cat(key, "[", i, "]")));
  return out;
}
std::vector<std::string> HfConfig::get_string_array(const std::string& key, const std::vector<std::string>& def) const {
  const Json* v = lookup(key);
  if (!v) return def;
  EV_CHECK(v->is_array(), where(key), " is ", kind(*v), ", expected an array");
  std::vector<std::string> out;
  for (size_t i = 0; i < v->size(); ++i) {
    EV_CHECK((*v)[i].is_string(), where(str_cat(key, "[", i, "]")), " is ", kind((*v)[i]), ", expected a string");
    out.push_back((*v)[i].get<std::string>());
  }
  return out;
}

HfConfig HfConfig::sub(const std::string& key) const {
  const Json* v = lookup(key);
  if (v) EV_CHECK(v->is_object(), where(key), " is ", kind(*v), ", expected an object");
  HfConfig out(v ? *v : Json::object(), path_);
  out.prefix_ = prefix_ + key + ".";
  return out;
}

}  // namespace edgevl
