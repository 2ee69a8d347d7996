// The family registry: which family builds a model, by the architecture its file names.
// Adding a family is one line here.
#include <string>
#include <vector>

#include "core/error.h"
#include "models/gemma3/gemma3.h"
#include "models/gemma4/gemma4.h"
#include "models/gemma4/gemma4_layout.h"
#include "models/granite/granite.h"
#include "models/layout.h"
#include "models/llama/llama.h"
#include "models/model.h"

namespace edgevl {

namespace {

struct Family {
  const char* name;
  std::vector<std::string> architectures;  // HF model_type values and GGUF general.architecture values
  std::unique_ptr<CausalLM> (*make)(std::unique_ptr<ModelSource>);
  DecoderLayout (*layout)(const HfConfig&);  // Llama-like families: converter and init; nullptr: none
  ModelLayout (*init_layout)(const HfConfig&);  // families init writes otherwise; nullptr: from `layout`
};

const std::vector<Family>& families() {
  static const std::vector<Family> kFamilies = {
      {"llama", {"llama"}, make_llama, llama_layout, nullptr},
      {"gemma3", {"gemma3_text", "gemma3"}, make_gemma3, gemma3_layout, nullptr},
      {"gemma4", {"gemma4_text", "gemma4"}, make_gemma4, nullptr, gemma4_init_layout},
      {"granite", {"granite", "granitemoehybrid"}, make_granite, granite_layout, nullptr},
  };
  return kFamilies;
}

const Family& family_for(const std::string& arch, const std::string& path) {
  for (const Family& f : families())
    for (const auto& a : f.architectures)
      if (a == arch) return f;
  std::string known;
  for (const Family& f : families())
    for (const auto& a : f.architectures) known += (known.empty() ? "" : ", ") + a;
  fail(path, ": unknown architecture '", arch, "' (supported: ", known, ")");
}

}  // namespace

int64_t CausalLM::encode_image(Context&, const float*, const int64_t*, int64_t, Tensor&, const ActivationTap&) {
  fail(source_->path(), ": this model has no vision encoder (images are not supported)");
}

int64_t CausalLM::encode_audio(Context&, const float*, const uint8_t*, int64_t, int64_t, Tensor&,
                               const ActivationTap&) {
  fail(source_->path(), ": this model has no audio encoder (audio is not supported)");
}

std::unique_ptr<CausalLM> load_model(const std::string& path) {
  auto src = ModelSource::open(path);
  const Family& f = family_for(src->architecture(), path);
  return f.make(std::move(src));
}

DecoderLayout decoder_layout_from_hf(const HfConfig& hf) {
  const Family& f = family_for(hf.get_string("model_type", ""), hf.path());
  EV_CHECK(f.layout, hf.path(), ": converting or initialising ", f.name, " models is not supported yet");
  return f.layout(hf);
}

ModelLayout model_layout_from_hf(const HfConfig& hf) {
  const Family& f = family_for(hf.get_string("model_type", ""), hf.path());
  if (f.init_layout) return f.init_layout(hf);
  EV_CHECK(f.layout, hf.path(), ": initialising ", f.name, " models is not supported yet");
  return model_layout_from_decoder(f.layout(hf));
}

}  // namespace edgevl
