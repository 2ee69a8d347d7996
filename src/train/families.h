// Internal: the training forward of each family, chosen by open_trainable (train/model.cpp).
#pragma once
#include <memory>

#include "models/source.h"
#include "train/model.h"

namespace edgevl::train {

std::unique_ptr<TrainableLM> make_llama_trainable(std::unique_ptr<ModelSource> src);
// Gemma4ForCausalLM, or Gemma4ForConditionalGeneration with its vision and audio towers.
std::unique_ptr<TrainableLM> make_gemma4_trainable(std::unique_ptr<ModelSource> src);

}  // namespace edgevl::train
