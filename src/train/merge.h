// `edgevl merge`: folds a LoRA adapter into its base, W' = W + scaling · B·A, and writes the base's
// format again: a Hugging Face folder (every other file copied, one model.safetensors) or a GGUF
// (metadata copied). Merged weights keep their dtype; block formats are re-quantized, which
// rounds once more (the adapter applied at run time with --lora does not).
#pragma once
#include <string>

namespace edgevl::train {

struct MergeReport {
  int64_t merged = 0;  // weights that took an adapter
  int64_t copied = 0;  // tensors written unchanged
};

MergeReport merge_lora(const std::string& base, const std::string& adapter_dir, const std::string& out);

}  // namespace edgevl::train
