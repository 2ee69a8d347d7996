// The Gemma 4 audio tower's training forward and backward (train/gemma4_audio) on the tiny training
// golden checkpoint (../shared/golden/hf/train/gemma4): the forward against the inference encoder
// (models/gemma4/audio_encoder) for a batch of two clips, then every gradient kind against central
// finite differences of L = Σ out · R, with the clippable linears' bounds off (the smooth function)
// and on (the real bounds clip: the gradient must vanish where they do).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "grad_check.h"
#include "io/safetensors.h"
#include "models/gemma4/audio_encoder.h"
#include "models/source.h"
#include "test_util.h"
#include "train/gemma4_audio.h"
#include "train/lora.h"

namespace edgevl::train {
namespace {

using test::as_f32;
using test::golden_hf;
using test::randv;
using test::rel_error;
using test::sample_gradient_elements;

// The golden clip (48 frames, its mask) and a second one of 37 random frames whose last 9 are
// padding, so a batch exercises clip offsets, masked keys and masked conv inputs.
struct Clips {
  std::vector<float> f0, f1;
  std::vector<uint8_t> m0, m1;
  std::vector<AudioClip> batch() const {
    return {{f0.data(), m0.data(), (int64_t)m0.size()}, {f1.data(), m1.data(), (int64_t)m1.size()}};
  }
};

Clips read_clips(int64_t n_mel) {
  Clips c;
  auto g = safetensors::File::open(golden_hf("train/gemma4") + "/golden.safetensors");
  const TensorRef* f = g->find("sft.inputs.input_features");
  const TensorRef* m = g->find("sft.inputs.input_features_mask");
  EXPECT_TRUE(f && m);
  EXPECT_EQ(f->shape, (std::vector<int64_t>{1, 48, n_mel}));
  c.f0 = as_f32(*f);
  for (float v : as_f32(*m)) c.m0.push_back(v != 0.0f);
  const int64_t T1 = 37;
  c.f1 = randv(T1 * n_mel, 5, -4.0f, 2.0f);
  c.m1.assign(T1, 1);
  for (int64_t t = 28; t < T1; ++t) c.m1[t] = 0;
  return c;
}

struct Tower {
  std::unique_ptr<ModelSource> src;
  Gemma4AudioConfig cfg;
  int64_t text_hidden = 0;
};

Tower open_tower(bool clipped_linears = true) {
  Tower t;
  t.src = ModelSource::open(golden_hf("train/gemma4"));
  t.cfg = gemma4_audio_config_from_hf(t.src->hf().sub("audio_config"));
  t.cfg.clipped_linears = clipped_linears;
  t.text_hidden = t.src->hf().sub("text_config").require_int("hidden_size");
  return t;
}

TEST(Gemma4AudioTrain, ForwardMatchesInferenceEncoder) {
  Tower t = open_tower();
  EXPECT_EQ(t.text_hidden, 64);
  Gemma4AudioEncoder enc(*t.src, t.cfg, t.text_hidden);
  Gemma4AudioTrain tower(*t.src, t.cfg, t.text_hidden);
  const Clips clips = read_clips(t.cfg.n_mel);
  Context ctx(2);
  std::vector<float> eager_out;
  for (bool eager : {true, false}) {
    enc.set_hf_eager_mask(eager);
    tower.set_hf_eager_mask(eager);
    std::vector<float> want;
    std::vector<int64_t> counts;
    for (const AudioClip& c : clips.batch()) {
      Tensor o;
      counts.push_back(enc.encode(ctx, c.features, c.mask, c.frames, o, {}));
      want.insert(want.end(), o.vec().begin(), o.vec().end());
    }
    EXPECT_EQ(counts, (std::vector<int64_t>{12, 7}));
    Tensor out;
    EXPECT_EQ(tower.forward(ctx, clips.batch(), out), counts);
    ASSERT_EQ(out.dim(1), t.text_hidden);
    const double err = rel_error(out.vec(), want);
    std::printf("  hf_eager_mask %d: training forward vs inference encoder, max rel error %.3g\n", eager, err);
    EXPECT_LE(err, 1e-5) << "hf_eager_mask " << eager;
    if (eager) eager_out = out.vec();
    else EXPECT_GT(rel_error(out.vec(), eager_out), 1e-3) << "the two masks should differ on this batch";
  }
}

struct FdCase {
  std::string what;
  std::vector<float>* values;
  const std::vector<float>* grad;
  std::vector<size_t> idx;
  float h, h_min;  // the step, and the smallest one it may be cut to
};

// Steps for finite differences of L in `values`, whose gradient is `grad`: small next to the
// values' scale (the truncation error is O(h²)), and never so small that L's float32 rounding,
// about 2e-6 here, divided by 2h exceeds 1e-3 of the gradient's scale.
FdCase fd_case(std::string what, std::vector<float>& values, const std::vector<float>& grad, std::vector<size_t> idx) {
  double ss = 0, gmax = 0;
  for (float v : values) ss += (double)v * v;
  for (float g : grad) gmax = std::max(gmax, (double)std::fabs(g));
  const float h_min = (float)(1e-3 / std::max(gmax, 1e-9));
  return {std::move(what), &values, &grad, std::move(idx),
          std::max((float)(1e-2 * std::sqrt(ss / values.size())), h_min), h_min};
}

struct FdResult {
  double worst = 0;  // max over the cases of their error
  int compared = 0, skipped = 0;
};

// Central differences of loss() at each case's elements, compared with the gradient: max |fd - g|
// over the elements / max |g| over the whole gradient, per case. The forward has kinks (ReLUs,
// clamps: `pattern`); where the ±h forwards change the pattern the step is cut by 4 while it stays
// above the case's h_min, then the element is skipped.
FdResult fd_check(const std::vector<FdCase>& cases, const std::function<double()>& loss,
                  const std::function<std::vector<uint8_t>()>& pattern, double tol) {
  FdResult r;
  loss();
  const std::vector<uint8_t> at0 = pattern();
  for (const FdCase& c : cases) {
    double num = 0, den = 0;
    const int skipped0 = r.skipped;
    for (float g : *c.grad) den = std::max(den, (double)std::fabs(g));
    for (size_t i : c.idx) {
      float& x = (*c.values)[i];
      const float x0 = x;
      bool smooth = false;
      double fd = 0;
      for (float h = c.h; h >= c.h_min && !smooth; h /= 4) {
        x = x0 + h;
        const double lp = loss();
        smooth = pattern() == at0;
        x = x0 - h;
        const double lm = loss();
        smooth = smooth && pattern() == at0;
        x = x0;
        fd = (lp - lm) / (2.0 * h);
      }
      if (!smooth) {
        ++r.skipped;
        continue;
      }
      ++r.compared;
      num = std::max(num, std::fabs(fd - (*c.grad)[i]));
    }
    EXPECT_GT(den, 0.0) << c.what << ": the gradient is all zero";
    if (den == 0) continue;
    const double err = num / den;
    r.worst = std::max(r.worst, err);
    EXPECT_LT(err, tol) << c.what;
    if (err >= tol || std::getenv("EDGEVL_FD_VERBOSE"))
      std::printf("  %-75s h %.1e  skipped %d/%zu  fd error %.3g\n", c.what.c_str(), c.h, r.skipped - skipped0,
                  c.idx.size(), err);
  }
  loss();
  return r;
}

// The tower (every base gradient registered, unless not `base_grads`), LoRA (nonzero B) on q/k/v
// of both layers and on layer 1's relative_k_proj, and L = Σ out · R.
struct GradSetup {
  Tower t;
  Clips clips;
  std::unique_ptr<Gemma4AudioTrain> tower;
  test::WritableParams params;
  LoraSet lora;
  std::vector<float> R;
  Context ctx{1};
  Tensor out;

