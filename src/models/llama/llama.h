// Llama (HF LlamaForCausalLM; llama.cpp arch "llama"): pre-norm decoder, GQA attention with
// RoPE (default / linear / llama3), SwiGLU MLP. Granite (models/granite) is this network with
// µP multipliers, so the multipliers live here with Llama's value of 1.
#pragma once
#include <memory>

#include "models/common/decoder.h"

namespace edgevl {

struct MupMultipliers {
  float embedding = 1.0f;  // x = embed(ids) * embedding
  float residual = 1.0f;   // x = x + block(x) * residual
  float logits_div = 1.0f; // logits = lm_head(x) / logits_div
};

struct LlamaConfig {
  DecoderConfig dec;
  MupMultipliers mup;
  std::vector<float> rope_freq_factors;  // GGUF rope_freqs.weight (llama3 scaling baked in)
};

LlamaConfig llama_config_from_hf(const HfConfig& hf);
LlamaConfig llama_config_from_gguf(const gguf::File& g, const std::string& arch);
// The attention and embedding/head entries shared by Llama and Granite.
std::vector<WeightSpec<DecoderWeights>> llama_model_table(const DecoderConfig& c);
std::vector<WeightSpec<DecoderLayerWeights>> llama_attention_table(const DecoderConfig& c);
std::vector<WeightSpec<DecoderLayerWeights>> llama_layer_table(const DecoderConfig& c);  // attention + SwiGLU

class LlamaModel : public CausalLM {
 public:
  // `layer_table` lets Granite swap in its MLP naming.
  LlamaModel(std::unique_ptr<ModelSource> src, LlamaConfig cfg,
             const std::vector<WeightSpec<DecoderLayerWeights>>& layer_table, const std::string& family);
  nn::KvCache new_cache(int64_t max_positions) const override;
  void forward(Context& ctx, nn::KvCache& cache, const ForwardRequest& req, Tensor& logits) override;

 private:
  LlamaConfig cfg_;
  WeightLoader loader_;
  DecoderWeights w_;
  nn::Rope rope_;
  DecoderScratch s_;
};

std::unique_ptr<CausalLM> make_llama(std::unique_ptr<ModelSource> src);
struct DecoderLayout;
DecoderLayout llama_layout(const HfConfig& hf);

}  // namespace edgevl
