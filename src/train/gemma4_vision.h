// The Gemma 4 vision tower's training forward and backward (HF Gemma4VisionModel followed by the
// `embed_vision` projector, Gemma4MultimodalEmbedder, in train mode with dropout 0): the function
// of models/gemma4/vision_encoder.cpp over a batch of images, keeping what the backward reads,
// and the backward walking it in reverse. The multimodal training model feeds its soft tokens
// into the text decoder (train/gemma4.cpp).
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "models/gemma4/vision_encoder.h"
#include "models/source.h"
#include "tensor/context.h"
#include "tensor/tensor.h"
#include "train/model.h"

namespace edgevl::train {

// One image as the processor lays it out: pixels [n_patches, 3·p²] in [0, 1], positions
// [n_patches, 2] as (x, y), (-1, -1) for padding patches.
struct VisionImage {
  const float* pixels = nullptr;
  const int64_t* positions = nullptr;
  int64_t n_patches = 0;
};

class Gemma4VisionTrain {
 public:
  // HF Gemma4ForConditionalGeneration source (model.vision_tower.*, model.embed_vision.*) or a
  // llama.cpp mmproj; `src` must outlive this object (the weights point into it).
  Gemma4VisionTrain(const ModelSource& src, Gemma4VisionConfig cfg, int64_t text_hidden);
  Gemma4VisionTrain(const Gemma4VisionTrain&) = delete;  // the projections point at its weights
  Gemma4VisionTrain& operator=(const Gemma4VisionTrain&) = delete;

  // Runs every image of a batch, keeping what the backward needs. out = [Σ soft tokens,
  // text_hidden], images in order, each image's soft tokens exactly as Gemma4VisionEncoder::encode
  // gives them. Returns the per-image soft-token counts.
  std::vector<int64_t> forward(Context& ctx, const std::vector<VisionImage>& images, Tensor& out);
  // dout: d loss / d out of the last forward; accumulates into the LoRA gradients and (once
  // enable_base_grads was called) the base gradients.
  void backward(Context& ctx, const Tensor& dout);

  // Every linear a LoRA adapter may target, with PEFT's module names: the Gemma4ClippableLinear
  // projections by their inner nn.Linear ("model.vision_tower.encoder.layers.0.self_attn.q_proj.linear",
  // likewise k/v/o and mlp.gate_proj/up_proj/down_proj), then the plain linears
  // "model.vision_tower.patch_embedder.input_proj" and "model.embed_vision.embedding_projection".
  std::vector<TrainLinear*> adaptable_linears();
  // Full fine-tuning: registers every trainable weight through `grad_of` (its gradient slot; null:
  // frozen) in HF's parameter order: patch_embedder.position_embedding_table,
  // patch_embedder.input_proj.weight, then per layer q, k, v, o, q_norm, k_norm, gate, up, down,
  // input_layernorm, post_attention_layernorm, pre_feedforward_layernorm,
  // post_feedforward_layernorm; then embed_vision.embedding_projection.weight. std_bias and
  // std_scale are buffers in HF (no gradient) and stay constant.
  void enable_base_grads(const std::function<BaseParam*(const WeightRef&)>& grad_of);

  const Gemma4VisionConfig& config() const { return cfg_; }

 private:
  enum Proj { kQ, kK, kV, kO, kGate, kUp, kDown, kNumProj };  // gemma4_vision_layer_linears' order
  // One layer's saved activations over all the batch's rows (names follow layer_forward).
  struct LayerActs {
    Tensor x_in, xn1, q_raw, q, k_raw, k, v_raw, v, probs, att, o, x_mid, xn2, gate, up, act, m;
    std::vector<float> rstd1, rstd_q, rstd_k, rstd_v, rstd_o, rstd2, rstd_m;
  };

  void layer_forward(Context& ctx, int64_t l, Tensor& x);
  void layer_backward(Context& ctx, int64_t l, Tensor& dx);
  // 2-D RoPE over all rows, each at its patch's position (backward: the inverse rotation).
  void rope_rows(float* x, int64_t heads, bool backward) const;
  float* grad(const WeightRef& w) const;  // a norm's gradient buffer; null: frozen

  Gemma4VisionConfig cfg_;
  int64_t text_hidden_;
  WeightLoader loader_;
  Gemma4VisionWeights w_;
  nn::Rope rope_;
  std::vector<std::array<TrainLinear, kNumProj>> proj_;
  TrainLinear input_proj_, projection_;
  std::map<const WeightRef*, BaseParam*> grads_;

  // The last forward: each image's patch map, its first row, soft token and attention
  // probability (images are stacked), and the activations.
  std::vector<Gemma4VisionPatchMap> maps_;
  std::vector<int64_t> row0_, token0_, probs0_;
  int64_t rows_ = 0, tokens_ = 0, probs_ = 0;
  Tensor centered_;  // the patch embedding's input
  std::vector<LayerActs> acts_;
  Tensor tok_, tokn_;  // pooled soft tokens (standardized); RMSNorm'd (the projector's input)
  std::vector<float> rstd_tok_;
};

}  // namespace edgevl::train
