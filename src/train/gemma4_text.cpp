// The Gemma 4 text decoder's training forward and backward (HF Gemma4ForCausalLM in train mode,
// eager attention, dropout 0): the inference forward of models/gemma4/gemma4_text.cpp over a
// padded batch, keeping every activation the backward reads, and the backward walking it in
// reverse. Weights come from the same tables (gemma4_model_table / gemma4_layer_table) through the
// same loader. What the backward has that Llama's has not:
//  - the final soft-cap's derivative, sqrt(hidden)-scaled embeddings (tied lm_head: both uses of
//    embed_tokens add into one gradient);
//  - q/k norms (weighted) and the v norm (no weight), each an RMSNorm over one head;
//  - sandwich norms: the attention and MLP outputs are normalised before the residual add;
//  - per-layer embeddings (PLE): a gated residual per layer whose input comes from a second
//    embedding table and a projection of the scaled embeddings; its gradient is gathered over the
//    layers and flows back into both at the end;
//  - layer_scalar multiplies the residual stream (a buffer in HF: no gradient);
//  - KV sharing: a shared layer attends to an earlier layer's keys/values, so its attention
//    gradient for K/V goes to that layer (shared layers have no k/v weights, hence no gradient);
//  - the mixture of experts of the 26B-A4B (HF Gemma4TextRouter + Gemma4TextExperts, spec section
//    2.7) beside the dense MLP: its backward reaches the input through the experts and through the
//    router (softmax -> top-k -> renormalisation -> per-expert scale; the unselected experts get no
//    gradient). The experts' 3-D weights are not nn.Linear, so PEFT adapts none of them; the
//    router's proj is one (an adapter may target it).
// The vision-language model (HF Gemma4ForConditionalGeneration) wraps the same decoder: the soft
// tokens of its vision and audio towers (train/gemma4_vision.h, train/gemma4_audio.h) replace the
// placeholder tokens' embeddings, and their gradient at those rows flows back into the towers.
// Both embedding tables have padding_idx = pad_token_id (no gradient into that row), and the
// placeholders are looked up as the pad id, as HF does.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <numeric>

#include "core/error.h"
#include "models/common/decoder.h"
#include "models/gemma4/gemma4.h"
#include "models/gemma4/gemma4_config.h"
#include "models/gemma4/gemma4_tables.h"
#include "train/families.h"
#include "train/gemma4_audio.h"
#include "train/gemma4_moe.h"
#include "train/gemma4_vision.h"
#include "train/grad_ops.h"
#include "train/model.h"

namespace edgevl::train {

namespace {

enum Proj { kQ, kK, kV, kO, kGate, kUp, kDown, kPleGate, kPleProj, kNumProj };

// One layer's saved activations (names follow the forward in Gemma4Train::forward).
struct LayerActs {
  Tensor x_in, xn1, q_raw, q, k_raw, k, v_raw, v, probs, att, o, x_mid, xn2, gate, up, act, m, x_mid2;
  Tensor ple_g, ple_in, ple_act, ple_p;  // PLE residual
  std::vector<float> rstd1, rstd_q, rstd_k, rstd_v, rstd_o, rstd2, rstd_m, rstd_p;
  MoeActs moe;
  // Activation checkpointing: keep the layer's input, and its K/V, which later layers may share.
  void drop_all_but_input_and_kv() {
    for (Tensor* t : {&xn1, &q_raw, &q, &k_raw, &v_raw, &probs, &att, &o, &x_mid, &xn2, &gate, &up, &act, &m, &x_mid2,
                      &ple_g, &ple_in, &ple_act, &ple_p})
      *t = Tensor();
    for (auto* r : {&rstd1, &rstd_q, &rstd_k, &rstd_v, &rstd_o, &rstd2, &rstd_m, &rstd_p}) *r = {};
    moe.clear();
  }
};

TrainLinear linear(std::string module, const WeightRef* w) {
  TrainLinear l;
  l.module = std::move(module);
  l.w = w;
  return l;
}

void resize(Tensor& t, int64_t rows, int64_t cols) { t.resize({rows, cols}); }
void zero(Tensor& t) { std::fill(t.vec().begin(), t.vec().end(), 0.0f); }

class Gemma4Train final : public TrainableLM {
 public:
  // `lm` is where the decoder's HF names live: "model." (Gemma4ForCausalLM) or
  // "model.language_model." (Gemma4ForConditionalGeneration).
  Gemma4Train(std::unique_ptr<ModelSource> src, Gemma4TextConfig cfg, const std::string& lm)
      : src_(std::move(src)), cfg_(std::move(cfg)), loader_(*src_) {
    const Gemma4TextConfig& c = cfg_;
    if (lm != "model.") loader_.set_hf_prefix("model.", lm);
    load_gemma4_text_weights(loader_, c, w_);
    make_gemma4_ropes(c, w_, rope_sliding_, rope_global_);

    proj_.resize(c.n_layers);
    for (int64_t l = 0; l < c.n_layers; ++l) {
      Gemma4LayerWeights& w = w_.layers[l];
      const std::string p = lm + "layers." + std::to_string(l);
      auto& pr = proj_[l];
      pr[kQ] = linear(p + ".self_attn.q_proj", &w.q);
      pr[kK] = linear(p + ".self_attn.k_proj", &w.k);  // empty in KV-shared layers
      pr[kV] = linear(p + ".self_attn.v_proj", &w.v);  // empty there and with attention_k_eq_v
      pr[kO] = linear(p + ".self_attn.o_proj", &w.o);
      pr[kGate] = linear(p + ".mlp.gate_proj", &w.gate);
      pr[kUp] = linear(p + ".mlp.up_proj", &w.up);
      pr[kDown] = linear(p + ".mlp.down_proj", &w.down);
      pr[kPleGate] = linear(p + ".per_layer_input_gate", &w.ple_gate);
      pr[kPleProj] = linear(p + ".per_layer_projection", &w.ple_proj);
    }
    router_.resize(c.n_layers);
    for (int64_t l = 0; l < c.n_layers; ++l)  // nn.Linear inside Gemma4TextRouter (empty without MoE)
      router_[l] = linear(lm + "layers." + std::to_string(l) + ".router.proj", &w_.layers[l].router);
    ple_model_proj_ = linear(lm + "per_layer_model_projection", &w_.ple_model_proj);
    lm_head_ = linear("lm_head", &w_.lm_head);
    acts_.resize(c.n_layers);
  }

