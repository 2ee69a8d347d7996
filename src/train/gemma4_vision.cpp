// The Gemma 4 vision tower's training forward/backward. Every projection and norm runs once over
// the rows of all the batch's images together (a TrainLinear keeps the state of its last forward
// only); attention runs per image, over its real patches. What differs from the text decoder's
// backward (train/gemma4_text.cpp):
//  - the patch embedding's position rows collect the gradient of every patch at that x or y;
//  - 2-D RoPE: each half of a head rotates by its own coordinate, so the backward rotates each
//    half back by its own;
//  - pooling is a fixed average (sqrt(hidden) / k² per patch of a soft token), then the
//    projector's weightless RMSNorm and linear;
//  - every projection is a Gemma4ClippableLinear whose clamps pass no gradient where they bite.
#include "train/gemma4_vision.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
#include "train/grad_ops.h"

namespace edgevl::train {

namespace {

TrainLinear linear(std::string module, const WeightRef* w) {
  TrainLinear l;
  l.module = std::move(module);
  l.w = w;
  return l;
}

void zero(Tensor& t, int64_t rows, int64_t cols) {
  t.resize({rows, cols});
  std::fill(t.vec().begin(), t.vec().end(), 0.0f);
}

int64_t numel(const WeightRef& w) {
  int64_t n = 1;
  for (int64_t d : w.shape) n *= d;
  return n;
}

}  // namespace

Gemma4VisionTrain::Gemma4VisionTrain(const ModelSource& src, Gemma4VisionConfig cfg, int64_t text_hidden)
    : cfg_(std::move(cfg)), text_hidden_(text_hidden), loader_(src), rope_(make_gemma4_vision_rope(cfg_)) {
  load_gemma4_vision_weights(src, loader_, cfg_, text_hidden_, w_);
  input_proj_ = linear("model.vision_tower.patch_embedder.input_proj", &w_.input_proj);
  projection_ = linear("model.embed_vision.embedding_projection", &w_.projection);
  proj_.resize(cfg_.n_layers);
  for (int64_t l = 0; l < cfg_.n_layers; ++l) {
    const auto linears = gemma4_vision_layer_linears(w_.layers[l], l);
    EV_ASSERT(linears.size() == kNumProj);
    for (int p = 0; p < kNumProj; ++p) {
      // PEFT adapts the nn.Linear inside each Gemma4ClippableLinear.
      proj_[l][p] = linear(linears[p].first + ".linear", &linears[p].second->w);
      proj_[l][p].set_bounds(*linears[p].second);
    }
  }
  acts_.resize(cfg_.n_layers);
}

std::vector<TrainLinear*> Gemma4VisionTrain::adaptable_linears() {
  std::vector<TrainLinear*> v;
  for (auto& layer : proj_)
    for (TrainLinear& p : layer) v.push_back(&p);
  v.push_back(&input_proj_);
  v.push_back(&projection_);
  return v;
}

void Gemma4VisionTrain::enable_base_grads(const std::function<BaseParam*(const WeightRef&)>& grad_of) {
  grads_.clear();
  auto reg = [&](const WeightRef& w) {
    BaseParam* p = grad_of(w);
    EV_CHECK(!p || (int64_t)p->grad.size() == numel(w), "train: the gradient of '", w.name, "' has ",
             p ? p->grad.size() : 0, " elements, the weight ", numel(w));
    grads_[&w] = p;
    return p;
  };
  reg(w_.position_table);
  input_proj_.gw = reg(w_.input_proj);
  for (int64_t l = 0; l < cfg_.n_layers; ++l) {
    const Gemma4VisionLayerWeights& w = w_.layers[l];
    auto& p = proj_[l];
    for (Proj k : {kQ, kK, kV, kO}) p[k].gw = reg(*p[k].w);
    reg(w.q_norm);
    reg(w.k_norm);
    for (Proj k : {kGate, kUp, kDown}) p[k].gw = reg(*p[k].w);
    for (const WeightRef* n : {&w.attn_norm, &w.post_attn_norm, &w.ffn_norm, &w.post_ffn_norm}) reg(*n);
  }
  projection_.gw = reg(w_.projection);
}

float* Gemma4VisionTrain::grad(const WeightRef& w) const {
  const auto it = grads_.find(&w);
  return it != grads_.end() && it->second ? it->second->grad.data() : nullptr;
}

void Gemma4VisionTrain::rope_rows(float* x, int64_t heads, bool backward) const {
  const int64_t Dh = cfg_.head_dim, s = backward ? -1 : 1;
  for (size_t i = 0; i < maps_.size(); ++i) {
    const Gemma4VisionPatchMap& m = maps_[i];
    for (size_t t = 0; t < m.rows.size(); ++t)
      apply_gemma4_vision_rope(rope_, x + (row0_[i] + t) * heads * Dh, heads, Dh, s * m.xs[t], s * m.ys[t]);
  }
}

// HF Gemma4VisionModel.forward + Gemma4MultimodalEmbedder, image by image as in
// Gemma4VisionEncoder::encode, with all the images' rows stacked.
std::vector<int64_t> Gemma4VisionTrain::forward(Context& ctx, const std::vector<VisionImage>& images, Tensor& out) {
  const Gemma4VisionConfig& c = cfg_;
  const int64_t D = c.hidden, H = c.n_heads, PV = c.patch_values();
  EV_CHECK(!images.empty(), "vision: a training batch without images");
  maps_.clear();
  row0_.clear();
  token0_.clear();
  probs0_.clear();
  rows_ = tokens_ = probs_ = 0;
  std::vector<int64_t> counts;
  for (const VisionImage& im : images) {
    EV_CHECK(im.pixels && im.positions, "vision: image ", maps_.size(), " has no pixels or positions");
    maps_.push_back(gemma4_vision_patch_map(c, im.positions, im.n_patches, false));
    const int64_t n = (int64_t)maps_.back().rows.size();
    row0_.push_back(rows_);
    token0_.push_back(tokens_);
    probs0_.push_back(probs_);
    rows_ += n;
    tokens_ += maps_.back().n_tokens;
    probs_ += H * n * n;
    counts.push_back(maps_.back().n_tokens);
  }
  const int64_t N = rows_, T = tokens_;

  // Patch embedding: input_proj(2·(p − 0.5)) + the x and y position rows.
  centered_.resize({N, PV});
  for (size_t i = 0; i < images.size(); ++i)
    gemma4_vision_centered_pixels(c, maps_[i], images[i].pixels, centered_.row(row0_[i]));
  Tensor x({N, D});
  input_proj_.forward(ctx, centered_.data(), N, x.data());
  for (size_t i = 0; i < images.size(); ++i)
    add_gemma4_vision_positions(c, w_.position_table, maps_[i], x.row(row0_[i]));

  for (int64_t l = 0; l < c.n_layers; ++l) layer_forward(ctx, l, x);

  // Pooling, the optional standardisation (constant buffers), then the projector.
  tok_.resize({T, D});
  for (size_t i = 0; i < images.size(); ++i) gemma4_vision_pool(c, maps_[i], x.row(row0_[i]), tok_.row(token0_[i]));
  gemma4_vision_standardize(c, w_, tok_.data(), T);
  tokn_.resize({T, D});
  rstd_tok_.resize(T);
  rms_norm_forward(tok_.data(), nullptr, tokn_.data(), rstd_tok_.data(), T, D, c.rms_eps);
  out.resize({T, text_hidden_});
  projection_.forward(ctx, tokn_.data(), T, out.data());
  return counts;
}

// Gemma4VisionEncoderLayer: sandwich-normed bidirectional attention and gated MLP.
void Gemma4VisionTrain::layer_forward(Context& ctx, int64_t l, Tensor& x) {
  const Gemma4VisionConfig& c = cfg_;
  const Gemma4VisionLayerWeights& w = w_.layers[l];
  auto& p = proj_[l];
  LayerActs& s = acts_[l];
  const int64_t N = rows_, D = c.hidden, H = c.n_heads, Hkv = c.n_kv_heads, Dh = c.head_dim, F = c.ffn;

  s.x_in = x;
  s.xn1.resize({N, D});
  s.rstd1.resize(N);
  rms_norm_forward(x.data(), w.attn_norm.f32(), s.xn1.data(), s.rstd1.data(), N, D, c.rms_eps);
  // q, k: project, RMSNorm per head (weighted), 2-D RoPE; v: project, RMSNorm without weight.
  s.q_raw.resize({N, H * Dh});
  s.q.resize({N, H * Dh});
  s.k_raw.resize({N, Hkv * Dh});
  s.k.resize({N, Hkv * Dh});
  s.v_raw.resize({N, Hkv * Dh});
  s.v.resize({N, Hkv * Dh});
  s.rstd_q.resize(N * H);
  s.rstd_k.resize(N * Hkv);
  s.rstd_v.resize(N * Hkv);
  p[kQ].forward(ctx, s.xn1.data(), N, s.q_raw.data());
  p[kK].forward(ctx, s.xn1.data(), N, s.k_raw.data());
  p[kV].forward(ctx, s.xn1.data(), N, s.v_raw.data());
  rms_norm_forward(s.q_raw.data(), w.q_norm.f32(), s.q.data(), s.rstd_q.data(), N * H, Dh, c.rms_eps);
  rms_norm_forward(s.k_raw.data(), w.k_norm.f32(), s.k.data(), s.rstd_k.data(), N * Hkv, Dh, c.rms_eps);
  rms_norm_forward(s.v_raw.data(), nullptr, s.v.data(), s.rstd_v.data(), N * Hkv, Dh, c.rms_eps);
  rope_rows(s.q.data(), H, false);
  rope_rows(s.k.data(), Hkv, false);

  // Each image attends over its own rows; the images are independent tasks.
  const nn::AttentionShape a = gemma4_vision_attention_shape(c);
  s.probs.resize({probs_});
  s.att.resize({N, H * Dh});
  ctx.pool.run_tasks((int64_t)maps_.size(), [&](int64_t i) {
    const Gemma4VisionPatchMap& m = maps_[i];
    const int64_t r = row0_[i], n = (int64_t)m.rows.size();
    attention_forward(a, s.q.row(r), s.k.row(r), s.v.row(r), m.all_valid() ? nullptr : m.valid.data(), 1, n,
                      s.probs.data() + probs0_[i], s.att.row(r));
  });
  s.o.resize({N, D});
  p[kO].forward(ctx, s.att.data(), N, s.o.data());
  Tensor h({N, D});
  s.rstd_o.resize(N);
  rms_norm_forward(s.o.data(), w.post_attn_norm.f32(), h.data(), s.rstd_o.data(), N, D, c.rms_eps);
  ops::add(x.data(), h.data(), N * D);
  s.x_mid = x;

  // MLP: down(gelu_tanh(gate(xn2)) * up(xn2)), post-normed.
  s.xn2.resize({N, D});
  s.rstd2.resize(N);
  rms_norm_forward(x.data(), w.ffn_norm.f32(), s.xn2.data(), s.rstd2.data(), N, D, c.rms_eps);
  s.gate.resize({N, F});
  s.up.resize({N, F});
  s.act.resize({N, F});
  p[kGate].forward(ctx, s.xn2.data(), N, s.gate.data());
  p[kUp].forward(ctx, s.xn2.data(), N, s.up.data());
  gated_act_forward(c.act, s.gate.data(), s.up.data(), s.act.data(), N * F);
  s.m.resize({N, D});
  p[kDown].forward(ctx, s.act.data(), N, s.m.data());
  s.rstd_m.resize(N);
  rms_norm_forward(s.m.data(), w.post_ffn_norm.f32(), h.data(), s.rstd_m.data(), N, D, c.rms_eps);
  ops::add(x.data(), h.data(), N * D);
}

void Gemma4VisionTrain::backward(Context& ctx, const Tensor& dout) {
  const Gemma4VisionConfig& c = cfg_;
  const int64_t N = rows_, T = tokens_, D = c.hidden;
  EV_CHECK(N > 0 && dout.numel() == T * text_hidden_, "vision: backward without a matching forward (d out has ",
           dout.numel(), " elements, the last forward gave ", T, " x ", text_hidden_, ")");

  // Projector: out = projection(RMSNorm(tok)).
  Tensor dtokn, dtok;
  zero(dtokn, T, D);
  zero(dtok, T, D);
  projection_.backward(ctx, tokn_.data(), dout.data(), T, dtokn.data());
  rms_norm_backward(dtokn.data(), tok_.data(), nullptr, rstd_tok_.data(), dtok.data(), nullptr, T, D);
  if (c.standardize)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < D; ++i) dtok.row(t)[i] *= w_.std_scale.f32()[i];

