// AdamW as torch.optim.AdamW computes it (single-tensor path, amsgrad off, not maximizing):
//   p *= 1 - lr·wd                                   (decoupled weight decay, before the update)
//   m = lerp(m, g, 1 - β1);  v = β2·v + (1 - β2)·g²
//   p -= lr / (1 - β1^t) · m / (sqrt(v) / sqrt(1 - β2^t) + eps)
// with the bias corrections in double, as Python computes them.
#pragma once
#include <cstdint>
#include <vector>

namespace edgevl::train {

struct AdamWOptions {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 1e-2;  // torch's defaults
};

struct AdamWState {
  std::vector<float> m, v;
};

class AdamW {
 public:
  explicit AdamW(AdamWOptions o = {}) : o_(o) {}
  const AdamWOptions& options() const { return o_; }
  int64_t steps() const { return step_; }
  void set_lr(double lr) { o_.lr = lr; }         // learning-rate schedules
  void set_steps(int64_t n) { step_ = n; }       // resuming from a checkpoint
  // Starts a new step; then update() each parameter once.
  void begin_step() { ++step_; }
  void update(float* p, const float* g, AdamWState& s, int64_t n) const;

 private:
  AdamWOptions o_;
  int64_t step_ = 0;
};

}  // namespace edgevl::train
