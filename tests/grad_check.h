// Shared helpers for the gradient tests (train_test, gemma4_*_train_test): random inputs, the
// gradient elements a finite-difference check samples, and writable copies of a checkpoint's
// weights for it to perturb.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "tensor/tensor.h"
#include "train/lora.h"
#include "train/model.h"

namespace edgevl::test {

// Reproducible inputs, cotangents and LoRA factors: n uniform values in [lo, hi) from `seed`.
inline std::vector<float> randv(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = u(g);
  return v;
}

// The elements of gradient g to check by finite differences: its largest among `allowed` (default:
// all), so the relative error has a scale, and n random ones among `allowed`.
inline std::vector<size_t> sample_gradient_elements(const std::vector<float>& g, std::mt19937& rng, int n,
                                                    std::vector<size_t> allowed = {}) {
  if (allowed.empty())
    for (size_t i = 0; i < g.size(); ++i) allowed.push_back(i);
  std::vector<size_t> s = {*std::max_element(allowed.begin(), allowed.end(), [&](size_t a, size_t b) {
    return std::fabs(g[a]) < std::fabs(g[b]);
  })};
  std::uniform_int_distribution<size_t> u(0, allowed.size() - 1);
  for (int i = 0; i < n; ++i) s.push_back(allowed[u(rng)]);
  return s;
}

// A model's enable_base_grads callback: a gradient slot for every weight it registers. The
// checkpoint is mapped read-only, so each registered weight is pointed at a writable copy that
// finite differences may perturb.
struct WritableParams {
  std::vector<std::unique_ptr<train::BaseParam>> list;
  std::vector<std::vector<float>> values;  // list[i]'s weight, which the model now reads
  train::BaseParam* operator()(const WeightRef& w) {
    EXPECT_EQ(w.dtype, DType::F32) << w.name;
    EXPECT_EQ(w.packed, nullptr) << w.name << ": a repacked copy would not see the perturbations";
    int64_t n = 1;
    for (int64_t d : w.shape) n *= d;
    values.emplace_back(w.f32(), w.f32() + n);
    const_cast<WeightRef&>(w).data = values.back().data();
    auto p = std::make_unique<train::BaseParam>();
    p->name = w.name;
    p->w = &w;
    p->grad.assign(n, 0.0f);
    list.push_back(std::move(p));
    return list.back().get();
  }
};

// A small adapter for a tower's gradient checks: LoRA r 4, alpha 8 (A from seed 300, B zero, which
// the caller replaces so B's and the base weights' gradients are not trivial) on the linears whose
// PEFT module name matches `target_regex`. The caller attaches it (TrainLinear::lora).
inline train::LoraSet small_lora(const std::vector<train::TrainLinear*>& linears, const std::string& target_regex) {
  std::map<std::string, std::pair<int64_t, int64_t>> modules;
  for (const train::TrainLinear* l : linears) modules[l->module] = {l->in(), l->out()};
  train::LoraConfig lc;
  lc.r = 4;
  lc.alpha = 8;
  lc.target_regex = target_regex;
  return train::LoraSet::create(lc, modules, 300);
}

}  // namespace edgevl::test
