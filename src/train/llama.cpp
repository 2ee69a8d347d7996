// The Llama family's training forward and backward (HF LlamaForCausalLM in train mode, dropout 0):
// the inference forward of models/llama/llama.cpp over a padded batch, keeping every activation
// the backward reads, and the backward walking it in reverse. Weights come from the same tables
// (llama_model_table / llama_layer_table) through the same loader.
#include <array>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "models/llama/llama.h"
#include "train/grad_ops.h"
#include "train/model.h"

namespace edgevl::train {

namespace {

enum Proj { kQ, kK, kV, kO, kGate, kUp, kDown, kNumProj };

struct LayerActs {
  Tensor x_in, xn1, q, k, v, probs, att, x_mid, xn2, gate, up, act;
  std::vector<float> rstd1, rstd2;
  // Activation checkpointing: keep the layer's input only; the backward recomputes the rest.
  void drop_all_but_input() {
    for (Tensor* t : {&xn1, &q, &k, &v, &probs, &att, &x_mid, &xn2, &gate, &up, &act}) *t = Tensor();
    rstd1 = {};
    rstd2 = {};
  }
};

TrainLinear linear(std::string module, const WeightRef* w, const WeightRef* bias) {
  TrainLinear l;
  l.module = std::move(module);
  l.w = w;
  l.bias = bias;
  return l;
}

nn::AttentionShape attention_shape(const DecoderConfig& d) {
  nn::AttentionShape a;
  a.n_heads = d.n_heads;
  a.n_kv_heads = d.n_kv_heads;
  a.head_dim = d.head_dim;
  a.scale = d.attn_scale > 0 ? d.attn_scale : 1.0f / std::sqrt((float)d.head_dim);
  return a;
}

class LlamaTrain final : public TrainableLM {
 public:
  LlamaTrain(std::unique_ptr<ModelSource> src, LlamaConfig cfg)
      : src_(std::move(src)), cfg_(std::move(cfg)), loader_(*src_) {
    const DecoderConfig& d = cfg_.dec;
    EV_CHECK(cfg_.mup.embedding == 1 && cfg_.mup.residual == 1 && cfg_.mup.logits_div == 1,
             src_->path(), ": µP multipliers have no training forward yet");
    loader_.load_table(w_, llama_model_table(d));
    if (w_.lm_head.empty()) w_.lm_head = loader_.tied_output(w_.embed);
    w_.layers.resize(d.n_layers);
    const auto table = llama_layer_table(d);
    for (int64_t l = 0; l < d.n_layers; ++l) loader_.load_table(w_.layers[l], table, l);
    rope_ = nn::Rope(d.rope_global, d.head_dim);
    if (!cfg_.rope_freq_factors.empty()) rope_.divide_frequencies(cfg_.rope_freq_factors);

    auto bias = [](const WeightRef& b) { return b.empty() ? nullptr : &b; };
    proj_.resize(d.n_layers);
    for (int64_t l = 0; l < d.n_layers; ++l) {
      DecoderLayerWeights& w = w_.layers[l];
      const std::string p = "model.layers." + std::to_string(l);
      proj_[l][kQ] = linear(p + ".self_attn.q_proj", &w.q, bias(w.q_bias));
      proj_[l][kK] = linear(p + ".self_attn.k_proj", &w.k, bias(w.k_bias));
      proj_[l][kV] = linear(p + ".self_attn.v_proj", &w.v, bias(w.v_bias));
      proj_[l][kO] = linear(p + ".self_attn.o_proj", &w.o, bias(w.o_bias));
      proj_[l][kGate] = linear(p + ".mlp.gate_proj", &w.gate, bias(w.gate_bias));
      proj_[l][kUp] = linear(p + ".mlp.up_proj", &w.up, bias(w.up_bias));
      proj_[l][kDown] = linear(p + ".mlp.down_proj", &w.down, bias(w.down_bias));
    }
    lm_head_ = linear("lm_head", &w_.lm_head, nullptr);
    acts_.resize(d.n_layers);
  }

  void forward(Context& ctx, const Batch& b) override;
  void backward(Context& ctx, const Tensor& dlogits) override;
  void set_recompute(bool on) override { recompute_ = on; }

 private:
  void layer_forward(Context& ctx, int64_t l, Tensor& x);

  std::vector<TrainLinear*> adaptable_linears() override {
    std::vector<TrainLinear*> v;
    for (auto& layer : proj_)
      for (TrainLinear& p : layer) v.push_back(&p);
    return v;
  }

