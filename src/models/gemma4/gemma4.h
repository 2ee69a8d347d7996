// Gemma 4 (HF model_type gemma4 / gemma4_text, llama.cpp arch gemma4).
#pragma once
#include <memory>

#include "io/hf_config.h"
#include "models/model.h"

namespace edgevl {

std::unique_ptr<CausalLM> make_gemma4(std::unique_ptr<ModelSource> src);

// The placeholder ids of a Gemma4ForConditionalGeneration config.json (-1 where absent).
MediaTokens gemma4_media_tokens(const HfConfig& top);

}  // namespace edgevl
