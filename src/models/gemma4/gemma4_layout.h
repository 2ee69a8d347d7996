// `edgevl init` for Gemma 4: what a Gemma 4 text decoder file holds, from the weight tables the
// forward loads through (gemma4_tables.h) and the `gemma4.*` keys llama.cpp's converter writes.
#pragma once
#include "models/layout.h"

namespace edgevl {

// The text decoder of a Gemma4ForCausalLM config.json, or the text part of a
// Gemma4ForConditionalGeneration one (written as a Gemma4ForCausalLM folder for HF output).
ModelLayout gemma4_init_layout(const HfConfig& hf);

}  // namespace edgevl
