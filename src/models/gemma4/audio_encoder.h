// Gemma 4 audio tower (HF transformers Gemma4AudioModel, a USM-style Conformer) and its projector
// into the text decoder (Gemma4MultimodalEmbedder `embed_audio`). Spec: ../shared/specs/gemma4.md §4.
//
// Shapes (letters as in tensor/tensor.h, plus): M mel bins, Tf feature frames (10 ms), T output
// frames (40 ms: two stride-2 convolutions), D tower width, Do output_proj width, Dt text width.
//   features [Tf, M] --subsample--> [T, D] --conformer x L--> [T, D] --output_proj--> [T, Do]
//   --RMSNorm (no weight) + Linear--> soft tokens [T, Dt], of which the valid frames are kept.
#pragma once
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "io/hf_config.h"
#include "models/gemma4/clipped_linear.h"
#include "models/model.h"
#include "models/source.h"
#include "models/weights.h"
#include "tensor/context.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"

namespace edgevl {

struct Gemma4AudioConfig {
  int64_t hidden = 1024, n_layers = 12, n_heads = 8;
  int64_t conv_channels0 = 128, conv_channels1 = 32;  // subsampling_conv_channels
  int64_t n_mel = 128;  // mel bins the subsampler is sized for (HF: subsampling_conv_channels[0])
  int64_t conv_kernel = 5;                            // light conv (depthwise, causal)
  int64_t chunk = 12, context_left = 13, context_right = 0;
  float logit_cap = 50.0f;
  float invalid_logit = -1.0e9f;
  float residual_weight = 0.5f;
  float rms_eps = 1e-6f;
  float gradient_clipping = 1e10f;
  bool clipped_linears = true;
  ops::Activation act = ops::Activation::Silu;
  int64_t output_dims = 1536;  // output_proj_dims
  // Reproduce HF transformers' attention mask as its *eager* attention builds it (the goldens in
  // ../shared/golden/hf were made with eager attention). There create_bidirectional_mask returns
  // a float mask (0 = attend, finfo.min = not), which Gemma4AudioAttention then treats as boolean
  // with masked_fill(mask.logical_not(), ...): every key the window and padding mask allow is
  // hidden and every other key inside the sequence is attended to; keys outside the sequence stay
  // hidden. Off (the default): the intended mask, a query frame t sees the valid frames
  // t - (context_left - 2) .. t (+ context_right - 1 ahead), as a boolean (sdpa) mask gives.
  bool hf_eager_mask = false;

