// Gemma 4 (HF model_type gemma4 / gemma4_text, llama.cpp arch gemma4).
#pragma once
#include <memory>

#include "models/model.h"

namespace edgevl {

std::unique_ptr<CausalLM> make_gemma4(std::unique_ptr<ModelSource> src);

}  // namespace edgevl
