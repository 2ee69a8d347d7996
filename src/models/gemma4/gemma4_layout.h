// `edgevl init` and `edgevl quantize HF_FOLDER` for Gemma 4: what a Gemma 4 text decoder file
// holds, from the weight tables the forward loads through (gemma4_tables.h) and the `gemma4.*`
// keys llama.cpp's converter writes.
#pragma once
#include "models/layout.h"

namespace edgevl {

// The text decoder of a Gemma4ForCausalLM config.json, or the text part of a
// Gemma4ForConditionalGeneration one (written as a Gemma4ForCausalLM folder for HF output).
ModelLayout gemma4_init_layout(const HfConfig& hf);

// HF folder (Gemma4ForCausalLM, or the decoder of Gemma4ForConditionalGeneration) -> a text GGUF
// with the tensors, types and `gemma4.*` keys llama.cpp's converter writes (conversion/gemma.py,
// Gemma4Model), mixture-of-experts models included; weights in `dtype` except the tensors llama.cpp
// keeps F32 (vectors, norms, the expert router). A synthetic vocabulary, as convert_hf_to_gguf.
void convert_gemma4_text_to_gguf(const std::string& hf_dir, const std::string& out, DType dtype, int threads);

}  // namespace edgevl
