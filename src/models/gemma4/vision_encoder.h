// Gemma 4 vision tower (HF Gemma4VisionModel) and its projector into the text model
// (Gemma4MultimodalEmbedder, `embed_vision`): patches of any aspect ratio and count in, one soft
// token per pooling_kernel_size² patches out, already projected to the text hidden size.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "io/hf_config.h"
#include "models/gemma4/clipped_linear.h"
#include "models/model.h"
#include "nn/rope.h"
#include "tensor/ops.h"

namespace edgevl {

struct Gemma4VisionConfig {
  int64_t hidden = 0, ffn = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int64_t patch_size = 16, pooling_kernel = 3, position_table = 10240;
  int64_t default_output_length = 280;
  float rms_eps = 1e-6f;
  double rope_theta = 100.0;
  ops::Activation act = ops::Activation::GeluTanh;
  bool clipped_linears = false;  // on-device models: clamps stored per linear
  bool standardize = false;      // large models: (h - std_bias) * std_scale after pooling

  int64_t patch_values() const { return 3 * patch_size * patch_size; }
};

Gemma4VisionConfig gemma4_vision_config_from_hf(const HfConfig& vision_config);
// From a llama.cpp mmproj (`clip.vision.*` keys, projector type gemma4v); `text_hidden` receives
// clip.vision.projection_dim.
Gemma4VisionConfig gemma4_vision_config_from_mmproj(const gguf::File& mmproj, int64_t* text_hidden);

// One vision-tower tensor in both spellings, from the table the encoder loads through: the HF
// name (Gemma4ForConditionalGeneration) and llama.cpp's mmproj name (conversion/gemma.py,
// Gemma4VisionAudioModel). `shape` is the HF one; the mmproj differs only for the patch
// embedding ([D, 3, p, p], channel-major) and the clip bounds ([1] instead of 0-d).
enum class VisionTensorKind { Matrix, Vector, Clip, PositionTable, PatchEmbedding };
struct Gemma4VisionTensor {
  std::string hf, gguf;
  std::vector<int64_t> shape;
  VisionTensorKind kind;
};
std::vector<Gemma4VisionTensor> gemma4_vision_tensors(const Gemma4VisionConfig& c, int64_t text_hidden);

class Gemma4VisionEncoder {
 public:
  // Loads model.vision_tower.* and model.embed_vision.* from an HF Gemma4ForConditionalGeneration,
  // or v.* / mm.* from a llama.cpp mmproj GGUF (the same table, gemma4_vision_tensors()).
  Gemma4VisionEncoder(const ModelSource& src, Gemma4VisionConfig cfg, int64_t text_hidden);

  const Gemma4VisionConfig& config() const { return cfg_; }
  int64_t text_hidden() const { return text_hidden_; }

  // Attention products (q·kᵀ and p·v) with Q8_0 operands on the int8 kernels instead of F32. On
  // by default when the tower's matrices are block-quantized (Q8_0, Q4_0, ...: their rounding
  // already dominates); F32/F16/BF16 towers keep float attention. The environment variable
  // EDGEVL_VISION_ATTENTION=q8_0|f32 overrides the default; this call overrides both.
  void set_low_precision_attention(bool on) { low_precision_attention_ = on; }
  bool low_precision_attention() const { return low_precision_attention_; }

  // One image: pixel_values [n_patches, 3·p²] in [0, 1] (the processor's layout, padding patches
  // included) and positions [n_patches, 2] as (x, y), (-1, -1) for padding. n_patches must be a
  // multiple of pooling_kernel². Writes the soft tokens [N, text_hidden] into `out` and returns N.
  // `tap` receives vision.hidden_states.NN (per-layer, before pooling; the last is the pooled
  // output, as HF reports it), vision.last_hidden_state and vision.image_features.
  int64_t encode(Context& ctx, const float* pixel_values, const int64_t* positions, int64_t n_patches, Tensor& out,
                 const ActivationTap& tap = {});

 public:
  struct Layer {
    WeightRef attn_norm, post_attn_norm, ffn_norm, post_ffn_norm, q_norm, k_norm;
    ClippedLinear q, k, v, o, gate, up, down;
  };
 private:
  void layer_forward(Context& ctx, const Layer& w, const std::vector<int64_t>& xs, const std::vector<int64_t>& ys,
                     const std::vector<uint8_t>& valid, int64_t n);

  Gemma4VisionConfig cfg_;
  int64_t text_hidden_;
  WeightLoader loader_;
  WeightRef input_proj_, position_table_, std_bias_, std_scale_, projection_;
  std::vector<Layer> layers_;
  nn::Rope rope_;  // one spatial axis: head_dim / 2 dims
  std::vector<float> patch_f32_;  // mmproj: the patch embedding back in HF's (py, px, c) order
  bool low_precision_attention_ = false;
  Tensor x_, xn_, h_, q_, k_, v_, attn_, gate_, up_, clip_;
};

}  // namespace edgevl