  // The towers of a Gemma4ForConditionalGeneration config (`top`) and its placeholder ids.
  void attach_media(const HfConfig& top) {
    const MediaTokens ids = gemma4_media_tokens(top);
    image_id_ = ids.image;
    audio_id_ = ids.audio;
    video_id_ = (int32_t)top.get_int("video_token_id", -1);
    if (top.has("vision_config"))
      vision_ = std::make_unique<Gemma4VisionTrain>(*src_, gemma4_vision_config_from_hf(top.sub("vision_config")),
                                                    cfg_.hidden);
    if (top.has("audio_config"))
      audio_ = std::make_unique<Gemma4AudioTrain>(*src_, gemma4_audio_config_from_hf(top.sub("audio_config")),
                                                  cfg_.hidden);
  }
  void match_hf_eager_attention(bool on) override {
    if (audio_) audio_->set_hf_eager_mask(on);
  }

  void forward(Context& ctx, const Batch& b) override;
  void backward(Context& ctx, const Tensor& dlogits) override;
  void set_recompute(bool on) override { recompute_ = on; }

 private:
  // The projections present in this checkpoint (lm_head excluded, as PEFT's all-linear does).
  std::vector<TrainLinear*> adaptable_linears() override {
    std::vector<TrainLinear*> v;
    if (vision_) v = vision_->adaptable_linears();
    for (size_t l = 0; l < proj_.size(); ++l) {
      for (TrainLinear& p : proj_[l])
        if (!p.w->empty()) v.push_back(&p);
      if (!router_[l].w->empty()) v.push_back(&router_[l]);
    }
    if (!ple_model_proj_.w->empty()) v.push_back(&ple_model_proj_);
    if (audio_)
      for (TrainLinear* p : audio_->adaptable_linears()) v.push_back(p);
    return v;
  }

  void on_enable_base_grads() override {
    // In HF's parameter order: the vision tower, then the decoder's embeddings, PLE model-level
    // weights, each layer, final norm, then the audio tower. The tied lm_head shares
    // embed_tokens' entry; layer_scalar is a buffer (no gradient). A MoE layer's extra weights follow
    // its others in Gemma4TextDecoderLayer's order: router (scale, per_expert_scale, proj), experts
    // (gate_up_proj, down_proj), post_feedforward_layernorm_1/2, pre_feedforward_layernorm_2.
    const auto slot = [this](const WeightRef& w) { return param(w); };
    if (vision_) vision_->enable_base_grads(slot);
    grad_of(w_.embed);
    grad_of(w_.ple_embed);
    bind(ple_model_proj_);
    grad_of(w_.ple_proj_norm);
    for (int64_t l = 0; l < cfg_.n_layers; ++l) {
      const Gemma4LayerWeights& w = w_.layers[l];
      for (TrainLinear& p : proj_[l])
        if (!p.w->empty()) bind(p);
      for (const WeightRef* n : {&w.attn_norm, &w.q_norm, &w.k_norm, &w.post_attn_norm, &w.ffn_norm,
                                 &w.post_ffn_norm, &w.ple_norm})
        grad_of(*n);
      if (!cfg_.moe()) continue;
      grad_of(w.router_scale);
      grad_of(w.expert_scale);
      bind(router_[l]);
      for (const WeightRef* n : {&w.experts_gate_up, &w.experts_down, &w.post_ffn_norm_1, &w.post_ffn_norm_2,
                                 &w.pre_ffn_norm_2})
        grad_of(*n);
    }
    grad_of(w_.final_norm);
    bind(lm_head_);
    if (audio_) audio_->enable_base_grads(slot);
  }

