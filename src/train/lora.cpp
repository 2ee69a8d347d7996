#include "train/lora.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <fstream>
#include <regex>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "kernels/quants.h"
#include "train/grad_ops.h"

namespace edgevl::train {

double LoraConfig::scaling() const { return use_rslora ? alpha / std::sqrt((double)r) : alpha / (double)r; }

bool LoraConfig::targets(const std::string& module) const {
  if (!target_regex.empty()) return std::regex_match(module, std::regex(target_regex));
  for (const std::string& t : target_modules) {
    if (module == t) return true;
    if (module.size() > t.size() && module.compare(module.size() - t.size(), t.size(), t) == 0 &&
        module[module.size() - t.size() - 1] == '.')
      return true;
  }
  return false;
}

LoraConfig read_lora_config(const std::string& adapter_dir) {
  const HfConfig c = load_hf_config(adapter_dir + "/adapter_config.json");
  const std::string where = c.path();
  EV_CHECK(c.get_string("peft_type", "LORA") == "LORA", where, ": peft_type is not LORA");
  LoraConfig l;
  l.r = c.require_int("r");
  l.alpha = c.get_float("lora_alpha", (double)l.r);
  l.dropout = c.get_float("lora_dropout", 0.0);
  l.use_rslora = c.get_bool("use_rslora", false);
  EV_CHECK(l.r > 0, where, ": r must be positive");
  EV_CHECK(!c.get_bool("use_dora", false), where, ": DoRA adapters are not supported");
  EV_CHECK(!c.get_bool("fan_in_fan_out", false), where, ": fan_in_fan_out adapters are not supported");
  EV_CHECK(c.get_string("bias", "none") == "none", where, ": LoRA biases (bias != none) are not supported");
  for (const char* k : {"rank_pattern", "alpha_pattern"})
    if (const auto* p = c.lookup(k)) EV_CHECK(!p->is_object() || p->empty(), where, ": ", k, " is not supported");
  if (const auto* p = c.lookup("modules_to_save")) EV_CHECK(p->empty(), where, ": modules_to_save is not supported");
  const auto* tm = c.lookup("target_modules");
  EV_CHECK(tm, where, ": no target_modules");
  if (tm->is_string()) l.target_regex = tm->get<std::string>();
  else l.target_modules = c.get_string_array("target_modules");
  return l;
}

void LoraPair::forward(Context& ctx, const float* x, int64_t rows, float* u, float* y) const {
  // PEFT: result + lora_B(lora_A(dropout(x))) * scaling.
  ops::linear(ctx, f32_weight(A.data(), r, in), x, rows, u);
  std::vector<float> v(rows * out);
  ops::linear(ctx, f32_weight(B.data(), out, r), u, rows, v.data());
  ops::add_scaled(y, v.data(), scaling, rows * out);
}

void LoraPair::backward(Context& ctx, const float* x, const float* u, const float* dy, int64_t rows, float* dx) {
  has_grad = true;
  std::vector<float> dv(dy, dy + rows * out), du(rows * r, 0.0f);
  ops::scale(dv.data(), scaling, rows * out);
  linear_backward_weight(ctx, dv.data(), u, rows, out, r, dB.data());
  linear_backward_input(ctx, f32_weight(B.data(), out, r), dv.data(), rows, du.data());
  linear_backward_weight(ctx, du.data(), x, rows, r, in, dA.data());
  if (dx) linear_backward_input(ctx, f32_weight(A.data(), r, in), du.data(), rows, dx);
}

LoraPair* LoraSet::find(const std::string& module) {
  auto it = pairs.find(module);
  return it == pairs.end() ? nullptr : &it->second;
}

void LoraSet::set_mode(bool training, uint64_t seed) {
  uint64_t i = 0;
  for (auto& [_, p] : pairs) {
    p.training = training;
    p.dropout_seed = seed * 0x9E3779B97F4A7C15ull + ++i;
  }
}

void LoraSet::zero_grad() {
  for (auto& [_, p] : pairs) {
    std::fill(p.dA.begin(), p.dA.end(), 0.0f);
    std::fill(p.dB.begin(), p.dB.end(), 0.0f);
    p.has_grad = false;
  }
}

int64_t LoraSet::num_parameters() const {
  int64_t n = 0;
  for (const auto& [_, p] : pairs) n += (int64_t)(p.A.size() + p.B.size());
  return n;
}

std::string LoraSet::peft_name(const std::string& module, char which, const std::string& adapter_name) {
  std::string s = "base_model.model." + module + ".lora_" + which;
  if (!adapter_name.empty()) s += "." + adapter_name;
  return s + ".weight";
}

LoraSet LoraSet::load_peft(const std::string& adapter_dir,
                           const std::map<std::string, std::pair<int64_t, int64_t>>& expected) {
  LoraSet s;
  s.config = read_lora_config(adapter_dir);
  auto file = safetensors::File::open(adapter_dir + "/adapter_model.safetensors");
  size_t used = 0;
  for (const auto& [module, io] : expected) {
    if (!s.config.targets(module)) continue;
    LoraPair p;
    p.module = module;
    p.r = s.config.r;
    p.in = io.first;
    p.out = io.second;
    p.scaling = (float)s.config.scaling();
    p.dropout = (float)s.config.dropout;
    auto read = [&](char which, int64_t rows, int64_t cols, std::vector<float>& dst) {
      const std::string name = peft_name(p.module, which);
      const TensorRef* t = file->find(name);
      EV_CHECK(t, file->path(), ": missing '", name, "'");
      EV_CHECK(t->shape == std::vector<int64_t>({rows, cols}), file->path(), ": '", name, "' should be [", rows, ", ",
               cols, "]");
      EV_CHECK(t->dtype == DType::F32 || t->dtype == DType::BF16 || t->dtype == DType::F16, file->path(), ": '", name,
               "' has unsupported dtype ", dtype_name(t->dtype));
      dst.resize(rows * cols);
      dequantize_row(t->dtype, t->data, dst.data(), rows * cols);
      ++used;
    };
    read('A', p.r, p.in, p.A);
    read('B', p.out, p.r, p.B);
    p.dA.assign(p.A.size(), 0.0f);
    p.dB.assign(p.B.size(), 0.0f);
    s.pairs.emplace(module, std::move(p));
  }
  EV_CHECK(!s.pairs.empty(), adapter_dir, ": target_modules match no linear layer of this model");
  EV_CHECK(used == file->tensors().size(), file->path(), ": has ", file->tensors().size(), " tensors, ", used,
           " belong to this model's targeted linears");
  return s;
}

LoraSet LoraSet::create(const LoraConfig& config, const std::map<std::string, std::pair<int64_t, int64_t>>& modules,
                        uint64_t seed) {
  EV_CHECK(config.r > 0, "lora: rank must be positive");
  EV_CHECK(config.dropout >= 0 && config.dropout < 1, "lora: dropout must be in [0, 1)");
  LoraSet s;
  s.config = config;
  std::mt19937_64 rng(seed);
  for (const auto& [module, io] : modules) {
    if (!config.targets(module)) continue;
    LoraPair p;
    p.module = module;
    p.r = config.r;
    p.in = io.first;
    p.out = io.second;
    p.scaling = (float)config.scaling();
    p.dropout = (float)config.dropout;
    // kaiming_uniform_(a=sqrt(5)): gain sqrt(2 / (1 + 5)), bound gain * sqrt(3 / fan_in) = 1/sqrt(in).
    std::uniform_real_distribution<float> u(-1.0f / std::sqrt((float)p.in), 1.0f / std::sqrt((float)p.in));
    p.A.resize(p.r * p.in);
    for (float& v : p.A) v = u(rng);
    p.B.assign(p.out * p.r, 0.0f);
    p.dA.assign(p.A.size(), 0.0f);
    p.dB.assign(p.B.size(), 0.0f);
    s.pairs.emplace(module, std::move(p));
  }
  EV_CHECK(!s.pairs.empty(), "lora: the target modules match no linear layer of this model");
  return s;
}

void LoraSet::save_peft(const std::string& adapter_dir, const std::string& base_model) const {
  std::error_code ec;
  std::filesystem::create_directories(adapter_dir, ec);
  EV_CHECK(!ec, adapter_dir, ": cannot create the adapter folder (", ec.message(), ")");
  safetensors::Writer w;
  w.set_metadata("format", "pt");
  for (const auto& [module, p] : pairs) {
    w.add(peft_name(module, 'A'), DType::F32, {p.r, p.in}, p.A.data(), p.A.size() * sizeof(float));
    w.add(peft_name(module, 'B'), DType::F32, {p.out, p.r}, p.B.data(), p.B.size() * sizeof(float));
  }
  w.write(adapter_dir + "/adapter_model.safetensors");
  // The keys PEFT's LoraConfig reads; the rest keep PEFT's defaults.
  nlohmann::json j = {{"peft_type", "LORA"},
                      {"task_type", "CAUSAL_LM"},
                      {"base_model_name_or_path", base_model.empty() ? nullptr : nlohmann::json(base_model)},
                      {"r", config.r},
                      {"lora_alpha", config.alpha},
                      {"lora_dropout", config.dropout},
                      {"use_rslora", config.use_rslora},
                      {"use_dora", false},
                      {"fan_in_fan_out", false},
                      {"bias", "none"},
                      {"init_lora_weights", true},
                      {"inference_mode", true},
                      {"modules_to_save", nullptr},
                      {"rank_pattern", nlohmann::json::object()},
                      {"alpha_pattern", nlohmann::json::object()}};
  if (config.target_regex.empty()) j["target_modules"] = config.target_modules;
  else j["target_modules"] = config.target_regex;
  if (config.alpha == std::floor(config.alpha)) j["lora_alpha"] = (int64_t)config.alpha;
  const std::string path = adapter_dir + "/adapter_config.json", tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    f << j.dump(2) << "\n";
    EV_CHECK(f.good(), tmp, ": write failed");
  }
  EV_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, path, ": cannot replace");
}

