// The Gemma 4 mixture of experts (26B-A4B: router + experts beside the dense MLP) in the training
// forward and backward (train/gemma4_text.cpp), on the tiny MoE checkpoint of
// ../shared/golden/hf/gemma4_text_moe (4 experts, top 2, three layers): the logits against HF's,
// every MoE weight's gradient (and LoRA pairs', and the embedding's through the input) against
// central finite differences of L = Σ logits·R, and activation checkpointing's bit-identical
// gradients.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "grad_check.h"
#include "io/safetensors.h"
#include "test_util.h"
#include "train/families.h"
#include "train/grad_ops.h"
#include "train/lora.h"
#include "train/model.h"
#include "train/steps.h"

namespace edgevl::train {

namespace {

using test::randv;

const std::string kCase = "gemma4_text_moe";
constexpr int64_t kTopK = 2;

// The golden forward's inputs (labels -100: a forward does not read them).
Batch golden_batch(const safetensors::File& g) {
  Batch b;
  const TensorRef* ids = g.find("inputs.input_ids");
  b.B = ids->shape[0];
  b.T = ids->shape[1];
  b.input_ids = test::as_ids(*ids);
  for (int32_t m : test::as_ids(*g.find("inputs.attention_mask"))) b.attention_mask.push_back(m != 0);
  b.labels.assign(b.B * b.T, kIgnoreIndex);
  return b;
}

TEST(Gemma4MoeTrain, ForwardMatchesHf) {
  const std::string dir = test::golden_hf(kCase);
  auto g = safetensors::File::open(dir + "/golden.safetensors");
  const Batch b = golden_batch(*g);
  const std::vector<float> ref = test::as_f32(*g->find("logits"));
  Context ctx(2);
  auto m = open_trainable(dir);
  m->match_hf_eager_attention(true);
  m->forward(ctx, b);
  const int64_t V = m->logits().dim(-1);
  ASSERT_EQ(m->logits().numel(), (int64_t)ref.size());
  int rows = 0;
  double worst = 0;
  for (int64_t i = 0; i < b.B; ++i) {
    if (std::count(b.attention_mask.begin() + i * b.T, b.attention_mask.begin() + (i + 1) * b.T, 1) != b.T) continue;
    const double e = test::rel_error(m->logits().data() + i * b.T * V, ref.data() + i * b.T * V, b.T * V);
    EXPECT_LE(e, 1e-4) << "row " << i;
    worst = std::max(worst, e);
    ++rows;
  }
  EXPECT_GT(rows, 0);
  std::printf("  logits vs HF: worst relative error %.3g over %d rows\n", worst, rows);
  const auto routed = gemma4_routed_experts(*m);
  ASSERT_EQ(routed.size(), 3u);  // every layer has the experts
  for (const auto& r : routed) EXPECT_EQ(r.size(), (size_t)(kTopK * b.B * b.T));
}

// Per layer and token, the set of experts the last forward routed it to (the order within the top
// k does not matter: the weights are continuous across a swap).
std::vector<std::vector<int32_t>> routing_sets(const TrainableLM& m) {
  std::vector<std::vector<int32_t>> r = gemma4_routed_experts(m);
  for (auto& layer : r)
    for (size_t t = 0; t < layer.size(); t += kTopK) std::sort(layer.begin() + t, layer.begin() + t + kTopK);
  return r;
}

// The checkpoint with an explicit, untied lm_head (a copy of embed_tokens): the same function, but
// embed_tokens' gradient is then its input path alone.
void write_untied_copy(const std::string& from, const std::string& to) {
  std::ifstream in(from + "/config.json");
  std::string config((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string tied = "\"tie_word_embeddings\": true";
  ASSERT_NE(config.find(tied), std::string::npos);
  config.replace(config.find(tied), tied.size(), "\"tie_word_embeddings\": false");
  std::ofstream(to + "/config.json") << config;
  auto base = safetensors::File::open(from + "/model.safetensors");
  safetensors::Writer w;
  for (const TensorRef& t : base->tensors()) {
    const std::vector<float> v = test::as_f32(t);
    w.add_f32(t.name, t.shape, v);
    if (t.name == "model.embed_tokens.weight") w.add_f32("lm_head.weight", t.shape, v);
  }
  w.write(to + "/model.safetensors");
}

// A parameter's values, perturbed in place, and its analytic gradient.
struct Slot {
  float* values;
  const std::vector<float>* grad;
};

// The base parameters by name, made writable in place: the checkpoint is mapped private and
// read-only, so its pages become copy-on-write (the file is untouched); the norm weights live in
// the loader's own buffers. (Redirecting a WeightRef to a copy would not do: the model finds a
// norm's gradient slot by the weight's address.)
std::map<std::string, Slot> writable_params(const TrainableLM& m) {
  std::map<std::string, Slot> r;
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  for (const auto& p : m.base_params()) {
    EXPECT_EQ(p->w->dtype, DType::F32) << p->name;
    EXPECT_EQ(p->w->packed, nullptr) << p->name << ": a repacked copy would not see the perturbations";
    const uintptr_t begin = (uintptr_t)p->w->data & ~(page - 1);
    const uintptr_t end = ((uintptr_t)p->w->data + p->grad.size() * sizeof(float) + page - 1) & ~(page - 1);
    EXPECT_EQ(mprotect((void*)begin, end - begin, PROT_READ | PROT_WRITE), 0) << p->name;
    r[p->name] = {const_cast<float*>(p->w->f32()), &p->grad};
  }
  return r;
}

struct FdStats {
  double worst = 0;  // max |fd - g| / max |g| over the parameters' compared elements
  int compared = 0, skipped = 0, unresolved = 0;
};

TEST(Gemma4MoeTrain, GradientsMatchFiniteDifferences) {
  const std::string dir = test::golden_hf(kCase);
  test::TempDir tmp;
  write_untied_copy(dir, tmp.str());
  auto g = safetensors::File::open(dir + "/golden.safetensors");
  const Batch b = golden_batch(*g);
  Context ctx(1);
  auto m = open_trainable(tmp.str());
  m->enable_base_grads();
  // LoRA on two dense projections of MoE layer 1 and on layer 2's router proj (an nn.Linear, which
  // PEFT's all-linear adapts; the last layer's, whose perturbations move the fewest routings); the
  // experts' 3-D weights are no module an adapter may target.
  const auto modules = m->linear_modules();
  EXPECT_EQ(modules.count("model.layers.1.router.proj"), 1u);
  for (const auto& [name, _] : modules) EXPECT_EQ(name.find("experts"), std::string::npos) << name;
  LoraConfig lc;
  lc.r = 4;
  lc.alpha = 8;
  lc.target_regex = R"(model\.layers\.(1\.self_attn\.q_proj|1\.mlp\.down_proj|2\.router\.proj))";
  LoraSet lora = LoraSet::create(lc, modules, 300);
  ASSERT_EQ(lora.pairs.size(), 3u);
  std::mt19937 rng(301);
  std::normal_distribution<float> nd(0.0f, 0.05f);  // B nonzero: A's gradient is not trivial
  for (auto& [_, p] : lora.pairs)
    for (float& x : p.B) x = nd(rng);
  m->attach_lora(&lora);
  std::map<std::string, Slot> param = writable_params(*m);

  m->forward(ctx, b);
  const int64_t V = m->logits().dim(-1);
  const std::vector<float> R = randv(b.B * b.T * V, 41);
  auto loss = [&] {
    m->forward(ctx, b);
    double s = 0;
    for (size_t i = 0; i < R.size(); ++i) s += (double)m->logits().data()[i] * R[i];
    return s;
  };
  m->zero_grad();
  loss();
  const auto routed0 = routing_sets(*m);
  Tensor dl({b.B * b.T, V});
  std::copy(R.begin(), R.end(), dl.data());
  m->backward(ctx, dl);

  // How far L moves when single weights of layer l or later move by one ulp: the float32 rounding
  // of what a perturbation in layer l changes, not the gradient (g · ulp is orders of magnitude
  // smaller). The largest of 40 such moves.
  std::vector<double> noise(3, 0.0);
  for (int l = 0; l < 3; ++l) {
    std::vector<Slot> later;
    for (const auto& [name, s] : param)
      for (int j = l; j < 3; ++j)
        if (name.find("layers." + std::to_string(j) + ".") != std::string::npos) later.push_back(s);
    std::mt19937 r(5);
    const double l0 = loss();
    for (int k = 0; k < 40; ++k) {
      const Slot& s = later[r() % later.size()];
      float& v = s.values[r() % s.grad->size()];
      const float v0 = v;
      v = std::nextafter(v0, 2 * v0 + 1);
      noise[l] = std::max(noise[l], std::fabs(loss() - l0));
      v = v0;
    }
  }
  std::printf("  float32 rounding of L from layers 0, 1, 2 on: %.3g, %.3g, %.3g\n", noise[0], noise[1], noise[2]);

  // Central differences at sampled elements (the largest and random ones), |fd - g| / max |g| below
  // kTol. Top-k routing makes L jump where a token's k-th and (k+1)-th experts swap: where the ±h
  // forwards route any token of any layer to other experts than the unperturbed one, h is halved
  // (four times at most), then the element is left out. The rounding of lp - lm (two roundings,
  // over 2h) is up to noise / h: an element where that exceeds half the tolerance cannot be resolved
  // in float32 at a step that keeps the routing, and is left out too. Both are counted.
  constexpr double kTol = 5e-3;
  std::mt19937 pick(7);
  std::map<std::string, FdStats> kinds;
  auto check = [&](const std::string& kind, const std::string& what, float* x, const std::vector<float>& grad,
                   float h0, int layer, std::vector<size_t> allowed) {
    const std::vector<size_t> idx = test::sample_gradient_elements(grad, pick, 4, allowed);
    std::vector<std::pair<double, double>> diffs;  // |fd - g|, rounding of the difference
    double den = 0;
    FdStats& k = kinds[kind];
    for (size_t i : idx) {
      const float x0 = x[i];
      bool same = false;
      double fd = 0, h = 2.0 * h0;
      while (!same && h > h0 / 16) {
        h /= 2;
        x[i] = x0 + (float)h;
        const double lp = loss();
        same = routing_sets(*m) == routed0;
        x[i] = x0 - (float)h;
        const double lm = loss();
        same = same && routing_sets(*m) == routed0;
        fd = (lp - lm) / (2.0 * h);
      }
      x[i] = x0;
      if (!same) {
        ++k.skipped;
        continue;
      }
      diffs.emplace_back(std::fabs(fd - grad[i]), noise[layer] / h);
      den = std::max(den, (double)std::fabs(grad[i]));
    }
    ASSERT_GT(den, 0.0) << what << ": every element left out, or an all-zero gradient";
    double err = 0;
    int compared = 0;
    for (const auto& [d, rounding] : diffs) {
      if (rounding > 0.5 * kTol * den) {
        ++k.unresolved;
        continue;
      }
      ++compared;
      err = std::max(err, d / den);
    }
    k.compared += compared;
    k.worst = std::max(k.worst, err);
    EXPECT_GT(compared, 0) << what;
    EXPECT_LT(err, kTol) << what;
  };
  // First steps: 1e-2 for the matrices (~0.02..0.1) and norm weights (~1); less for the embedding
  // rows (times sqrt(D) = 8 in the input) and the dense projections' LoRA factors (L curves faster
  // along them); more for the router's scale, whose gradient is small beside L's rounding.
  for (int l = 0; l < 3; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    for (const auto& [kind, name, h] : std::vector<std::tuple<std::string, std::string, float>>{
             {"router.proj", "router.proj.weight", 1e-2f},
             {"router.scale", "router.scale", 1.6e-1f},
             {"router.per_expert_scale", "router.per_expert_scale", 1e-2f},
             {"experts.gate_up_proj", "experts.gate_up_proj", 1e-2f},
             {"experts.down_proj", "experts.down_proj", 1e-2f},
             {"pre_feedforward_layernorm_2", "pre_feedforward_layernorm_2.weight", 1e-2f},
             {"post_feedforward_layernorm_1", "post_feedforward_layernorm_1.weight", 1e-2f},
             {"post_feedforward_layernorm_2", "post_feedforward_layernorm_2.weight", 1e-2f},
             {"post_feedforward_layernorm", "post_feedforward_layernorm.weight", 1e-2f},
             {"mlp.down_proj", "mlp.down_proj.weight", 1e-2f},
         }) {
      auto it = param.find(p + name);
      ASSERT_NE(it, param.end()) << p + name;
      check(kind, p + name, it->second.values, *it->second.grad, h, l, {});
    }
  }
  for (auto& [module, pair] : lora.pairs) {
    const bool router = module.find("router") != std::string::npos;
    const int layer = module.find("layers.2.") != std::string::npos ? 2 : 1;
    check("lora_A", module + ".lora_A", pair.A.data(), pair.dA, router ? 1e-2f : 2.5e-3f, layer, {});
    check("lora_B", module + ".lora_B", pair.B.data(), pair.dB, router ? 1e-2f : 2.5e-3f, layer, {});
  }
  // The embedding rows of the batch's tokens: the gradient through every layer into the input.
  {
    const Slot& e = param.at("model.embed_tokens.weight");
    const int64_t D = (int64_t)e.grad->size() / V;
    std::vector<size_t> allowed;
    for (int32_t id : std::set<int32_t>(b.input_ids.begin(), b.input_ids.end()))
      for (int64_t d = 0; d < D; ++d) allowed.push_back(id * D + d);
    check("embed_tokens (input path)", "model.embed_tokens.weight", e.values, *e.grad, 1e-3f, 0, allowed);
  }
  int compared = 0, skipped = 0, unresolved = 0;
  for (const auto& [kind, s] : kinds) {
    std::printf("  %-28s worst fd error %.3g; %2d compared, %d left out for routing flips, %d below float32 "
                "resolution\n",
                kind.c_str(), s.worst, s.compared, s.skipped, s.unresolved);
    EXPECT_GE(s.compared, s.skipped + s.unresolved) << kind;
    compared += s.compared;
    skipped += s.skipped;
    unresolved += s.unresolved;
  }
  std::printf("  %d elements compared, %d left out for routing flips, %d below float32 resolution\n", compared,
              skipped, unresolved);
  EXPECT_GT(compared, 5 * (skipped + unresolved));
}

TEST(Gemma4MoeTrain, RecomputeGivesTheSameGradients) {
  // Activation checkpointing recomputes each MoE layer (routing, experts, LoRA dropout masks) in the
  // backward: bit-identical gradients, base and LoRA.
  const std::string dir = test::golden_hf(kCase);
  auto g = safetensors::File::open(dir + "/golden.safetensors");
  Batch b = golden_batch(*g);
  for (int64_t i = 0; i < b.B * b.T; ++i) b.labels[i] = i % 5 == 0 ? kIgnoreIndex : b.input_ids[i];
  Context ctx(2);
  std::vector<std::vector<float>> grads[2];
  for (int recompute = 0; recompute < 2; ++recompute) {
    auto m = open_trainable(dir);
    m->enable_base_grads();
    m->set_recompute(recompute == 1);
    LoraConfig lc;
    lc.r = 4;
    lc.alpha = 8;
    lc.dropout = 0.2;
    lc.target_regex = ".*";  // every linear, the routers' proj included
    LoraSet lora = LoraSet::create(lc, m->linear_modules(), 300);
    std::mt19937 rng(301);
    std::normal_distribution<float> nd(0.0f, 0.05f);
    for (auto& [_, p] : lora.pairs)
      for (float& x : p.B) x = nd(rng);
    lora.set_mode(true, 11);
    m->attach_lora(&lora);
    sft_step(ctx, *m, b);
    for (auto& [_, p] : lora.pairs) {
      grads[recompute].push_back(p.dA);
      grads[recompute].push_back(p.dB);
    }
    for (const auto& p : m->base_params()) grads[recompute].push_back(p->grad);
  }
  // 3 layers: 8 MoE weights each besides the dense ones; adapters on q, k, (v), o, gate, up, down, router.
  EXPECT_GT(grads[0].size(), 3u * 8u);
  EXPECT_EQ(grads[0], grads[1]);
}

}  // namespace
}  // namespace edgevl::train