  void find_placeholders(const Batch& b);
  void merge_media(Context& ctx, const Batch& b);
  void media_backward(Context& ctx, const Tensor& dx0);
  // Whether a tower's backward has anything to compute: base gradients, or an adapter on it.
  template <class Tower>
  bool trains(Tower& tower) {
    if (base_grads_) return true;
    for (TrainLinear* p : tower.adaptable_linears())
      if (p->lora) return true;
    return false;
  }

  // The gradient buffer of a norm weight (null: frozen or no weight).
  float* grad(const WeightRef& w) { return base_grads_ && !w.empty() ? param(w)->grad.data() : nullptr; }

  nn::AttentionShape attention_shape(int64_t l) const {
    const Gemma4LayerShape& s = cfg_.layers[l];
    nn::AttentionShape a;
    a.n_heads = cfg_.n_heads;
    a.n_kv_heads = s.n_kv_heads;
    a.head_dim = s.head_dim;
    a.scale = 1.0f;  // the q/k norms take the place of 1/sqrt(d)
    a.sliding_window = s.sliding ? cfg_.sliding_window : 0;
    return a;
  }
  const nn::Rope& rope(int64_t l) const { return cfg_.layers[l].sliding ? rope_sliding_ : rope_global_; }
  void rope_rows(int64_t l, float* x, int64_t heads, bool backward) const {
    const int64_t T = batch_.T, Dh = cfg_.layers[l].head_dim;
    for (int64_t i = 0; i < batch_.B; ++i) {
      float* xi = x + i * T * heads * Dh;
      if (backward) rope_backward(rope(l), xi, T, heads, Dh, 0, positions_.data() + i * T);
      else rope_forward(rope(l), xi, T, heads, Dh, 0, positions_.data() + i * T);
    }
  }
  // Padding, packed sequences, and (sliding layers of the large models) bidirectional images.
  KeyMask key_mask(int64_t l) const {
    return {batch_.attention_mask.data(), batch_.sequence_ids.empty() ? nullptr : batch_.sequence_ids.data(),
            cfg_.layers[l].sliding && !image_groups_.empty() ? image_groups_.data() : nullptr};
  }
  void find_image_groups();

  void layer_forward(Context& ctx, int64_t l, Tensor& x);
  void layer_backward(Context& ctx, int64_t l, Tensor& dx);

 public:
  // Each MoE layer's top-k experts in the last forward, [layers][N*K] (tests; empty after a forward
  // with activation checkpointing, which drops them).
  std::vector<std::vector<int32_t>> routed_experts() const {
    std::vector<std::vector<int32_t>> r;
    if (cfg_.moe())
      for (const LayerActs& a : acts_) r.push_back(a.moe.chosen);
    return r;
  }

 private:
  bool recompute_ = false;

  std::unique_ptr<ModelSource> src_;
  Gemma4TextConfig cfg_;
  WeightLoader loader_;
  Gemma4Weights w_;
  nn::Rope rope_sliding_, rope_global_;
  std::vector<std::array<TrainLinear, kNumProj>> proj_;
  std::vector<TrainLinear> router_;  // per layer
  TrainLinear ple_model_proj_, lm_head_;

  // The last forward's batch and activations.
  Batch batch_;
  std::vector<LayerActs> acts_;
  Tensor x0_;                  // scaled embeddings (input of layer 0 and of the PLE projection)
  Tensor ple_p_, ple_;         // PLE: projection / sqrt(hidden) before its norm; the layers' inputs
  std::vector<float> rstd_ple_;
  Tensor x_final_, xn_final_;
  std::vector<float> rstd_final_;
  // Backward scratch: d/d(K, V) after RoPE / norm of each layer that owns keys and values (shared
  // layers add theirs into their source's), and d/d(PLE inputs).
  std::vector<Tensor> dk_, dv_;
  Tensor dple_;

