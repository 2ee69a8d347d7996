// edgevl info: what a model file holds: architecture, parameter count, metadata, tensors.
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "io/gguf.h"
#include "io/hf_config.h"
#include "io/safetensors.h"

namespace edgevl::cli {

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

std::string value_str(const gguf::Value& v) {
  if (v.is_array()) {
    std::string r = "[" + std::string(gguf::value_type_name(v.elem_type)) + " x " + std::to_string(v.array.size()) + "]";
    if (!v.array.empty() && !v.array[0].is_array()) {
      r += " " + value_str(v.array[0]);
      if (v.array.size() > 1) r += ", " + value_str(v.array[1]) + (v.array.size() > 2 ? ", ..." : "");
    }
    return r;
  }
  if (v.is_string()) {
    const std::string& s = v.as_string();
    return "\"" + (s.size() > 80 ? s.substr(0, 77) + "..." : s) + "\"";
  }
  if (v.type == gguf::ValueType::BOOL) return v.as_bool() ? "true" : "false";
  if (v.is_float()) {
    char b[64];
    std::snprintf(b, sizeof b, "%g", v.as_float());
    return b;
  }
  return std::to_string(v.as_int());
}

void print_tensors(const std::vector<const TensorRef*>& ts, bool list) {
  int64_t params = 0;
  size_t bytes = 0;
  std::map<std::string, int> by_type;
  for (const TensorRef* t : ts) {
    params += t->numel();
    bytes += t->nbytes;
    by_type[dtype_name(t->dtype)]++;
  }
  std::printf("parameters:   %lld (%.3f B)\n", (long long)params, params / 1e9);
  std::printf("tensor bytes: %zu (%.1f MiB)\n", bytes, bytes / 1048576.0);
  std::printf("tensors:      %zu (", ts.size());
  bool first = true;
  for (auto& [t, n] : by_type) {
    std::printf("%s%s x%d", first ? "" : ", ", t.c_str(), n);
    first = false;
  }
  std::printf(")\n");
  if (list)
    for (const TensorRef* t : ts) std::printf("  %-48s %-5s %s\n", t->name.c_str(), dtype_name(t->dtype), shape_str(t->shape).c_str());
}

}  // namespace

void add_info(CLI::App& app) {
  struct Opts {
    std::string path;
    bool no_tensors = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("info", "Show a model's architecture, parameter count, metadata and tensors");
  cmd->add_option("model", o->path, "Model folder, .gguf file or .safetensors file")->required();
  cmd->add_flag("--no-tensors", o->no_tensors, "Do not list every tensor");
  cmd->callback([o] {
    namespace fs = std::filesystem;
    const std::string& p = o->path;
    if (fs::path(p).extension() == ".gguf") {
      auto g = gguf::File::open(p);
      std::printf("format:       GGUF v%u (alignment %llu)\n", g->version(), (unsigned long long)g->alignment());
      std::printf("architecture: %s\n", g->get_string("general.architecture").value_or("(none)").c_str());
      std::vector<const TensorRef*> ts;
      for (const auto& t : g->tensors()) ts.push_back(&t);
      std::printf("metadata (%zu keys):\n", g->metadata().size());
      for (const auto& [k, v] : g->metadata()) std::printf("  %-44s %s\n", k.c_str(), value_str(v).c_str());
      print_tensors(ts, !o->no_tensors);
      return;
    }
    if (fs::is_directory(p)) {
      EV_CHECK(fs::exists(fs::path(p) / "config.json"), p, ": not a model folder (no config.json)");
      HfConfig cfg = load_hf_config(p);
      auto st = safetensors::Collection::open(p);
      std::printf("format:       Hugging Face folder\n");
      std::printf("architecture: %s", cfg.get_string("model_type", "(none)").c_str());
      auto archs = cfg.get_string_array("architectures");
      if (!archs.empty()) std::printf(" (%s)", archs[0].c_str());
      std::printf("\nconfig:\n");
      for (auto it = cfg.json().begin(); it != cfg.json().end(); ++it) {
        std::string v = it.value().dump();
        std::printf("  %-44s %s\n", it.key().c_str(), (v.size() > 80 ? v.substr(0, 77) + "..." : v).c_str());
      }
      print_tensors(st->tensors(), !o->no_tensors);
      return;
    }
    EV_CHECK(fs::path(p).extension() == ".safetensors", p, ": expected a model folder, .gguf or .safetensors file");
    auto f = safetensors::File::open(p);
    std::printf("format:       safetensors\n");
    if (!f->metadata().empty()) {
      std::printf("metadata:\n");
      for (const auto& [k, v] : f->metadata()) std::printf("  %-44s %s\n", k.c_str(), v.c_str());
    }
    std::vector<const TensorRef*> ts;
    for (const auto& t : f->tensors()) ts.push_back(&t);
    print_tensors(ts, !o->no_tensors);
  });
}

}  // namespace edgevl::cli
