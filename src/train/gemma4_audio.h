// The Gemma 4 audio tower's training forward and backward (HF Gemma4AudioModel in train mode,
// dropout 0, + the embed_audio projector): the function models/gemma4/audio_encoder computes, over
// a batch of clips, keeping what the backward reads. Spec ../shared/specs/gemma4.md §4. Every
// linear runs once per forward over the frames of all clips (TrainLinear keeps the state of its
// last call); the subsampling convolutions, the chunked attention and the depthwise conv run per
// clip. Shapes as in audio_encoder.h: N = Σ output frames of the clips, D tower width.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <vector>

#include "models/gemma4/audio_encoder.h"
#include "models/source.h"
#include "models/weights.h"
#include "tensor/context.h"
#include "tensor/tensor.h"
#include "train/model.h"

namespace edgevl::train {

// One clip: log-mel features [frames, n_mel], mask = frames bytes (nonzero = valid) or null for all valid.
struct AudioClip {
  const float* features = nullptr;
  const uint8_t* mask = nullptr;
  int64_t frames = 0;
};

class Gemma4AudioTrain {
 public:
  // HF Gemma4ForConditionalGeneration source (model.audio_tower.*, model.embed_audio.*), which must
  // outlive this. Needs hidden_act silu (every released tower).
  Gemma4AudioTrain(const ModelSource& src, Gemma4AudioConfig cfg, int64_t text_hidden);
  Gemma4AudioTrain(const Gemma4AudioTrain&) = delete;
  Gemma4AudioTrain& operator=(const Gemma4AudioTrain&) = delete;

  // Runs every clip, keeping what the backward needs. out = [Σ valid output frames, text_hidden],
  // clips in order: the soft tokens Gemma4AudioEncoder::encode gives. Returns per-clip counts.
  std::vector<int64_t> forward(Context& ctx, const std::vector<AudioClip>& clips, Tensor& out);
  // dout: d loss / d out of the last forward; accumulates into LoRA and (when enabled) base
  // gradients. The features get no gradient.
  void backward(Context& ctx, const Tensor& dout);

  // Every linear a LoRA adapter may target, by PEFT module name (ClippableLinears by their inner
  // ".linear", which PEFT adapts).
  std::vector<TrainLinear*> adaptable_linears();
  // Registers every trainable weight through `grad_of` in HF parameter order and keeps the slots
  // (null: frozen). A slot holds the whole tensor in checkpoint layout (conv weights [Cout, Cin, 3,
  // 3] and [D, 1, K] included). The forward reads the registered WeightRefs.
  void enable_base_grads(const std::function<BaseParam*(const WeightRef&)>& grad_of);

  // Every piecewise choice of the last forward: the subsampler's ReLUs, the gradient_clipping
  // clamps, the clippable linears' bounds. The forward is differentiable in the weights wherever
  // this stays the same (finite-difference checks compare only there).
  std::vector<uint8_t> kink_pattern() const;

  const Gemma4AudioConfig& config() const { return cfg_; }
  void set_hf_eager_mask(bool on) { cfg_.hf_eager_mask = on; }