  // Vision-language model: the towers, the placeholder ids, and of the last forward the ids as the
  // decoder looks them up (placeholders as the pad id) and the rows the soft tokens took.
  std::unique_ptr<Gemma4VisionTrain> vision_;
  std::unique_ptr<Gemma4AudioTrain> audio_;
  int32_t image_id_ = -1, audio_id_ = -1, video_id_ = -1;
  std::vector<int32_t> lookup_ids_;
  std::vector<int64_t> image_rows_, audio_rows_;
  std::vector<int64_t> positions_;     // token_positions of the last batch
  std::vector<int32_t> image_groups_;  // bidirectional_images: each run of image tokens, else empty
};

// HF create_causal_mask_mapping for the large models (use_bidirectional_attention "vision"): each
// contiguous run of image placeholders in a row is one group, whose tokens see each other in the
// sliding layers.
void Gemma4Train::find_image_groups() {
  image_groups_.clear();
  if (!cfg_.bidirectional_images || image_id_ < 0) return;
  const Batch& b = batch_;
  image_groups_.assign(b.B * b.T, -1);
  int32_t next = 0;
  for (int64_t i = 0; i < b.B; ++i)
    for (int64_t t = 0; t < b.T; ++t) {
      const int64_t r = i * b.T + t;
      if (b.input_ids[r] != image_id_) continue;
      image_groups_[r] = t > 0 && b.input_ids[r - 1] == image_id_ ? image_groups_[r - 1] : next++;
    }
}

// Gemma4Model.forward's merge, first half: every placeholder id becomes the pad id for the
// embedding lookups.
void Gemma4Train::find_placeholders(const Batch& b) {
  const int64_t N = b.B * b.T;
  lookup_ids_ = b.input_ids;
  image_rows_.clear();
  audio_rows_.clear();
  for (int64_t t = 0; t < N; ++t) {
    const int32_t id = b.input_ids[t];
    if (id < 0 || (id != image_id_ && id != audio_id_ && id != video_id_)) continue;
    EV_CHECK(id != video_id_, "train: video inputs are not supported (the batch has video placeholders)");
    (id == image_id_ ? image_rows_ : audio_rows_).push_back(t);
    lookup_ids_[t] = cfg_.pad_id;
  }
}

// Second half: each image's (clip's) soft tokens replace its placeholders' embeddings in reading
// order (masked_scatter), unscaled.
void Gemma4Train::merge_media(Context& ctx, const Batch& b) {
  const int64_t D = cfg_.hidden;
  auto fill = [&](const char* what, const std::vector<int64_t>& rows, const Tensor& soft) {
    EV_CHECK(soft.dim(0) == (int64_t)rows.size(), "train: the batch's ", what, " give ", soft.dim(0),
             " soft tokens for ", rows.size(), " placeholders");
    for (size_t i = 0; i < rows.size(); ++i) std::memcpy(x0_.row(rows[i]), soft.row(i), D * sizeof(float));
  };
  Tensor soft;
  if (!b.images.empty()) {
    EV_CHECK(vision_, src_->path(), ": the batch has images but the model has no vision tower");
    std::vector<VisionImage> images;
    for (const BatchImage& im : b.images) {
      EV_CHECK(im.n_patches > 0 && (int64_t)im.positions.size() == 2 * im.n_patches &&
                   (int64_t)im.pixels.size() == im.n_patches * vision_->config().patch_values(),
               "train: an image's pixel values or positions disagree with its ", im.n_patches, " patches");
      images.push_back({im.pixels.data(), im.positions.data(), im.n_patches});
    }
    vision_->forward(ctx, images, soft);
    fill("images", image_rows_, soft);
  } else {
    EV_CHECK(image_rows_.empty(), "train: the batch has ", image_rows_.size(), " image placeholders but no images");
  }
  if (!b.audio.empty()) {
    EV_CHECK(audio_, src_->path(), ": the batch has audio but the model has no audio tower");
    std::vector<AudioClip> clips;
    for (const BatchAudio& a : b.audio) {
      EV_CHECK(a.frames > 0 && (int64_t)a.features.size() == a.frames * audio_->config().n_mel &&
                   (a.mask.empty() || (int64_t)a.mask.size() == a.frames),
               "train: an audio clip's features or mask disagree with its ", a.frames, " frames");
      clips.push_back({a.features.data(), a.mask.empty() ? nullptr : a.mask.data(), a.frames});
    }
    audio_->forward(ctx, clips, soft);
    fill("audio clips", audio_rows_, soft);
  } else {
    EV_CHECK(audio_rows_.empty(), "train: the batch has ", audio_rows_.size(), " audio placeholders but no audio");
  }
}

// d loss / d (soft tokens) is d loss / d x0 at their rows.
void Gemma4Train::media_backward(Context& ctx, const Tensor& dx0) {
  const int64_t D = cfg_.hidden;
  auto gather = [&](const std::vector<int64_t>& rows) {
    Tensor d({(int64_t)rows.size(), D});
    for (size_t i = 0; i < rows.size(); ++i) std::memcpy(d.row(i), dx0.row(rows[i]), D * sizeof(float));
    return d;
  };
  if (!batch_.images.empty() && trains(*vision_)) vision_->backward(ctx, gather(image_rows_));
  if (!batch_.audio.empty() && trains(*audio_)) audio_->backward(ctx, gather(audio_rows_));
}

// HF Gemma4TextModel.forward (position_ids = arange(T) per row or per packed sequence, the key mask) +
// lm_head + final soft-capping.
void Gemma4Train::forward(Context& ctx, const Batch& b) {
  const Gemma4TextConfig& c = cfg_;
  const int64_t N = b.B * b.T, D = c.hidden, L = c.n_layers, P = c.ple_dim;
  check_batch(b);
  batch_ = b;
  positions_ = token_positions(b);
  find_image_groups();

  // Gemma4TextScaledWordEmbedding: E[id] * sqrt(hidden); then the media's soft tokens.
  resize(x0_, N, D);
  find_placeholders(b);
  embed_tokens(w_.embed, lookup_ids_, x0_.data());
  ops::scale(x0_.data(), (float)std::sqrt((double)D), N * D);
  merge_media(ctx, b);
  if (P > 0) {
    // Per-layer inputs [N, L*P]: (RMSNorm(proj(x0) / sqrt(hidden)) + E_ple[id] * sqrt(P)) / sqrt(2).
    resize(ple_p_, N, L * P);
    resize(ple_, N, L * P);
    rstd_ple_.resize(N * L);
    ple_model_proj_.forward(ctx, x0_.data(), N, ple_p_.data());
    ops::scale(ple_p_.data(), (float)(1.0 / std::sqrt((double)D)), N * L * P);
    rms_norm_forward(ple_p_.data(), w_.ple_proj_norm.f32(), ple_.data(), rstd_ple_.data(), N * L, P, c.rms_eps);
    std::vector<float> row(L * P);
    for (int64_t t = 0; t < N; ++t) {
      const int32_t id = lookup_ids_[t];
      EV_CHECK(id >= 0 && id < c.ple_vocab, "token id ", id, " is outside the per-layer vocabulary (", c.ple_vocab,
               " entries)");
      ops::embedding_row(w_.ple_embed, id, row.data());
      ops::add_scaled(ple_.row(t), row.data(), (float)std::sqrt((double)P), L * P);
    }
    ops::scale(ple_.data(), (float)(1.0 / std::sqrt(2.0)), N * L * P);
  }

  Tensor x = x0_;
  for (int64_t l = 0; l < L; ++l) {
    for (TrainLinear& q : proj_[l]) q.mark_dropout_stream();
    router_[l].mark_dropout_stream();
    layer_forward(ctx, l, x);
    if (recompute_) acts_[l].drop_all_but_input_and_kv();
  }
  x_final_ = x;
  resize(xn_final_, N, D);
  rstd_final_.resize(N);
  rms_norm_forward(x.data(), w_.final_norm.f32(), xn_final_.data(), rstd_final_.data(), N, D, c.rms_eps);
  logits_.resize({N, c.vocab});
  lm_head_.forward(ctx, xn_final_.data(), N, logits_.data());
  if (c.final_softcap > 0) softcap_forward(logits_.data(), c.final_softcap, logits_.numel());
}

// Gemma4TextDecoderLayer: sandwich-normed attention and MLP, the PLE residual, the layer scalar.
void Gemma4Train::layer_forward(Context& ctx, int64_t l, Tensor& x) {
  const Gemma4TextConfig& c = cfg_;
  const Gemma4LayerShape& sh = c.layers[l];
  const Gemma4LayerWeights& w = w_.layers[l];
  auto& p = proj_[l];
  LayerActs& s = acts_[l];
  const int64_t N = batch_.B * batch_.T, D = c.hidden, H = c.n_heads, Hkv = sh.n_kv_heads, Dh = sh.head_dim;
  const int64_t F = sh.ffn, P = c.ple_dim;

  s.x_in = x;
  resize(s.xn1, N, D);
  s.rstd1.resize(N);
  rms_norm_forward(x.data(), w.attn_norm.f32(), s.xn1.data(), s.rstd1.data(), N, D, c.rms_eps);
  // Q: project, RMSNorm per head (weighted), RoPE.
  resize(s.q_raw, N, H * Dh);
  resize(s.q, N, H * Dh);
  s.rstd_q.resize(N * H);
  p[kQ].forward(ctx, s.xn1.data(), N, s.q_raw.data());
  rms_norm_forward(s.q_raw.data(), w.q_norm.f32(), s.q.data(), s.rstd_q.data(), N * H, Dh, c.rms_eps);
  rope_rows(l, s.q.data(), H, false);
  if (!c.shared(l)) {
    // K: project, k_norm, RoPE. V: project (or the raw K with attention_k_eq_v), v_norm without weight.
    resize(s.k_raw, N, Hkv * Dh);
    resize(s.k, N, Hkv * Dh);
    resize(s.v, N, Hkv * Dh);
    s.rstd_k.resize(N * Hkv);
    s.rstd_v.resize(N * Hkv);
    p[kK].forward(ctx, s.xn1.data(), N, s.k_raw.data());
    if (sh.v_from_k) {
      s.v_raw = s.k_raw;
    } else {
      resize(s.v_raw, N, Hkv * Dh);
      p[kV].forward(ctx, s.xn1.data(), N, s.v_raw.data());
    }
    rms_norm_forward(s.k_raw.data(), w.k_norm.f32(), s.k.data(), s.rstd_k.data(), N * Hkv, Dh, c.rms_eps);
    rms_norm_forward(s.v_raw.data(), nullptr, s.v.data(), s.rstd_v.data(), N * Hkv, Dh, c.rms_eps);
    rope_rows(l, s.k.data(), Hkv, false);
  }
  const LayerActs& kv = acts_[sh.kv_source];
  s.probs.resize({batch_.B, H, batch_.T, batch_.T});
  resize(s.att, N, H * Dh);
  attention_forward(attention_shape(l), s.q.data(), kv.k.data(), kv.v.data(), key_mask(l), batch_.B, batch_.T,
                    s.probs.data(), s.att.data(), &ctx.pool);
  resize(s.o, N, D);
  p[kO].forward(ctx, s.att.data(), N, s.o.data());
  Tensor h({N, D});
  s.rstd_o.resize(N);
  rms_norm_forward(s.o.data(), w.post_attn_norm.f32(), h.data(), s.rstd_o.data(), N, D, c.rms_eps);
  ops::add(x.data(), h.data(), N * D);
  s.x_mid = x;

  // MLP: down(gelu_tanh(gate(xn2)) * up(xn2)), post-normed.
  resize(s.xn2, N, D);
  s.rstd2.resize(N);
  rms_norm_forward(x.data(), w.ffn_norm.f32(), s.xn2.data(), s.rstd2.data(), N, D, c.rms_eps);
  resize(s.gate, N, F);
  resize(s.up, N, F);
  resize(s.act, N, F);
  p[kGate].forward(ctx, s.xn2.data(), N, s.gate.data());
  p[kUp].forward(ctx, s.xn2.data(), N, s.up.data());
  gated_act_forward(c.act, s.gate.data(), s.up.data(), s.act.data(), N * F);
  resize(s.m, N, D);
  p[kDown].forward(ctx, s.act.data(), N, s.m.data());
  s.rstd_m.resize(N);
  if (c.moe())  // the experts beside the MLP: both post-normed, summed
    gemma4_moe_forward(ctx, c, w, router_[l], s.x_mid, s.m, N, s.moe);
  const Tensor& ffn_out = c.moe() ? s.moe.sum12 : s.m;
  rms_norm_forward(ffn_out.data(), w.post_ffn_norm.f32(), h.data(), s.rstd_m.data(), N, D, c.rms_eps);
  ops::add(x.data(), h.data(), N * D);

  if (P > 0) {
    // x += RMSNorm(ple_proj(gelu_tanh(ple_gate(x)) * ple[:, l])).
    s.x_mid2 = x;
    resize(s.ple_g, N, P);
    resize(s.ple_in, N, P);
    resize(s.ple_act, N, P);
    resize(s.ple_p, N, D);
    s.rstd_p.resize(N);
    p[kPleGate].forward(ctx, x.data(), N, s.ple_g.data());
    for (int64_t t = 0; t < N; ++t) std::memcpy(s.ple_in.row(t), ple_.row(t) + l * P, P * sizeof(float));
    gated_act_forward(c.act, s.ple_g.data(), s.ple_in.data(), s.ple_act.data(), N * P);
    p[kPleProj].forward(ctx, s.ple_act.data(), N, s.ple_p.data());
    rms_norm_forward(s.ple_p.data(), w.ple_norm.f32(), h.data(), s.rstd_p.data(), N, D, c.rms_eps);
    ops::add(x.data(), h.data(), N * D);
  }
  ops::scale(x.data(), w.scalar.f32()[0], N * D);
}

void Gemma4Train::backward(Context& ctx, const Tensor& dlogits) {
  const Gemma4TextConfig& c = cfg_;
  const int64_t N = batch_.B * batch_.T, D = c.hidden, L = c.n_layers, P = c.ple_dim;
  EV_CHECK(N > 0 && dlogits.numel() == N * c.vocab, "train: backward without a matching forward");

  const float* dlog = dlogits.data();
  Tensor dz;
  if (c.final_softcap > 0) {
    dz.resize({N, c.vocab});
    zero(dz);
    softcap_backward(logits_.data(), c.final_softcap, dlogits.data(), dz.data(), dz.numel());
    dlog = dz.data();
  }
  Tensor dxn({N, D}), dx({N, D});
  zero(dxn);
  zero(dx);
  lm_head_.backward(ctx, xn_final_.data(), dlog, N, dxn.data());
  rms_norm_backward(dxn.data(), x_final_.data(), w_.final_norm.f32(), rstd_final_.data(), dx.data(),
                    grad(w_.final_norm), N, D);

  dk_.assign(L, Tensor());
  dv_.assign(L, Tensor());
  for (int64_t l = 0; l < L; ++l)
    if (!c.shared(l)) {
      const int64_t kw = c.layers[l].n_kv_heads * c.layers[l].head_dim;
      resize(dk_[l], N, kw);
      resize(dv_[l], N, kw);
      zero(dk_[l]);
      zero(dv_[l]);
    }
  if (P > 0) {
    resize(dple_, N, L * P);
    zero(dple_);
  }
  for (int64_t l = L - 1; l >= 0; --l) layer_backward(ctx, l, dx);

  if (P > 0) {
    // ple = (RMSNorm(proj(x0) / sqrt(D)) + E_ple[id] * sqrt(P)) / sqrt(2).
    const float inv_sqrt2 = (float)(1.0 / std::sqrt(2.0));
    if (base_grads_) {
      Tensor dtok = dple_;
      ops::scale(dtok.data(), (float)(std::sqrt((double)P) / std::sqrt(2.0)), N * L * P);
      embedding_backward(lookup_ids_.data(), N, dtok.data(), param(w_.ple_embed)->grad.data(), L * P, c.pad_id);
    }
    ops::scale(dple_.data(), inv_sqrt2, N * L * P);
    Tensor dp({N, L * P});
    zero(dp);
    rms_norm_backward(dple_.data(), ple_p_.data(), w_.ple_proj_norm.f32(), rstd_ple_.data(), dp.data(),
                      grad(w_.ple_proj_norm), N * L, P);
    ops::scale(dp.data(), (float)(1.0 / std::sqrt((double)D)), N * L * P);
    ple_model_proj_.backward(ctx, x0_.data(), dp.data(), N, dx.data());
  }
  media_backward(ctx, dx);
  if (base_grads_) {
    ops::scale(dx.data(), (float)std::sqrt((double)D), N * D);
    embedding_backward(lookup_ids_.data(), N, dx.data(), param(w_.embed)->grad.data(), D, c.pad_id);
  }
}

// dx: d loss / d (layer l's output) on entry, d loss / d (its input) on return.
void Gemma4Train::layer_backward(Context& ctx, int64_t l, Tensor& dx) {
  const Gemma4TextConfig& c = cfg_;
  const Gemma4LayerShape& sh = c.layers[l];
  const Gemma4LayerWeights& w = w_.layers[l];
  auto& p = proj_[l];
  if (recompute_) {  // the layer again from its input, with the same dropout masks
    Tensor x = acts_[l].x_in;
    for (TrainLinear& q : p) q.rewind_dropout_stream();
    router_[l].rewind_dropout_stream();
    layer_forward(ctx, l, x);
  }
  const LayerActs& s = acts_[l];
  const int64_t N = batch_.B * batch_.T, D = c.hidden, H = c.n_heads, Hkv = sh.n_kv_heads, Dh = sh.head_dim;
  const int64_t F = sh.ffn, P = c.ple_dim;

  ops::scale(dx.data(), w.scalar.f32()[0], N * D);
  Tensor dh({N, D});
  if (P > 0) {
    // x_out = x_mid2 + RMSNorm(ple_proj(act(ple_gate(x_mid2)) * ple_in)).
    Tensor dact({N, P}), dg({N, P}), din({N, P});
    zero(dh);
    zero(dact);
    zero(dg);
    zero(din);
    rms_norm_backward(dx.data(), s.ple_p.data(), w.ple_norm.f32(), s.rstd_p.data(), dh.data(), grad(w.ple_norm), N,
                      D);
    p[kPleProj].backward(ctx, s.ple_act.data(), dh.data(), N, dact.data());
    gated_act_backward(c.act, s.ple_g.data(), s.ple_in.data(), dact.data(), dg.data(), din.data(), N * P);
    for (int64_t t = 0; t < N; ++t) ops::add(dple_.row(t) + l * P, din.row(t), P);
    p[kPleGate].backward(ctx, s.x_mid2.data(), dg.data(), N, dx.data());
  }

  // MLP: x_mid2 = x_mid + RMSNorm(down(act(gate(xn2)) * up(xn2))), xn2 = norm(x_mid). With MoE the
  // RMSNorm's input is post_ffn_norm_1(down(...)) + post_ffn_norm_2(experts(x_mid)).
  {
    Tensor dact({N, F}), dgate({N, F}), dup({N, F}), dxn({N, D});
    for (Tensor* t : {&dh, &dact, &dgate, &dup, &dxn}) zero(*t);
    const Tensor& ffn_out = c.moe() ? s.moe.sum12 : s.m;
    rms_norm_backward(dx.data(), ffn_out.data(), w.post_ffn_norm.f32(), s.rstd_m.data(), dh.data(),
                      grad(w.post_ffn_norm), N, D);
    if (c.moe()) {
      Tensor dm({N, D});
      zero(dm);
      const Gemma4MoeGrads g{grad(w.router_scale),  grad(w.expert_scale),   grad(w.experts_gate_up),
                             grad(w.experts_down),  grad(w.pre_ffn_norm_2), grad(w.post_ffn_norm_1),
                             grad(w.post_ffn_norm_2)};
      gemma4_moe_backward(ctx, c, w, router_[l], s.x_mid, s.m, N, s.moe, g, dh.data(), dm.data(), dx);
      std::swap(dh, dm);
    }
    p[kDown].backward(ctx, s.act.data(), dh.data(), N, dact.data());
    gated_act_backward(c.act, s.gate.data(), s.up.data(), dact.data(), dgate.data(), dup.data(), N * F);
    p[kGate].backward(ctx, s.xn2.data(), dgate.data(), N, dxn.data());
    p[kUp].backward(ctx, s.xn2.data(), dup.data(), N, dxn.data());
    rms_norm_backward(dxn.data(), s.x_mid.data(), w.ffn_norm.f32(), s.rstd2.data(), dx.data(), grad(w.ffn_norm), N, D);
  }

  // Attention: x_mid = x_in + RMSNorm(o(attn(q, K_src, V_src))), q = rope(q_norm(q_proj(xn1))).
  Tensor datt({N, H * Dh}), dq({N, H * Dh}), dq_raw({N, H * Dh}), dxn({N, D});
  for (Tensor* t : {&dh, &datt, &dq, &dq_raw, &dxn}) zero(*t);
  rms_norm_backward(dx.data(), s.o.data(), w.post_attn_norm.f32(), s.rstd_o.data(), dh.data(), grad(w.post_attn_norm),
                    N, D);
  p[kO].backward(ctx, s.att.data(), dh.data(), N, datt.data());
  const LayerActs& kv = acts_[sh.kv_source];
  attention_backward(attention_shape(l), datt.data(), s.q.data(), kv.k.data(), kv.v.data(), s.probs.data(),
                     key_mask(l), batch_.B, batch_.T, dq.data(), dk_[sh.kv_source].data(), dv_[sh.kv_source].data(),
                     &ctx.pool);
  rope_rows(l, dq.data(), H, true);
  rms_norm_backward(dq.data(), s.q_raw.data(), w.q_norm.f32(), s.rstd_q.data(), dq_raw.data(), grad(w.q_norm), N * H,
                    Dh);
  p[kQ].backward(ctx, s.xn1.data(), dq_raw.data(), N, dxn.data());
  if (!c.shared(l)) {
    // This layer's K/V gradient holds its own attention's and every layer sharing them.
    Tensor dk_raw({N, Hkv * Dh}), dv_raw({N, Hkv * Dh});
    zero(dk_raw);
    zero(dv_raw);
    rope_rows(l, dk_[l].data(), Hkv, true);
    rms_norm_backward(dk_[l].data(), s.k_raw.data(), w.k_norm.f32(), s.rstd_k.data(), dk_raw.data(), grad(w.k_norm),
                      N * Hkv, Dh);
    float* dv_to = sh.v_from_k ? dk_raw.data() : dv_raw.data();  // k_eq_v: V is the raw K
    rms_norm_backward(dv_[l].data(), s.v_raw.data(), nullptr, s.rstd_v.data(), dv_to, nullptr, N * Hkv, Dh);
    p[kK].backward(ctx, s.xn1.data(), dk_raw.data(), N, dxn.data());
    if (!sh.v_from_k) p[kV].backward(ctx, s.xn1.data(), dv_raw.data(), N, dxn.data());
  }
  rms_norm_backward(dxn.data(), s.x_in.data(), w.attn_norm.f32(), s.rstd1.data(), dx.data(), grad(w.attn_norm), N, D);
  if (recompute_) acts_[l].drop_all_but_input_and_kv();
}

}  // namespace

std::vector<std::vector<int32_t>> gemma4_routed_experts(const TrainableLM& m) {
  const auto* g = dynamic_cast<const Gemma4Train*>(&m);
  return g ? g->routed_experts() : std::vector<std::vector<int32_t>>{};
}

std::unique_ptr<TrainableLM> make_gemma4_trainable(std::unique_ptr<ModelSource> src) {
  if (src->is_gguf()) {
    Gemma4TextConfig cfg = gemma4_text_config_from_gguf(src->gguf());
    return std::make_unique<Gemma4Train>(std::move(src), std::move(cfg), "model.");
  }
  const HfConfig top = src->hf();
  const bool nested = top.get_string("model_type", "") == "gemma4";
  Gemma4TextConfig cfg = gemma4_text_config_from_hf(nested ? top.sub("text_config") : top);
  auto m = std::make_unique<Gemma4Train>(std::move(src), std::move(cfg), nested ? "model.language_model." : "model.");
  if (nested) m->attach_media(top);
  return m;
}

}  // namespace edgevl::train