std::map<std::string, std::pair<int64_t, int64_t>> linear_modules(const CausalLM& model) {
  std::map<std::string, std::pair<int64_t, int64_t>> m;
  const std::string suffix = ".weight";
  for (const auto& [name, w] : model.weights_by_hf_name())
    if (w->shape.size() == 2 && name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
        name.find("embed") == std::string::npos)
      m[name.substr(0, name.size() - suffix.size())] = {w->cols(), w->rows()};
  return m;
}

AttachedLora::AttachedLora(CausalLM& model, const std::string& adapter_dir)
    : owned_(LoraSet::load_peft(adapter_dir, linear_modules(model))), set_(&owned_) {
  attach(model);
}

AttachedLora::AttachedLora(CausalLM& model, const LoraSet& set) : set_(&set) { attach(model); }

void AttachedLora::attach(CausalLM& model) {
  const auto& weights = model.weights_by_hf_name();
  for (const auto& [module, p] : set_->pairs) {
    auto it = weights.find(module + ".weight");
    EV_CHECK(it != weights.end(), "lora: the model has no linear '", module, "'");
    WeightRef* w = it->second;
    EV_CHECK(w->cols() == p.in && w->rows() == p.out, "lora: adapter of ", module, " has the wrong shape");
    EV_CHECK(!w->delta, "lora: ", module, " already carries an adapter");
    LowRankDelta& d = deltas_[module];
    d.r = p.r;
    d.scaling = p.scaling;
    d.A = p.A.data();
    d.B = p.B.data();
    w->delta = &d;
    targets_.push_back(w);
  }
}

AttachedLora::~AttachedLora() {
  for (WeightRef* w : targets_) w->delta = nullptr;
}

}  // namespace edgevl::train
