#include "models/source.h"

#include <filesystem>

#include "core/error.h"

namespace edgevl {

std::unique_ptr<ModelSource> ModelSource::open(const std::string& path) {
  namespace fs = std::filesystem;
  auto src = std::unique_ptr<ModelSource>(new ModelSource());
  src->path_ = path;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    EV_CHECK(fs::exists(fs::path(path) / "config.json"), path, ": not a model folder (no config.json)");
    src->hf_ = std::make_unique<HfConfig>(load_hf_config(path));
    src->st_ = safetensors::Collection::open(path);
  } else if (fs::path(path).extension() == ".gguf") {
    src->gguf_ = gguf::File::open(path);
  } else {
    EV_CHECK(fs::exists(path, ec), path, ": no such file or folder");
    fail(path, ": expected a model folder (config.json + safetensors) or a .gguf file");
  }
  return src;
}

const HfConfig& ModelSource::hf() const {
  EV_ASSERT(hf_);
  return *hf_;
}

const gguf::File& ModelSource::gguf() const {
  EV_ASSERT(gguf_);
  return *gguf_;
}

const TensorRef* ModelSource::find(const std::string& name) const {
  return gguf_ ? gguf_->find_tensor(name) : st_->find(name);
}

std::string ModelSource::architecture() const {
  if (gguf_) {
    auto a = gguf_->get_string("general.architecture");
    EV_CHECK(a, path_, ": GGUF has no general.architecture");
    return *a;
  }
  return hf_->get_string("model_type", "");
}

}  // namespace edgevl