  int64_t head_dim() const { return hidden / n_heads; }
  // The chunked attention's key window per query chunk (HF Gemma4AudioAttention.context_size).
  int64_t context_size() const { return chunk + (context_left - 1) + context_right; }
  // Relative positions context_size()/2 .. 0 of the Transformer-XL term.
  int64_t rel_positions() const { return context_size() / 2 + 1; }
  // Gemma4AudioAttention scales q by head_dim^-0.5 / ln 2 (times softplus(per_dim_scale) per
  // dimension) and k by softplus(1) / ln 2, in double then rounded, as HF computes them.
  float q_scale() const { return (float)(std::pow((double)head_dim(), -0.5) / std::log(2.0)); }
  float k_scale() const { return (float)(std::log(1.0 + std::exp(1.0)) / std::log(2.0)); }
};

// Whether query frame t (of T) attends to key frame kv (inside the query's chunk window; may lie
// outside [0, T), which is zero padding) in Gemma4AudioAttention: the valid frames (key_valid[kv]
// nonzero; key_valid null: all valid) at distance t - kv in [0, context_left - 1) or kv - t in
// (0, context_right), as HF's blocked mask keeps them; with hf_eager_mask, the complement within
// the sequence (see Gemma4AudioConfig::hf_eager_mask). Hidden keys get attention_invalid_logits_value.
inline bool gemma4_audio_key_visible(const Gemma4AudioConfig& c, int64_t t, int64_t kv, int64_t T,
                                     const uint8_t* key_valid) {
  const bool in_range = kv >= 0 && kv < T;
  const int64_t dist = t - kv;
  const bool allowed = in_range && (!key_valid || key_valid[kv]) &&
                       ((dist >= 0 && dist < c.context_left - 1) || (dist < 0 && -dist < c.context_right));
  return c.hf_eager_mask ? in_range && !allowed : allowed;
}

// HF _rel_shift of the [chunk, Pn] matrix of query · relative-key products (Pn = rel_positions())
// into [chunk, C] (C = context_size()): row i zero-padded to C + 1 columns, flattened and re-cut
// into rows of C. Entry (i, j) is flat index i*C + j, i.e. row i, column j - i, or for j < i row
// i - 1, column C + 1 + j - i. Returns row * Pn + column of the source, or -1 where it is padding.
inline int64_t gemma4_audio_rel_shift_index(int64_t i, int64_t j, int64_t C, int64_t Pn) {
  if (j >= i) return j - i < Pn ? i * Pn + (j - i) : -1;
  return C + 1 + j - i < Pn ? (i - 1) * Pn + (C + 1 + j - i) : -1;
}

// `audio_config` is the audio_config object of a Gemma4ForConditionalGeneration config.json.
// Absent fields take Gemma4AudioConfig's defaults (those of HF); invalid values throw Error.
Gemma4AudioConfig gemma4_audio_config_from_hf(const HfConfig& audio_config);

// From a llama.cpp mmproj (clip.audio.* keys, projector type gemma4a): sizes from the keys and the
// tensor shapes (subsampler channels, output_proj width, depthwise kernel), clipped linears from
// the presence of their bounds, the settings llama.cpp fixes from gemma4_audio_mmproj_settings()
// keys or llama.cpp's values. `text_hidden` receives clip.audio.projection_dim.
Gemma4AudioConfig gemma4_audio_config_from_mmproj(const gguf::File& mmproj, int64_t* text_hidden);

// What llama.cpp's gemma4a graph fixes instead of reading (tools/mtmd/models/gemma4a.cpp and
// clip.cpp's PROJECTOR_TYPE_GEMMA4A: chunk 12, 12 past frames, causal, cap 50, residual 0.5, mask
// -1e9, no gradient clamp), so its converter writes no key for them. An edgevl mmproj carries a
// setting only where its tower differs (llama.cpp would then compute that tower with its own value);
// `key` is llama.cpp's where it has one (clip.audio.chunk_size), else under edgevl.audio.
struct Gemma4AudioMmprojSetting {
  const char* key;
  bool integer;     // u32 key, else f32
  double llamacpp;  // llama.cpp's fixed value: the default when the key is absent
  double (*get)(const Gemma4AudioConfig&);
  void (*set)(Gemma4AudioConfig&, double);
};
const std::vector<Gemma4AudioMmprojSetting>& gemma4_audio_mmproj_settings();

// One audio-tower tensor in both spellings, from the table the loader reads through: the HF name
// (Gemma4ForConditionalGeneration) and llama.cpp's mmproj name, as its converter maps them
// (conversion/gemma.py Gemma4VisionAudioModel.modify_tensors, then gguf-py tensor_mapping.py), with
// the converter's treatment of the values (its tensor_force_quant and modify_tensors).
enum class AudioTensorKind {
  Matrix,       // a linear: the output type
  F32Matrix,    // subsampler conv kernels and input projection: float32 whatever the output type
  Depthwise,    // the light conv's kernel: float32, [D, 1, K] in HF, [D, K] in the mmproj
  Vector,       // norms, the output_proj bias: float32
  PerDimScale,  // float32; the mmproj stores softplus(w) (llama.cpp multiplies q by it as stored)
  Clip,         // a Gemma4ClippableLinear bound: 0-d in HF, [1] in the mmproj, float32
};
struct Gemma4AudioTensor {
  std::string hf, gguf;
  std::vector<int64_t> shape, gguf_shape;  // HF's; the mmproj's
  AudioTensorKind kind;
};
std::vector<Gemma4AudioTensor> gemma4_audio_tensors(const Gemma4AudioConfig& c, int64_t text_hidden);
// F.softplus (beta 1, threshold 20) as the encoder applies it to per_dim_scale (and the mmproj
// writer, so that a float32 mmproj gives the HF folder's result bit for bit).
inline float gemma4_audio_softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

// Output frames for `frames` feature frames: two 3x3 stride-2 convolutions with padding 1, each
// ceil(n / 2). Frame t of the output is valid when feature frame 4t is.
int64_t gemma4_audio_output_frames(int64_t frames);
// The tower's output mask (HF Gemma4AudioModelOutput.attention_mask): mask[4t] for each output
// frame t; `mask` == nullptr means every frame is valid.
std::vector<uint8_t> gemma4_audio_output_mask(const uint8_t* mask, int64_t frames);

class Gemma4AudioEncoder {
 public:
  // Loads model.audio_tower.* and model.embed_audio.* from an HF source, or a.* / mm.a.* from a
  // llama.cpp mmproj (the same table, gemma4_audio_tensors()); `src` must outlive the encoder
  // (weights are used in place). `text_hidden` is the decoder's width (Dt).
  Gemma4AudioEncoder(const ModelSource& src, Gemma4AudioConfig cfg, int64_t text_hidden);

