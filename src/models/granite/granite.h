#pragma once
#include <memory>

#include "models/model.h"

namespace edgevl {
std::unique_ptr<CausalLM> make_granite(std::unique_ptr<ModelSource> src);
struct DecoderLayout;
DecoderLayout granite_layout(const HfConfig& hf);
}