  // Pooling: each real row fed its soft token with weight sqrt(hidden) / k².
  const float pool_w = (float)(std::sqrt((double)D) / (double)(c.pooling_kernel * c.pooling_kernel));
  Tensor dx;
  zero(dx, N, D);
  for (size_t i = 0; i < maps_.size(); ++i) {
    const Gemma4VisionPatchMap& m = maps_[i];
    for (size_t t = 0; t < m.rows.size(); ++t)
      if (m.token[t] >= 0) ops::add_scaled(dx.row(row0_[i] + t), dtok.row(token0_[i] + m.token[t]), pool_w, D);
  }

  for (int64_t l = c.n_layers - 1; l >= 0; --l) layer_backward(ctx, l, dx);

  // Patch embedding: the position rows of each real patch, and input_proj (no pixel gradient).
  if (float* dtable = grad(w_.position_table))
    for (size_t i = 0; i < maps_.size(); ++i) {
      const Gemma4VisionPatchMap& m = maps_[i];
      for (size_t t = 0; t < m.rows.size(); ++t) {
        if (!m.valid[t]) continue;
        ops::add(dtable + m.xs[t] * D, dx.row(row0_[i] + t), D);
        ops::add(dtable + (c.position_table + m.ys[t]) * D, dx.row(row0_[i] + t), D);
      }
    }
  input_proj_.backward(ctx, centered_.data(), dx.data(), N, nullptr);
}