  explicit GradSetup(bool clipped_linears, bool base_grads = true) {
    t = open_tower(clipped_linears);
    t.cfg.hf_eager_mask = true;
    clips = read_clips(t.cfg.n_mel);
    tower = std::make_unique<Gemma4AudioTrain>(*t.src, t.cfg, t.text_hidden);
    if (base_grads) tower->enable_base_grads(std::ref(params));
    lora = test::small_lora(
        tower->adaptable_linears(),
        R"(model\.audio_tower\.layers\.(\d\.self_attn\.[qkv]_proj\.linear|1\.self_attn\.relative_k_proj))");
    EXPECT_EQ(lora.pairs.size(), 7u);
    uint32_t seed = 1;
    for (auto& [name, pair] : lora.pairs) pair.B = randv(pair.B.size(), seed++, -0.5f, 0.5f);
    for (TrainLinear* l : tower->adaptable_linears()) l->lora = lora.find(l->module);
    tower->forward(ctx, clips.batch(), out);
    R = randv(out.numel(), 77);
  }
  double loss() {
    tower->forward(ctx, clips.batch(), out);
    double s = 0;
    for (size_t i = 0; i < R.size(); ++i) s += (double)out.vec()[i] * R[i];
    return s;
  }
  void backward() {
    loss();
    Tensor d(out.shape());
    std::copy(R.begin(), R.end(), d.data());
    tower->backward(ctx, d);
  }
  // Every registered weight and every LoRA factor, n random elements each plus the largest.
  std::vector<FdCase> cases(int n, uint32_t seed = 11) {
    std::mt19937 rng(seed);
    std::vector<FdCase> c;
    for (size_t i = 0; i < params.list.size(); ++i) {
      const BaseParam& p = *params.list[i];
      c.push_back(fd_case(p.name, params.values[i], p.grad, sample_gradient_elements(p.grad, rng, n)));
    }
    for (auto& [name, p] : lora.pairs) {
      c.push_back(fd_case(name + ".lora_A", p.A, p.dA, sample_gradient_elements(p.dA, rng, n)));
      c.push_back(fd_case(name + ".lora_B", p.B, p.dB, sample_gradient_elements(p.dB, rng, n)));
    }
    return c;
  }
  std::vector<uint8_t> pattern() const { return tower->kink_pattern(); }
};

// Every kind of weight the golden training state has a gradient for, in HF's order.
TEST(Gemma4AudioTrain, RegistersEveryWeightInHfOrder) {
  GradSetup s(true);
  std::vector<std::string> names;
  for (const auto& p : s.params.list) names.push_back(p->name);
  const std::string L0 = "model.audio_tower.layers.0.";
  ASSERT_EQ(names.size(), 5u + 2 * 22 + 3);
  EXPECT_EQ(names[0], "model.audio_tower.subsample_conv_projection.layer0.conv.weight");
  EXPECT_EQ(names[4], "model.audio_tower.subsample_conv_projection.input_proj_linear.weight");
  const std::vector<std::string> layer = {
      "feed_forward1.ffw_layer_1.linear.weight", "feed_forward1.ffw_layer_2.linear.weight",
      "feed_forward1.pre_layer_norm.weight",     "feed_forward1.post_layer_norm.weight",
      "feed_forward2.ffw_layer_1.linear.weight", "feed_forward2.ffw_layer_2.linear.weight",
      "feed_forward2.pre_layer_norm.weight",     "feed_forward2.post_layer_norm.weight",
      "self_attn.per_dim_scale",                 "self_attn.q_proj.linear.weight",
      "self_attn.k_proj.linear.weight",          "self_attn.v_proj.linear.weight",
      "self_attn.post.linear.weight",            "self_attn.relative_k_proj.weight",
      "lconv1d.linear_start.linear.weight",      "lconv1d.linear_end.linear.weight",
      "lconv1d.depthwise_conv1d.weight",         "lconv1d.pre_layer_norm.weight",
      "lconv1d.conv_norm.weight",                "norm_pre_attn.weight",
      "norm_post_attn.weight",                   "norm_out.weight"};
  for (size_t i = 0; i < layer.size(); ++i) EXPECT_EQ(names[5 + i], L0 + layer[i]);
  EXPECT_EQ(names[names.size() - 3], "model.audio_tower.output_proj.weight");
  EXPECT_EQ(names[names.size() - 2], "model.audio_tower.output_proj.bias");
  EXPECT_EQ(names.back(), "model.embed_audio.embedding_projection.weight");
  // Conv gradients are the checkpoint tensors: [Cout, Cin, 3, 3] and [D, 1, K].
  EXPECT_EQ(s.params.list[0]->w->shape, (std::vector<int64_t>{32, 1, 3, 3}));
  EXPECT_EQ(s.params.list[2]->w->shape, (std::vector<int64_t>{8, 32, 3, 3}));
  EXPECT_EQ(s.params.list[5 + 16]->w->shape, (std::vector<int64_t>{32, 1, 3}));
}

constexpr double kFdTol = 5e-3;  // as tests/train_test.cpp

// Bounds off: every weight kind and every LoRA factor.
TEST(Gemma4AudioTrain, GradientsMatchFiniteDifferencesWithoutClamps) {
  GradSetup s(false);
  for (TrainLinear* l : s.tower->adaptable_linears()) ASSERT_FALSE(l->clamps_input() || l->clamps_output());
  s.backward();
  const FdResult r = fd_check(s.cases(4), [&] { return s.loss(); }, [&] { return s.pattern(); }, kFdTol);
  std::printf("  bounds off: %d elements compared (%d at ReLU kinks skipped), worst max|fd - g| / max|g| %.3g\n",
              r.compared, r.skipped, r.worst);
  EXPECT_GT(r.compared, 10 * r.skipped);
}

// The real bounds, which clip a large share of the clippable linears' outputs here: where an
// output is clamped in every frame, its weight row and LoRA B row get exactly zero gradient; the
// finite differences check the rest wherever a ±h step keeps every element on its side of its
// bounds (most steps here do not, so fewer elements are compared than without the bounds).
TEST(Gemma4AudioTrain, ClampedElementsPassNoGradient) {
  GradSetup s(true);
  s.backward();
  int64_t out_clamped = 0, in_clamped = 0, dead_rows = 0;
  std::mt19937 rng(23);
  std::vector<FdCase> cases = s.cases(4);
  for (TrainLinear* l : s.tower->adaptable_linears()) {
    if (!l->clamps_output()) continue;
    ASSERT_TRUE(l->gw) << l->module;
    const int64_t O = l->out(), I = l->in(), rows = (int64_t)l->out_inside.size() / O;
    out_clamped += std::count(l->out_inside.begin(), l->out_inside.end(), 0);
    for (float x : l->clip_x) in_clamped += x == l->in_min || x == l->in_max;
    // Weights that read a clamped input or write a clamped output, where a wrong clamp gradient
    // would show.
    std::vector<size_t> touched;
    for (int64_t o = 0; o < O; ++o) {
      int64_t n = 0;
      for (int64_t t = 0; t < rows; ++t) n += !l->out_inside[t * O + o];
      for (int64_t i = 0; i < I; ++i) {
        bool hit = n > 0;
        for (int64_t t = 0; t < rows && !hit; ++t)
          hit = l->clip_x[t * I + i] == l->in_min || l->clip_x[t * I + i] == l->in_max;
        if (hit) touched.push_back(o * I + i);
      }
      if (n < rows) continue;
      ++dead_rows;
      for (int64_t i = 0; i < I; ++i) ASSERT_EQ(l->gw->grad[o * I + i], 0.0f) << l->module << " row " << o;
      if (l->lora) {
        for (int64_t r = 0; r < l->lora->r; ++r) ASSERT_EQ(l->lora->dB[o * l->lora->r + r], 0.0f) << l->module;
      }
    }
    for (size_t i = 0; i < s.params.list.size(); ++i)
      if (s.params.list[i].get() == l->gw && !touched.empty())
        cases.push_back(fd_case(l->module + " (clamped rows/cols)", s.params.values[i], l->gw->grad,
                                sample_gradient_elements(l->gw->grad, rng, 12, touched)));
  }
  std::printf("  clamped: %lld outputs (%lld rows in every frame), %lld inputs\n", (long long)out_clamped,
              (long long)dead_rows, (long long)in_clamped);
  EXPECT_GT(dead_rows, 0);
  EXPECT_GT(in_clamped, 0);

  const FdResult r = fd_check(cases, [&] { return s.loss(); }, [&] { return s.pattern(); }, kFdTol);
  std::printf("  real bounds: %d elements compared, %d skipped (a bound within the step), worst %.3g\n", r.compared,
              r.skipped, r.worst);
  EXPECT_GE(r.compared, 150);
}

TEST(Gemma4AudioTrain, BackwardAccumulatesAndChecksItsInput) {
  GradSetup s(true);
  s.backward();
  std::vector<std::vector<float>> once;
  for (const auto& p : s.params.list) once.push_back(p->grad);
  const std::vector<float> dA = s.lora.pairs.begin()->second.dA;
  s.backward();
  for (size_t i = 0; i < once.size(); ++i) {
    std::vector<float> twice = once[i];
    for (float& v : twice) v *= 2;
    // Adding the same sums a second time is 2x up to float32 rounding.
    EXPECT_LE(rel_error(s.params.list[i]->grad, twice), 1e-5) << s.params.list[i]->name;
  }
  std::vector<float> dA2 = dA;
  for (float& v : dA2) v *= 2;
  EXPECT_LE(rel_error(s.lora.pairs.begin()->second.dA, dA2), 1e-5);
  EXPECT_THROW(s.tower->backward(s.ctx, Tensor({3, 64})), Error);
  Tensor out;
  EXPECT_THROW(s.tower->forward(s.ctx, {AudioClip{s.clips.f0.data(), nullptr, 0}}, out), Error);
}

// LoRA-only training (no base gradients) skips the subsampler's backward and gets the same adapter
// gradients as a run with every base gradient.
TEST(Gemma4AudioTrain, LoraOnlyGradientsMatchFullRun) {
  GradSetup full(true);
  full.backward();
  GradSetup lora_only(true, false);
  lora_only.backward();
  for (auto& [name, p] : full.lora.pairs) {
    EXPECT_LE(rel_error(lora_only.lora.pairs.at(name).dA, p.dA), 1e-6) << name;
    EXPECT_LE(rel_error(lora_only.lora.pairs.at(name).dB, p.dB), 1e-6) << name;
  }
}

}  // namespace
}  // namespace edgevl::train
