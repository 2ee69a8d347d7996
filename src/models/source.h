// Where a model's weights and configuration come from: a Hugging Face folder (config.json +
// safetensors, sharded or not) or a GGUF file. Families read their configuration from either
// and look tensors up by the name that source uses.
#pragma once
#include <memory>
#include <string>

#include "io/gguf.h"
#include "io/hf_config.h"
#include "io/safetensors.h"

namespace edgevl {

class ModelSource {
 public:
  // A folder with config.json, or a .gguf file. Throws Error with what is missing.
  static std::unique_ptr<ModelSource> open(const std::string& path);

  bool is_gguf() const { return gguf_ != nullptr; }
  const std::string& path() const { return path_; }
  const HfConfig& hf() const;          // HF sources only
  const gguf::File& gguf() const;      // GGUF sources only
  const TensorRef* find(const std::string& name) const;
  // HF: config.json model_type; GGUF: general.architecture.
  std::string architecture() const;

 private:
  std::string path_;
  std::unique_ptr<HfConfig> hf_;
  std::unique_ptr<safetensors::Collection> st_;
  std::unique_ptr<gguf::File> gguf_;
};

}  // namespace edgevl
