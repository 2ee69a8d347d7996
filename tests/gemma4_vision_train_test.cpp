// The Gemma 4 vision tower's training forward and backward (train/gemma4_vision.h) on the tiny
// Gemma4ForConditionalGeneration of ../shared/golden/hf/train/gemma4 (finite clip bounds that do
// clip): the forward against the inference encoder and HF's image features, the backward against
// central finite differences of L = Σ out·R, for samples of every kind of base weight and for
// LoRA factors, with the clamps widened (the smooth function) and with the real bounds (where
// clamped elements must pass no gradient).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "grad_check.h"
#include "io/safetensors.h"
#include "models/gemma4/vision_encoder.h"
#include "models/source.h"
#include "test_util.h"
#include "train/gemma4_vision.h"
#include "train/lora.h"

namespace edgevl::train {
namespace {

using test::as_f32;
using test::golden_hf;
using test::rel_error;
using test::sample_gradient_elements;

// A batch of images: pixel values [n_patches, 3·p²] and positions [n_patches, 2] of each.
struct Images {
  std::vector<std::vector<float>> pixels;
  std::vector<std::vector<int64_t>> positions;
  std::vector<VisionImage> batch() const {
    std::vector<VisionImage> v;
    for (size_t i = 0; i < pixels.size(); ++i)
      v.push_back({pixels[i].data(), positions[i].data(), (int64_t)positions[i].size() / 2});
    return v;
  }
};

// The golden's pixel_values [N, P, 3·p²] and image_position_ids [N, P, 2].
Images read_images(const safetensors::File& g, const std::string& prefix) {
  const TensorRef* px = g.find(prefix + "pixel_values");
  const TensorRef* pos = g.find(prefix + "image_position_ids");
  EXPECT_TRUE(px && pos) << prefix;
  Images im;
  if (!px || !pos) return im;
  const std::vector<float> pv = as_f32(*px), p = as_f32(*pos);
  const int64_t n = px->shape[0], P = px->shape[1], PV = px->shape[2];
  for (int64_t i = 0; i < n; ++i) {
    im.pixels.emplace_back(pv.begin() + i * P * PV, pv.begin() + (i + 1) * P * PV);
    im.positions.emplace_back(p.begin() + i * P * 2, p.begin() + (i + 1) * P * 2);
  }
  return im;
}

// Image i's patches at x < w, y < h, followed by `pad` padding patches.
void add_crop(Images& to, const Images& from, size_t i, int64_t w, int64_t h, int64_t pad) {
  const int64_t PV = (int64_t)(from.pixels[i].size() / (from.positions[i].size() / 2));
  std::vector<float> px;
  std::vector<int64_t> pos;
  for (size_t t = 0; t < from.positions[i].size() / 2; ++t) {
    const int64_t x = from.positions[i][2 * t], y = from.positions[i][2 * t + 1];
    if (x < 0 || x >= w || y >= h) continue;
    px.insert(px.end(), from.pixels[i].begin() + t * PV, from.pixels[i].begin() + (t + 1) * PV);
    pos.insert(pos.end(), {x, y});
  }
  px.resize(px.size() + pad * PV, 0.0f);
  pos.resize(pos.size() + 2 * pad, -1);
  to.pixels.push_back(std::move(px));
  to.positions.push_back(std::move(pos));
}

struct Tower {
  std::unique_ptr<ModelSource> src;
  Gemma4VisionConfig cfg;
  int64_t text_hidden = 0;
};

Tower open_tower(const std::string& dir) {
  Tower t;
  t.src = ModelSource::open(dir);
  t.cfg = gemma4_vision_config_from_hf(t.src->hf().sub("vision_config"));
  t.text_hidden = t.src->hf().sub("text_config").get_int("hidden_size", 0);
  return t;
}

// The inference encoder's soft tokens of every image, concatenated, with F32 attention.
std::vector<float> encode_all(const Tower& t, Context& ctx, const Images& im, std::vector<int64_t>& counts) {
  Gemma4VisionEncoder enc(*t.src, t.cfg, t.text_hidden);
  enc.set_low_precision_attention(false);
  std::vector<float> all;
  for (const VisionImage& v : im.batch()) {
    Tensor out;
    counts.push_back(enc.encode(ctx, v.pixels, v.positions, v.n_patches, out));
    all.insert(all.end(), out.vec().begin(), out.vec().end());
  }
  return all;
}

TEST(Gemma4VisionTrain, ForwardMatchesInferenceEncoder) {
  Tower t = open_tower(golden_hf("train/gemma4"));
  ASSERT_EQ(t.text_hidden, 64);
  auto g = safetensors::File::open(golden_hf("train/gemma4") + "/golden.safetensors");
  const Images im = read_images(*g, "sft.inputs.");
  ASSERT_EQ(im.pixels.size(), 2u);
  Gemma4VisionTrain tower(*t.src, t.cfg, t.text_hidden);
  for (const std::string& isa : test::isas()) {
    Context ctx(2, isa);
    std::vector<int64_t> ref_counts;
    const std::vector<float> ref = encode_all(t, ctx, im, ref_counts);
    Tensor out;
    const std::vector<int64_t> counts = tower.forward(ctx, im.batch(), out);
    EXPECT_EQ(counts, ref_counts);
    EXPECT_EQ(counts, (std::vector<int64_t>{6, 4}));  // golden.json multimodal_layout.image_tokens
    const double err = rel_error(out.vec(), ref);
    std::printf("  %-8s training forward vs inference encoder: max rel error %.3g\n", isa.c_str(), err);
    EXPECT_LE(err, 1e-5) << isa;
  }
}

TEST(Gemma4VisionTrain, ForwardMatchesHfImageFeatures) {
  // The inference golden was made from the same checkpoint, with HF's image features.
  Tower t = open_tower(golden_hf("gemma4"));
  auto g = safetensors::File::open(golden_hf("gemma4") + "/golden.safetensors");
  const Images im = read_images(*g, "inputs.");
  const TensorRef* ref = g->find("vision.image_features");
  ASSERT_TRUE(ref);
  Gemma4VisionTrain tower(*t.src, t.cfg, t.text_hidden);
  Context ctx(2);
  Tensor out;
  tower.forward(ctx, im.batch(), out);
  const double err = rel_error(out.vec(), as_f32(*ref));
  std::printf("  training forward vs HF vision.image_features: max rel error %.3g\n", err);
  EXPECT_LE(err, 1e-5);
}

// Which elements every clamp lets through in the last forward (outputs inside the bounds, inputs
// inside them): a finite difference is only compared where both sides keep the same pattern.
std::vector<uint8_t> clamp_pattern(Gemma4VisionTrain& tower) {
  std::vector<uint8_t> p;
  for (TrainLinear* l : tower.adaptable_linears()) {
    p.insert(p.end(), l->out_inside.begin(), l->out_inside.end());
    for (float x : l->clip_x) p.push_back(x != l->in_min && x != l->in_max);
  }
  return p;
}

struct FdCase {
  std::string what;
  std::vector<float>* values;
  const std::vector<float>* grad;
  std::vector<size_t> idx;
  float h;
};

struct FdResult {
  std::vector<std::pair<std::string, double>> errors;  // per case, as fd_check defines it
  double worst = 0, worst_raw = 0;                     // the largest, and without the noise allowance
  int compared = 0, skipped = 0;
};

// Central differences of loss() at each case's elements against the analytic gradient. A case's
// error is max (|fd - g| - noise / h) / max |g| over its elements: `noise` is loss()'s float32
// rounding spread (the difference of two roundings, as in lp - lm), so noise / h is twice its
// share of a central difference. With `pattern`, an element whose ±h forwards change a clamp
// pattern (the loss has a kink in between) is retried with h/4 twice, then left out.
FdResult fd_check(const std::vector<FdCase>& cases, const std::function<double()>& loss,
                  const std::function<std::vector<uint8_t>()>& pattern, double noise) {
  FdResult r;
  loss();
  const std::vector<uint8_t> at0 = pattern ? pattern() : std::vector<uint8_t>();
  for (const FdCase& c : cases) {
    std::vector<std::pair<double, double>> diffs;  // |fd - g|, noise allowance
    double den = 0;
    for (size_t i : c.idx) {
      float& x = (*c.values)[i];
      const float x0 = x;
      bool smooth = false;
      double fd = 0, h = 4 * c.h;
      while (!smooth && h > c.h / 16) {
        h /= 4;
        x = x0 + (float)h;
        const double lp = loss();
        smooth = !pattern || pattern() == at0;
        x = x0 - (float)h;
        const double lm = loss();
        smooth = smooth && (!pattern || pattern() == at0);
        fd = (lp - lm) / (2.0 * h);
      }
      x = x0;
      if (!smooth) {
        ++r.skipped;
        continue;
      }
      ++r.compared;
      diffs.emplace_back(std::fabs(fd - (*c.grad)[i]), noise / h);
      den = std::max(den, std::fabs((double)(*c.grad)[i]));
    }
    if (den == 0) continue;  // every element at a kink, or an all-zero sample
    double err = 0;
    for (const auto& [d, n] : diffs) {
      err = std::max(err, std::max(0.0, d - n) / den);
      r.worst_raw = std::max(r.worst_raw, d / den);
    }
    r.errors.emplace_back(c.what, err);
    r.worst = std::max(r.worst, err);
  }
  loss();  // leave the last forward at the unperturbed weights
  return r;
}

void expect_below(const FdResult& r, double tol) {
  for (const auto& [what, err] : r.errors) EXPECT_LT(err, tol) << what;
}

struct GradSetup {
  Tower t;
  Images im;
  std::unique_ptr<Gemma4VisionTrain> tower;
  test::WritableParams params;
  LoraSet lora;
  std::vector<float> R;  // L = Σ out · R
  Context ctx{2};
  Tensor out;

