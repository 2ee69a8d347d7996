// Internal: the training forward of each family, chosen by open_trainable (train/model.cpp).
#pragma once
#include <memory>
#include <vector>

#include "models/source.h"
#include "train/model.h"

namespace edgevl::train {

std::unique_ptr<TrainableLM> make_llama_trainable(std::unique_ptr<ModelSource> src);
// Gemma4ForCausalLM, or Gemma4ForConditionalGeneration with its vision and audio towers.
std::unique_ptr<TrainableLM> make_gemma4_trainable(std::unique_ptr<ModelSource> src);

// Each MoE layer's top-k experts (token-major, best first) in the last forward of a Gemma 4 model;
// empty for other models and dense Gemma 4 (tests check that finite differences keep the routing).
std::vector<std::vector<int32_t>> gemma4_routed_experts(const TrainableLM& m);

}  // namespace edgevl::train
