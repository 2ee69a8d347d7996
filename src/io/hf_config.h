// Hugging Face `config.json` loader: a thin wrapper over nlohmann::json with typed getters whose
// errors name the file and the key ("hf_config: model/config.json: key 'text_config.hidden_size'
// is a string, expected an integer"). Keys may be dotted paths into nested objects
// ("text_config.hidden_size"). A JSON null counts as absent, as transformers writes `null` for unset
// options. Non-finite floats are accepted in both spellings transformers produces: the object form
// {"__float__": "Infinity"} (transformers >= 5) and Python's bare Infinity / -Infinity / NaN tokens.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace edgevl {

class HfConfig {
 public:
  HfConfig() = default;
  HfConfig(nlohmann::json j, std::string path) : j_(std::move(j)), path_(std::move(path)) {}

  const std::string& path() const { return path_; }
  const nlohmann::json& json() const { return j_; }

  // Present and not null.
  bool has(const std::string& key) const { return lookup(key) != nullptr; }
  // The raw value at a dotted path; nullptr when absent or null.
  const nlohmann::json* lookup(const std::string& key) const;

  int64_t get_int(const std::string& key, int64_t def) const;
  double get_float(const std::string& key, double def) const;
  bool get_bool(const std::string& key, bool def) const;
  std::string get_string(const std::string& key, const std::string& def) const;
  // Required variants: Error naming the key when absent.
  int64_t require_int(const std::string& key) const;
  double require_float(const std::string& key) const;
  std::string require_string(const std::string& key) const;
  // Arrays (absent -> def). Elements follow the scalar rules above.
  std::vector<int64_t> get_int_array(const std::string& key, const std::vector<int64_t>& def = {}) const;
  std::vector<double> get_float_array(const std::string& key, const std::vector<double>& def = {}) const;
  std::vector<std::string> get_string_array(const std::string& key, const std::vector<std::string>& def = {}) const;
  // A nested object (e.g. "text_config") as its own HfConfig; an empty object when absent.
  HfConfig sub(const std::string& key) const;

 private:
  std::string where(const std::string& key) const;
  int64_t to_int(const nlohmann::json& v, const std::string& key) const;
  double to_float(const nlohmann::json& v, const std::string& key) const;

  nlohmann::json j_ = nlohmann::json::object();
  std::string path_;
  std::string prefix_;  // "text_config." for a sub(): errors name the full dotted key
};

// `path_or_dir` is a config.json file or a folder holding one. Throws Error naming the file.
HfConfig load_hf_config(const std::string& path_or_dir);
// Parses config text (tests); `name` is used in errors.
HfConfig parse_hf_config(const std::string& text, const std::string& name);

}  // namespace edgevl