  // The golden batch, or with `crops` a smaller one: fewer clamped elements to cross a bound.
  GradSetup(bool widen_clamps, bool crops) {
    t = open_tower(golden_hf("train/gemma4"));
    auto g = safetensors::File::open(golden_hf("train/gemma4") + "/golden.safetensors");
    im = read_images(*g, "sft.inputs.");
    if (crops) {
      const Images all = im;
      im = Images();
      add_crop(im, all, 0, 4, 2, 0);  // two soft tokens
      add_crop(im, all, 1, 2, 2, 4);  // one, and padding
    }
    tower = std::make_unique<Gemma4VisionTrain>(*t.src, t.cfg, t.text_hidden);
    tower->enable_base_grads(std::ref(params));
    lora = test::small_lora(
        tower->adaptable_linears(),
        R"(model\.vision_tower\.encoder\.layers\.(0\.self_attn\.q_proj|1\.mlp\.down_proj)\.linear)");
    EXPECT_EQ(lora.pairs.size(), 2u);
    std::mt19937 rng(301);
    std::normal_distribution<float> nd(0.0f, 0.05f);  // B nonzero, as in the golden adapter
    for (auto& [_, p] : lora.pairs)
      for (float& b : p.B) b = nd(rng);
    for (TrainLinear* l : tower->adaptable_linears()) {
      l->lora = lora.find(l->module);
      if (widen_clamps) {
        l->in_min = l->out_min = -TrainLinear::kUnbounded;
        l->in_max = l->out_max = TrainLinear::kUnbounded;
      }
    }
    tower->forward(ctx, im.batch(), out);
    R.resize(out.numel());
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (float& r : R) r = u(rng);
  }

