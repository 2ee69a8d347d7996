// The family registry: which family builds a model, by the architecture its file names.
// Adding a family is one line here.
#include <string>
#include <vector>

#include "core/error.h"
#include "models/gemma3/gemma3.h"
#include "models/granite/granite.h"
#include "models/llama/llama.h"
#include "models/model.h"

namespace edgevl {

namespace {

struct Family {
  const char* name;
  std::vector<std::string> architectures;  // HF model_type values and GGUF general.architecture values
  std::unique_ptr<CausalLM> (*make)(std::unique_ptr<ModelSource>);
};

const std::vector<Family>& families() {
  static const std::vector<Family> kFamilies = {
      {"llama", {"llama"}, make_llama},
      {"gemma3", {"gemma3_text", "gemma3"}, make_gemma3},
      {"granite", {"granite", "granitemoehybrid"}, make_granite},
  };
  return kFamilies;
}

}  // namespace

std::unique_ptr<CausalLM> load_model(const std::string& path) {
  auto src = ModelSource::open(path);
  const std::string arch = src->architecture();
  for (const Family& f : families())
    for (const auto& a : f.architectures)
      if (a == arch) return f.make(std::move(src));
  std::string known;
  for (const Family& f : families())
    for (const auto& a : f.architectures) known += (known.empty() ? "" : ", ") + a;
  fail(path, ": unknown architecture '", arch, "' (supported: ", known, ")");
}

}  // namespace edgevl