// dx: d loss / d (layer l's output) on entry, d loss / d (its input) on return.
void Gemma4VisionTrain::layer_backward(Context& ctx, int64_t l, Tensor& dx) {
  const Gemma4VisionConfig& c = cfg_;
  const Gemma4VisionLayerWeights& w = w_.layers[l];
  auto& p = proj_[l];
  const LayerActs& s = acts_[l];
  const int64_t N = rows_, D = c.hidden, H = c.n_heads, Hkv = c.n_kv_heads, Dh = c.head_dim, F = c.ffn;

  // MLP: x_out = x_mid + RMSNorm(down(act(gate(xn2)) * up(xn2))), xn2 = norm(x_mid).
  Tensor dh, dxn;
  zero(dh, N, D);
  zero(dxn, N, D);
  {
    Tensor dact, dgate, dup;
    zero(dact, N, F);
    zero(dgate, N, F);
    zero(dup, N, F);
    rms_norm_backward(dx.data(), s.m.data(), w.post_ffn_norm.f32(), s.rstd_m.data(), dh.data(), grad(w.post_ffn_norm),
                      N, D);
    p[kDown].backward(ctx, s.act.data(), dh.data(), N, dact.data());
    gated_act_backward(c.act, s.gate.data(), s.up.data(), dact.data(), dgate.data(), dup.data(), N * F);
    p[kGate].backward(ctx, s.xn2.data(), dgate.data(), N, dxn.data());
    p[kUp].backward(ctx, s.xn2.data(), dup.data(), N, dxn.data());
    rms_norm_backward(dxn.data(), s.x_mid.data(), w.ffn_norm.f32(), s.rstd2.data(), dx.data(), grad(w.ffn_norm), N, D);
  }

  // Attention: x_mid = x_in + RMSNorm(o(attn(q, k, v))), q/k/v from xn1 = norm(x_in).
  Tensor datt, dq, dk, dv, dq_raw, dk_raw, dv_raw;
  zero(dh, N, D);
  zero(dxn, N, D);
  zero(datt, N, H * Dh);
  zero(dq, N, H * Dh);
  zero(dq_raw, N, H * Dh);
  for (Tensor* t : {&dk, &dv, &dk_raw, &dv_raw}) zero(*t, N, Hkv * Dh);
  rms_norm_backward(dx.data(), s.o.data(), w.post_attn_norm.f32(), s.rstd_o.data(), dh.data(), grad(w.post_attn_norm),
                    N, D);
  p[kO].backward(ctx, s.att.data(), dh.data(), N, datt.data());
  const nn::AttentionShape a = gemma4_vision_attention_shape(c);
  ctx.pool.run_tasks((int64_t)maps_.size(), [&](int64_t i) {
    const Gemma4VisionPatchMap& m = maps_[i];
    const int64_t r = row0_[i], n = (int64_t)m.rows.size();
    attention_backward(a, datt.row(r), s.q.row(r), s.k.row(r), s.v.row(r), s.probs.data() + probs0_[i],
                       m.all_valid() ? nullptr : m.valid.data(), 1, n, dq.row(r), dk.row(r), dv.row(r));
  });
  rope_rows(dq.data(), H, true);
  rope_rows(dk.data(), Hkv, true);
  rms_norm_backward(dq.data(), s.q_raw.data(), w.q_norm.f32(), s.rstd_q.data(), dq_raw.data(), grad(w.q_norm), N * H,
                    Dh);
  rms_norm_backward(dk.data(), s.k_raw.data(), w.k_norm.f32(), s.rstd_k.data(), dk_raw.data(), grad(w.k_norm),
                    N * Hkv, Dh);
  rms_norm_backward(dv.data(), s.v_raw.data(), nullptr, s.rstd_v.data(), dv_raw.data(), nullptr, N * Hkv, Dh);
  p[kQ].backward(ctx, s.xn1.data(), dq_raw.data(), N, dxn.data());
  p[kK].backward(ctx, s.xn1.data(), dk_raw.data(), N, dxn.data());
  p[kV].backward(ctx, s.xn1.data(), dv_raw.data(), N, dxn.data());
  rms_norm_backward(dxn.data(), s.x_in.data(), w.attn_norm.f32(), s.rstd1.data(), dx.data(), grad(w.attn_norm), N, D);
}

}  // namespace edgevl::train