  double loss() {
    tower->forward(ctx, im.batch(), out);
    double s = 0;
    for (int64_t i = 0; i < out.numel(); ++i) s += (double)out.data()[i] * R[i];
    return s;
  }
  // How far loss() moves when single weights move by one ulp: float32 rounding, not the gradient
  // (g · ulp is orders of magnitude smaller). The largest of 40 such moves.
  double noise() {
    const double l0 = loss();
    std::mt19937 rng(5);
    double spread = 0;
    for (int k = 0; k < 40; ++k) {
      std::vector<float>& v = params.values[rng() % params.values.size()];
      float& x = v[rng() % v.size()];
      const float x0 = x;
      x = std::nextafter(x0, 2 * x0 + 1);
      spread = std::max(spread, std::fabs(loss() - l0));
      x = x0;
    }
    loss();
    return spread;
  }
  // d L / d out = R, from a fresh forward.
  void backward() {
    loss();
    Tensor dout({out.shape()[0], out.shape()[1]});
    std::copy(R.begin(), R.end(), dout.data());
    tower->backward(ctx, dout);
  }

  // Samples of every base parameter (the position table on the rows the images use) and of both
  // LoRA pairs' factors.
  std::vector<FdCase> cases(int per_param) {
    std::mt19937 rng(7);
    std::vector<FdCase> c;
    const int64_t D = t.cfg.hidden;
    for (size_t i = 0; i < params.list.size(); ++i) {
      BaseParam& p = *params.list[i];
      std::vector<size_t> allowed;
      if (p.name.find("position_embedding_table") != std::string::npos) {
        for (const std::vector<int64_t>& pos : im.positions)
          for (size_t pt = 0; pt < pos.size() / 2; ++pt) {
            if (pos[2 * pt] < 0) continue;
            for (int64_t d = 0; d < D; ++d) {
              allowed.push_back(pos[2 * pt] * D + d);
              allowed.push_back((t.cfg.position_table + pos[2 * pt + 1]) * D + d);
            }
          }
      }
      // Steps that balance float32 rounding in L (noise()) against curvature: matrices are ~0.02
      // in size, norm scales and positions ~1.
      const float h = p.w->shape.size() == 2 ? 5e-3f : 3e-2f;
      c.push_back({p.name, &params.values[i], &p.grad, sample_gradient_elements(p.grad, rng, per_param, allowed), h});
    }
    for (auto& [module, p] : lora.pairs) {
      c.push_back({module + ".lora_A", &p.A, &p.dA, sample_gradient_elements(p.dA, rng, per_param), 2e-2f});
      c.push_back({module + ".lora_B", &p.B, &p.dB, sample_gradient_elements(p.dB, rng, per_param), 2e-2f});
    }
    return c;
  }
};

constexpr double kFdTol = 5e-3;

TEST(Gemma4VisionTrain, GradientsMatchFiniteDifferencesWithoutClamps) {
  GradSetup s(true, false);
  ASSERT_EQ(s.params.list.size(), 29u);  // table, input_proj, 13 per layer, projection
  EXPECT_NE(s.params.list.front()->name.find("position_embedding_table"), std::string::npos);
  EXPECT_NE(s.params.list.back()->name.find("embedding_projection"), std::string::npos);
  s.backward();
  const FdResult r = fd_check(s.cases(4), [&] { return s.loss(); }, nullptr, s.noise());
  std::printf("  clamps widened: %d elements, worst fd error %.3g (%.3g before the noise allowance)\n", r.compared,
              r.worst, r.worst_raw);
  EXPECT_EQ(r.errors.size(), 33u);  // every parameter and both LoRA factors of both pairs
  expect_below(r, kFdTol);
  // Position rows no image uses get nothing.
  const BaseParam& table = *s.params.list.front();
  const int64_t D = s.t.cfg.hidden;
  for (int64_t d = 0; d < D; ++d) EXPECT_EQ(table.grad[63 * D + d], 0.0f);
}

TEST(Gemma4VisionTrain, ClampedElementsPassNoGradient) {
  GradSetup s(false, true);
  // The golden bounds bite: a good share of the clamps' elements are outside them.
  s.loss();
  const std::vector<uint8_t> p = clamp_pattern(*s.tower);
  const int64_t clamped = std::count(p.begin(), p.end(), 0);
  std::printf("  real bounds: %lld of %zu clamp elements clamped\n", (long long)clamped, p.size());
  EXPECT_GT(clamped, (int64_t)p.size() / 20);
  s.backward();
  const double noise = s.noise();
  const FdResult r = fd_check(s.cases(6), [&] { return s.loss(); }, [&] { return clamp_pattern(*s.tower); }, noise);
  std::printf("  real bounds: %d elements compared (%d at kinks left out), worst fd error %.3g (%.3g before the "
              "noise allowance)\n", r.compared, r.skipped, r.worst, r.worst_raw);
  EXPECT_GT(r.compared, 3 * r.skipped);
  expect_below(r, kFdTol);

  // The same check fails a backward blind to the clamps (gradient through every element): the
  // gradients of a forward with the clamps widened, checked against the real function.
  for (auto& [_, pair] : s.lora.pairs) {
    std::fill(pair.dA.begin(), pair.dA.end(), 0.0f);
    std::fill(pair.dB.begin(), pair.dB.end(), 0.0f);
  }
  for (auto& q : s.params.list) std::fill(q->grad.begin(), q->grad.end(), 0.0f);
  const std::vector<TrainLinear*> linears = s.tower->adaptable_linears();
  std::vector<std::array<float, 4>> bounds;
  for (TrainLinear* l : linears) {
    bounds.push_back({l->in_min, l->in_max, l->out_min, l->out_max});
    l->in_min = l->out_min = -TrainLinear::kUnbounded;
    l->in_max = l->out_max = TrainLinear::kUnbounded;
  }
  s.backward();
  for (size_t i = 0; i < linears.size(); ++i) {
    linears[i]->in_min = bounds[i][0];
    linears[i]->in_max = bounds[i][1];
    linears[i]->out_min = bounds[i][2];
    linears[i]->out_max = bounds[i][3];
  }
  const FdResult blind = fd_check(s.cases(6), [&] { return s.loss(); }, [&] { return clamp_pattern(*s.tower); }, noise);
  std::printf("  a clamp-blind backward: worst fd error %.3g\n", blind.worst);
  EXPECT_GT(blind.worst, 10 * kFdTol);
}

TEST(Gemma4VisionTrain, BackwardAccumulates) {
  GradSetup s(false, false);
  s.backward();
  std::vector<std::vector<float>> once;
  for (auto& p : s.params.list) once.push_back(p->grad);
  s.backward();
  for (size_t i = 0; i < once.size(); ++i) {
    double scale = 0, dev = 0;
    for (size_t j = 0; j < once[i].size(); ++j) {
      scale = std::max(scale, (double)std::fabs(once[i][j]));
      dev = std::max(dev, (double)std::fabs(s.params.list[i]->grad[j] - 2 * once[i][j]));
    }
    EXPECT_GT(scale, 0.0) << s.params.list[i]->name;
    EXPECT_LE(dev, 1e-5 * scale) << s.params.list[i]->name;  // summation order only
  }
}

TEST(Gemma4VisionTrain, RejectsMismatchedBackward) {
  Tower t = open_tower(golden_hf("train/gemma4"));
  Gemma4VisionTrain tower(*t.src, t.cfg, t.text_hidden);
  Context ctx(1);
  Tensor dout({3, t.text_hidden});
  EXPECT_THROW(tower.backward(ctx, dout), Error);
  std::vector<float> px(5 * 48, 0.5f);
  std::vector<int64_t> pos(5 * 2, 0);
  Tensor out;
  EXPECT_THROW(tower.forward(ctx, {{px.data(), pos.data(), 5}}, out), Error);  // 5 patches cannot pool 2x2
}

}  // namespace
}  // namespace edgevl::train