  void on_enable_base_grads() override {
    // In the checkpoint's order: embedding, then each layer as HF lists it, final norm, head.
    grad_of(w_.embed);
    for (int64_t l = 0; l < cfg_.dec.n_layers; ++l) {
      for (TrainLinear& p : proj_[l]) bind(p);
      grad_of(w_.layers[l].attn_norm);
      grad_of(w_.layers[l].ffn_norm);
    }
    grad_of(w_.final_norm);
    bind(lm_head_);
  }

  std::unique_ptr<ModelSource> src_;
  LlamaConfig cfg_;
  WeightLoader loader_;
  DecoderWeights w_;
  nn::Rope rope_;
  std::vector<std::array<TrainLinear, kNumProj>> proj_;
  TrainLinear lm_head_;

  // The last forward's batch, its token positions and activations.
  Batch batch_;
  std::vector<int64_t> positions_;
  KeyMask key_mask() const {
    return {batch_.attention_mask.data(), batch_.sequence_ids.empty() ? nullptr : batch_.sequence_ids.data()};
  }
  std::vector<LayerActs> acts_;
  bool recompute_ = false;
  Tensor x_final_, xn_final_;
  std::vector<float> rstd_final_;
};

// HF LlamaModel.forward (position_ids = arange(T) per row, or per sequence of a packed row; the
// padding mask on keys) + lm_head.
void LlamaTrain::forward(Context& ctx, const Batch& b) {
  const DecoderConfig& d = cfg_.dec;
  const int64_t N = b.B * b.T, D = d.hidden;
  check_batch(b);
  batch_ = b;
  positions_ = token_positions(b);
  Tensor x({N, D});
  embed_tokens(w_.embed, b.input_ids, x.data());
  for (int64_t l = 0; l < d.n_layers; ++l) {
    for (TrainLinear& p : proj_[l]) p.mark_dropout_stream();
    layer_forward(ctx, l, x);
    if (recompute_) acts_[l].drop_all_but_input();
  }
  x_final_ = x;
  xn_final_.resize({N, D});
  rstd_final_.resize(N);
  rms_norm_forward(x.data(), w_.final_norm.f32(), xn_final_.data(), rstd_final_.data(), N, D, d.rms_eps);
  logits_.resize({N, d.vocab});
  lm_head_.forward(ctx, xn_final_.data(), N, logits_.data());
}

// One decoder layer on the residual stream x (in: the layer's input, out: its output), keeping
// the activations its backward reads in acts_[l].
void LlamaTrain::layer_forward(Context& ctx, int64_t l, Tensor& x) {
  const DecoderConfig& d = cfg_.dec;
  const Batch& b = batch_;
  const int64_t B = b.B, T = b.T, N = B * T, D = d.hidden, F = d.ffn;
  const int64_t H = d.n_heads, Hkv = d.n_kv_heads, Dh = d.head_dim;
  const nn::AttentionShape a = attention_shape(d);
  Tensor h({N, D});
  const DecoderLayerWeights& w = w_.layers[l];
  auto& p = proj_[l];
  LayerActs& s = acts_[l];
  s.x_in = x;
  s.xn1.resize({N, D});
  s.rstd1.resize(N);
  rms_norm_forward(x.data(), w.attn_norm.f32(), s.xn1.data(), s.rstd1.data(), N, D, d.rms_eps);
  s.q.resize({N, H * Dh});
  s.k.resize({N, Hkv * Dh});
  s.v.resize({N, Hkv * Dh});
  p[kQ].forward(ctx, s.xn1.data(), N, s.q.data());
  p[kK].forward(ctx, s.xn1.data(), N, s.k.data());
  p[kV].forward(ctx, s.xn1.data(), N, s.v.data());
  for (int64_t i = 0; i < B; ++i) {
    rope_forward(rope_, s.q.data() + i * T * H * Dh, T, H, Dh, 0, positions_.data() + i * T);
    rope_forward(rope_, s.k.data() + i * T * Hkv * Dh, T, Hkv, Dh, 0, positions_.data() + i * T);
  }
  s.probs.resize({B, H, T, T});
  s.att.resize({N, H * Dh});
  attention_forward(a, s.q.data(), s.k.data(), s.v.data(), key_mask(), B, T, s.probs.data(), s.att.data(), &ctx.pool);
  p[kO].forward(ctx, s.att.data(), N, h.data());
  ops::add(x.data(), h.data(), N * D);
  s.x_mid = x;
  s.xn2.resize({N, D});
  s.rstd2.resize(N);
  rms_norm_forward(x.data(), w.ffn_norm.f32(), s.xn2.data(), s.rstd2.data(), N, D, d.rms_eps);
  s.gate.resize({N, F});
  s.up.resize({N, F});
  s.act.resize({N, F});
  p[kGate].forward(ctx, s.xn2.data(), N, s.gate.data());
  p[kUp].forward(ctx, s.xn2.data(), N, s.up.data());
  ops::gated_act(d.act, s.gate.data(), s.up.data(), s.act.data(), N * F);
  p[kDown].forward(ctx, s.act.data(), N, h.data());
  ops::add(x.data(), h.data(), N * D);
}

void LlamaTrain::backward(Context& ctx, const Tensor& dlogits) {
  const DecoderConfig& d = cfg_.dec;
  const int64_t B = batch_.B, T = batch_.T, N = B * T, D = d.hidden, F = d.ffn;
  const int64_t H = d.n_heads, Hkv = d.n_kv_heads, Dh = d.head_dim;
  EV_CHECK(N > 0 && dlogits.numel() == N * d.vocab, "train: backward without a matching forward");
  const nn::AttentionShape a = attention_shape(d);
  auto grad = [&](const WeightRef& w) { return base_grads_ ? param(w)->grad.data() : nullptr; };

  Tensor dxn({N, D}), dx({N, D});
  lm_head_.backward(ctx, xn_final_.data(), dlogits.data(), N, dxn.data());
  rms_norm_backward(dxn.data(), x_final_.data(), w_.final_norm.f32(), rstd_final_.data(), dx.data(),
                    grad(w_.final_norm), N, D);

  Tensor dact({N, F}), dgate({N, F}), dup({N, F}), datt({N, H * Dh}), dq({N, H * Dh}), dk({N, Hkv * Dh}),
      dv({N, Hkv * Dh});
  for (int64_t l = d.n_layers - 1; l >= 0; --l) {
    const DecoderLayerWeights& w = w_.layers[l];
    auto& p = proj_[l];
    if (recompute_) {  // the layer again from its input, with the same dropout masks
      Tensor x = acts_[l].x_in;
      for (TrainLinear& q : p) q.rewind_dropout_stream();
      layer_forward(ctx, l, x);
    }
    const LayerActs& s = acts_[l];
    // MLP: x_out = x_mid + down(act(gate(xn2)) * up(xn2)), xn2 = norm(x_mid).
    for (Tensor* t : {&dact, &dgate, &dup, &dxn, &datt, &dq, &dk, &dv}) std::fill(t->vec().begin(), t->vec().end(), 0.0f);
    p[kDown].backward(ctx, s.act.data(), dx.data(), N, dact.data());
    gated_act_backward(d.act, s.gate.data(), s.up.data(), dact.data(), dgate.data(), dup.data(), N * F);
    p[kGate].backward(ctx, s.xn2.data(), dgate.data(), N, dxn.data());
    p[kUp].backward(ctx, s.xn2.data(), dup.data(), N, dxn.data());
    rms_norm_backward(dxn.data(), s.x_mid.data(), w.ffn_norm.f32(), s.rstd2.data(), dx.data(), grad(w.ffn_norm), N, D);
    // Attention: x_mid = x_in + o(attn(rope(q(xn1)), rope(k(xn1)), v(xn1))), xn1 = norm(x_in).
    p[kO].backward(ctx, s.att.data(), dx.data(), N, datt.data());
    attention_backward(a, datt.data(), s.q.data(), s.k.data(), s.v.data(), s.probs.data(), key_mask(), B, T,
                       dq.data(), dk.data(), dv.data(), &ctx.pool);
    for (int64_t i = 0; i < B; ++i) {
      rope_backward(rope_, dq.data() + i * T * H * Dh, T, H, Dh, 0, positions_.data() + i * T);
      rope_backward(rope_, dk.data() + i * T * Hkv * Dh, T, Hkv, Dh, 0, positions_.data() + i * T);
    }
    std::fill(dxn.vec().begin(), dxn.vec().end(), 0.0f);
    p[kQ].backward(ctx, s.xn1.data(), dq.data(), N, dxn.data());
    p[kK].backward(ctx, s.xn1.data(), dk.data(), N, dxn.data());
    p[kV].backward(ctx, s.xn1.data(), dv.data(), N, dxn.data());
    rms_norm_backward(dxn.data(), s.x_in.data(), w.attn_norm.f32(), s.rstd1.data(), dx.data(), grad(w.attn_norm), N,
                      D);
    if (recompute_) acts_[l].drop_all_but_input();
  }
  if (base_grads_) embedding_backward(batch_.input_ids.data(), N, dx.data(), param(w_.embed)->grad.data(), D);
}

}  // namespace

std::unique_ptr<TrainableLM> make_llama_trainable(std::unique_ptr<ModelSource> src) {
  LlamaConfig cfg = src->is_gguf() ? llama_config_from_gguf(src->gguf(), "llama") : llama_config_from_hf(src->hf());
  return std::make_unique<LlamaTrain>(std::move(src), std::move(cfg));
}

}  // namespace edgevl::train
