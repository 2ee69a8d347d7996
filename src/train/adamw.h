// AdamW as torch.optim.AdamW computes it (single-tensor path, amsgrad off, not maximizing):
//   p *= 1 - lr·wd                                   (decoupled weight decay, before the update)
//   m = lerp(m, g, 1 - β1);  v = β2·v + (1 - β2)·g²
//   p -= lr / (1 - β1^t) · m / (sqrt(v) / sqrt(1 - β2^t) + eps)
// with the bias corrections in double, as Python computes them. Like torch, each parameter counts
// its own steps t: a parameter without a gradient in a step (an adapter on a tower the batch did
// not use: grad None in torch) is not updated and its count stays.
#pragma once
#include <cstdint>
#include <vector>

namespace edgevl::train {

struct AdamWOptions {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 1e-2;  // torch's defaults
};

struct AdamWState {
  std::vector<float> m, v;
  int64_t step = 0;
};

class AdamW {
 public:
  explicit AdamW(AdamWOptions o = {}) : o_(o) {}
  const AdamWOptions& options() const { return o_; }
  void set_lr(double lr) { o_.lr = lr; }  // learning-rate schedules
  // One step of one parameter (s.step counts them).
  void update(float* p, const float* g, AdamWState& s, int64_t n) const;

 private:
  AdamWOptions o_;
};

}  // namespace edgevl::train
