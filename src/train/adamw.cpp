#include "train/adamw.h"

#include <cmath>

#include "core/error.h"

namespace edgevl::train {

void AdamW::update(float* p, const float* g, AdamWState& s, int64_t n) const {
  if ((int64_t)s.m.size() != n) {
    s.m.assign(n, 0.0f);
    s.v.assign(n, 0.0f);
  }
  const float decay = (float)(1.0 - o_.lr * o_.weight_decay);
  const float w1 = (float)(1.0 - o_.beta1), b2 = (float)o_.beta2, w2 = (float)(1.0 - o_.beta2);
  const int64_t t = ++s.step;
  const double bc1 = 1.0 - std::pow(o_.beta1, (double)t), bc2 = 1.0 - std::pow(o_.beta2, (double)t);
  const float step_size = (float)(o_.lr / bc1), bc2_sqrt = (float)std::sqrt(bc2), eps = (float)o_.eps;
  for (int64_t i = 0; i < n; ++i) {
    p[i] *= decay;
    s.m[i] += w1 * (g[i] - s.m[i]);             // torch.lerp with weight < 0.5
    s.v[i] = s.v[i] * b2 + w2 * g[i] * g[i];    // mul_(β2).addcmul_(g, g, value=1-β2)
    const float denom = std::sqrt(s.v[i]) / bc2_sqrt + eps;
    p[i] += -step_size * (s.m[i] / denom);      // addcdiv_(m, denom, value=-step_size)
  }
}

}  // namespace edgevl::train