  const Gemma4AudioConfig& config() const { return cfg_; }
  void set_hf_eager_mask(bool on) { cfg_.hf_eager_mask = on; }
  int64_t text_hidden() const { return text_hidden_; }
  // The tower's weights by HF name (LoRA adapters at run time attach to its linears).
  const std::map<std::string, WeightRef*>& weights_by_hf_name() const { return loader_.by_hf_name(); }

  // features: [T, n_mel] log-mel frames of one clip, row-major; mask: T bytes (nonzero = valid
  // frame) or nullptr for all valid. Writes the projected soft tokens of the valid output frames
  // into `out` [N, text_hidden] and returns N. `tap` (may be empty) receives, over all output
  // frames, "audio.hidden_states.NN" (00 = input of layer 0, i = output of layer i, the last one
  // replaced by the output_proj result as HF does), "audio.last_hidden_state" and
  // "audio.audio_features" (the projector's output before the valid frames are picked).
  int64_t encode(Context& ctx, const float* features, const uint8_t* mask, int64_t T, Tensor& out,
                 const ActivationTap& tap) const;
  // The same with the sizes checked: features [T, n_mel], mask empty or T entries.
  int64_t encode(Context& ctx, const Tensor& features, const std::vector<uint8_t>& mask, Tensor& out,
                 const ActivationTap& tap = {}) const;

  // The checkpoint's tensors, as load_gemma4_audio_weights fills them (the training forward,
  // train/gemma4_audio, reads the same).
  struct LayerWeights {
    ClippedLinear ff1_up, ff1_down, ff2_up, ff2_down, q, k, v, post, lconv_start, lconv_end;
    WeightRef ff1_pre_norm, ff1_post_norm, ff2_pre_norm, ff2_post_norm;
    WeightRef norm_pre_attn, norm_post_attn, norm_out, lconv_pre_norm, lconv_conv_norm;
    WeightRef rel_k, per_dim_scale, dw_conv;
  };
  struct Weights {
    WeightRef conv0, norm0, conv1, norm1, input_proj, output_proj, output_bias, embed_proj;
    std::vector<LayerWeights> layers;
    bool per_dim_scale_softplus = false;  // mmproj: per_dim_scale already holds softplus(w)
  };

 private:
  Gemma4AudioConfig cfg_;
  int64_t text_hidden_ = 0;
  WeightLoader loader_;
  Weights w_;
  // Per layer: softplus(per_dim_scale) per head dimension, and the depthwise conv weight as [K][D].
  std::vector<std::vector<float>> q_dim_scale_, dw_taps_;
  // Subsampling conv kernels, float32, reordered to [Cout][kh][kw][Cin] so that an im2col row
  // copies runs of Cin contiguous channels; viewed as a [Cout, 9 Cin] F32 matrix for ops::linear.
  std::vector<float> conv0_k_, conv1_k_;
  WeightRef conv0_mat_, conv1_mat_;
  std::vector<float> rel_pos_;  // gemma4_audio_rel_pos_table
};

// Loads model.audio_tower.* and model.embed_audio.* from an HF folder, or the same tensors under
// their mmproj names (gemma4_audio_tensors()), into HF's layout: the depthwise kernel as [D, 1, K]
// (per_dim_scale stays softplus(w), flagged by per_dim_scale_softplus). Matrices in place, vectors
// as float32, the clippable linears with their bounds when cfg.clipped_linears; every weight is
// listed by its HF name. Throws Error on a missing or misshapen tensor.
// `mmproj`: the loader's source is such a file (WeightLoader picks the names by source, but the
// layout differences are this table's); the encoder passes src.is_gguf().
void load_gemma4_audio_weights(WeightLoader& loader, const Gemma4AudioConfig& cfg, int64_t text_hidden,
                               Gemma4AudioEncoder::Weights& w, bool mmproj = false);

// Gemma4AudioRelPositionalEncoding: for relative positions context_size()/2 .. 0, [sin | cos] of
// the position times hidden/2 inverse timescales spaced geometrically from 1 to 1e-4, float32 as
// HF computes it. [rel_positions(), hidden].
std::vector<float> gemma4_audio_rel_pos_table(const Gemma4AudioConfig& cfg);

}  // namespace edgevl
