// Gemma 4 vision tower (HF Gemma4VisionModel) and its projector into the text model
// (Gemma4MultimodalEmbedder, `embed_vision`): patches of any aspect ratio and count in, one soft
// token per pooling_kernel_size² patches out, already projected to the text hidden size.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "io/gguf.h"
#include "io/hf_config.h"
#include "models/gemma4/clipped_linear.h"
#include "models/model.h"
#include "models/weights.h"
#include "nn/attention.h"
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

// One encoder layer's weights (HF Gemma4VisionEncoderLayer).
struct Gemma4VisionLayerWeights {
  WeightRef attn_norm, post_attn_norm, ffn_norm, post_ffn_norm, q_norm, k_norm;
  ClippedLinear q, k, v, o, gate, up, down;
};

// The tower's and the projector's weights, shared by the inference encoder below and the training
// forward (train/gemma4_vision.h).
struct Gemma4VisionWeights {
  WeightRef input_proj, position_table, std_bias, std_scale, projection;
  std::vector<Gemma4VisionLayerWeights> layers;
  std::vector<float> patch_f32;  // mmproj: the patch embedding back in HF's (py, px, c) order
};

// Loads model.vision_tower.* and model.embed_vision.* from an HF Gemma4ForConditionalGeneration,
// or v.* / mm.* from a llama.cpp mmproj GGUF (the same table, gemma4_vision_tensors()). `loader`
// (over `src`) owns converted vectors and must outlive `w`; `w` must not move (input_proj may
// point into its patch_f32).
void load_gemma4_vision_weights(const ModelSource& src, WeightLoader& loader, const Gemma4VisionConfig& c,
                                int64_t text_hidden, Gemma4VisionWeights& w);
// Layer l's linears in HF's parameter order (q, k, v, o, gate, up, down), each with its HF module
// name ("model.vision_tower.encoder.layers.0.self_attn.q_proj").
std::vector<std::pair<std::string, ClippedLinear*>> gemma4_vision_layer_linears(Gemma4VisionLayerWeights& w,
                                                                                int64_t layer);

// Gemma4VisionRotaryEmbedding: each spatial axis gets frequencies over head_dim / 2.
nn::Rope make_gemma4_vision_rope(const Gemma4VisionConfig& c);
// HF apply_multidimensional_rope on one patch's heads [heads, Dh], in place: the first half of
// each head rotates by the patch's x, the second half by its y. (-x, -y) is the inverse rotation.
void apply_gemma4_vision_rope(const nn::Rope& rope, float* x, int64_t heads, int64_t Dh, int64_t px, int64_t py);
// The encoder layers' attention (Gemma4VisionAttention): bidirectional, scale 1 (the q/k norms
// stand in for 1/sqrt(Dh)); shared by the inference encoder and the training forward/backward.
nn::AttentionShape gemma4_vision_attention_shape(const Gemma4VisionConfig& c);

// Where one image's patches go: the rows the tower computes and the soft token each pools into
// (Gemma4VisionModel.forward's padding mask and Gemma4VisionPooler).
struct Gemma4VisionPatchMap {
  std::vector<int64_t> rows;    // the source patch of each computed row
  std::vector<int64_t> xs, ys;  // its position ((-1, -1): padding)
  std::vector<uint8_t> valid;   // 0: a padding row
  std::vector<int64_t> token;   // the soft token the row is averaged into; -1: none (padding)
  int64_t n_tokens = 0;
  bool all_valid() const;
};
// Checks the positions against the patch count and the position table. Padding patches change no
// real patch's output (every real query masks them) and pool into nothing, so they are computed
// only with `keep_padding` (taps report them, as HF does) or when the image has nothing else.
Gemma4VisionPatchMap gemma4_vision_patch_map(const Gemma4VisionConfig& c, const int64_t* positions,
                                             int64_t n_patches, bool keep_padding);
// Patch embedding input of the map's rows: 2·(p − 0.5), [rows, 3·p²].
void gemma4_vision_centered_pixels(const Gemma4VisionConfig& c, const Gemma4VisionPatchMap& m,
                                   const float* pixel_values, float* centered);
// x[row] += position_table[0][x] + position_table[1][y] for the real rows.
void add_gemma4_vision_positions(const Gemma4VisionConfig& c, const WeightRef& table, const Gemma4VisionPatchMap& m,
                                 float* x);
// Gemma4VisionPooler: pooled [m.n_tokens, hidden] = sqrt(hidden) · Σ x[row] / k² over each token's rows.
void gemma4_vision_pool(const Gemma4VisionConfig& c, const Gemma4VisionPatchMap& m, const float* x, float* pooled);
// Large models (standardize): tokens [n, hidden] = (tokens − std_bias) · std_scale; otherwise unchanged.
void gemma4_vision_standardize(const Gemma4VisionConfig& c, const Gemma4VisionWeights& w, float* tokens, int64_t n);

class Gemma4VisionEncoder {
 public:
  // Weights through load_gemma4_vision_weights (HF or mmproj); `src` must outlive the encoder.
  Gemma4VisionEncoder(const ModelSource& src, Gemma4VisionConfig cfg, int64_t text_hidden);

  const Gemma4VisionConfig& config() const { return cfg_; }
  int64_t text_hidden() const { return text_hidden_; }
  // The tower's weights by HF name (LoRA adapters at run time attach to its linears).
  const std::map<std::string, WeightRef*>& weights_by_hf_name() const { return loader_.by_hf_name(); }

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

 private:
  void layer_forward(Context& ctx, const Gemma4VisionLayerWeights& w, const Gemma4VisionPatchMap& m);

  Gemma4VisionConfig cfg_;
  int64_t text_hidden_;
  WeightLoader loader_;
  Gemma4VisionWeights w_;
  nn::Rope rope_;
  bool low_precision_attention_ = false;
  Tensor x_, xn_, h_, q_, k_, v_, attn_, gate_, up_, clip_;
};

}  // namespace edgevl
