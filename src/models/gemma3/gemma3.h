#pragma once
#include <memory>

#include "models/model.h"

namespace edgevl {
std::unique_ptr<CausalLM> make_gemma3(std::unique_ptr<ModelSource> src);
struct DecoderLayout;
DecoderLayout gemma3_layout(const HfConfig& hf);
}