 private:
  enum Proj { kFf1Up, kFf1Down, kFf2Up, kFf2Down, kQ, kK, kV, kPost, kRelK, kConvStart, kConvEnd, kNumProj };
  // A torch.clamp(x, ±gradient_clipping) before a norm. The bound (1e10) practically never
  // clips, so the pass-through mask is kept only when it did.
  struct GradClip {
    std::vector<uint8_t> inside;  // empty: nothing was clamped
    void forward(const float* x, float* y, int64_t n, float bound);
    void backward(float* d, int64_t n) const;  // zeroes d where the input was clamped
  };
  // Saved activations of one Gemma4AudioFeedForward (names as in feed_forward()).
  struct FfActs {
    Tensor xc, xn, up, act, hc;
    std::vector<float> rstd_pre, rstd_post;
    GradClip clip_in, clip_out;
  };
  struct LayerActs {
    FfActs ff1, ff2;
    // attention block
    Tensor xc, xn, q_raw, q, k, v, rel_k, att, hc;
    std::vector<float> rstd_pre, rstd_post, capped, probs;  // capped/probs: per clip, blocks × H × chunk × C
    GradClip clip_in, clip_out;
    // light conv
    Tensor x_lc, xn_lc, a, g, cc, cn, s;
    std::vector<float> rstd_lc, rstd_cn;
    GradClip clip_conv;
    // norm_out
    Tensor xc_out;
    std::vector<float> rstd_out;
    GradClip clip_out_norm;
  };
  // One clip of the last forward: where its frames sit and its subsampler activations.
  struct ClipActs {
    int64_t Tf = 0, T1 = 0, T = 0, row0 = 0, att0 = 0;  // att0: offset in LayerActs::capped/probs
    std::vector<float> features;                      // [Tf, n_mel]
    std::vector<uint8_t> mask, mask0, out_mask;       // mask/mask0 empty: all valid
    std::vector<float> y0, mean0, rstd0, z0, y1, mean1, rstd1;
  };
  struct Slots {
    BaseParam *ff1_pre = nullptr, *ff1_post = nullptr, *ff2_pre = nullptr, *ff2_post = nullptr;
    BaseParam *norm_pre_attn = nullptr, *norm_post_attn = nullptr, *norm_out = nullptr;
    BaseParam *lconv_pre = nullptr, *conv_norm = nullptr, *per_dim_scale = nullptr, *dw = nullptr;
  };

  // norm(clip(x)), the tower's pattern before every RMSNorm (a weighted one, over [N_, hidden]):
  // keeps xc = clip(x) and rstd for the backward; y may be x.
  void clipped_norm_forward(GradClip& clip, const float* x, Tensor& xc, const WeightRef& w, std::vector<float>& rstd,
                            float* y);
  // Its backward: d loss / d x from dy (and the norm weight's gradient into gw, when not null).
  static Tensor clipped_norm_backward(const GradClip& clip, const float* dy, const Tensor& xc, const WeightRef& w,
                                      const std::vector<float>& rstd, BaseParam* gw);
  void feed_forward(Context& ctx, int64_t l, bool second, Tensor& x);
  void feed_forward_backward(Context& ctx, int64_t l, bool second, Tensor& dx);
  void attention_block(Context& ctx, int64_t l, Tensor& x);
  void attention_block_backward(Context& ctx, int64_t l, Tensor& dx);
  void light_conv(Context& ctx, int64_t l, Tensor& x);
  void light_conv_backward(Context& ctx, int64_t l, Tensor& dx);
  void subsample(Context& ctx, ClipActs& c, float* rows);
  void subsample_backward(Context& ctx, ClipActs& c, const float* drows);
  bool trains_subsampler() const { return conv0_g_ || norm0_g_ || conv1_g_ || norm1_g_; }

  Gemma4AudioConfig cfg_;
  int64_t text_hidden_ = 0;
  WeightLoader loader_;
  Gemma4AudioEncoder::Weights w_;
  std::vector<float> rel_pos_;  // gemma4_audio_rel_pos_table
  // This forward's float32 copies of the conv weights and softplus(per_dim_scale): read at each
  // forward, so they follow the weights wherever they are changed.
  std::vector<float> conv0_f_, conv1_f_;
  std::vector<std::vector<float>> dw_f_, q_dim_scale_;

  TrainLinear input_proj_, output_proj_, embed_proj_;
  std::vector<std::array<TrainLinear, kNumProj>> proj_;
  BaseParam *conv0_g_ = nullptr, *norm0_g_ = nullptr, *conv1_g_ = nullptr, *norm1_g_ = nullptr;
  std::vector<Slots> slots_;

  // The last forward.
  std::vector<ClipActs> clips_;
  std::vector<LayerActs> acts_;
  int64_t N_ = 0;
  Tensor sub_, x_final_, proj_out_, pn_;  // input_proj input, output_proj input/output, projector input
  std::vector<float> rstd_pn_;
};

}  // namespace edgevl::train
