#include "train/losses.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "train/grad_ops.h"

namespace edgevl::train {

float causal_lm_loss(const Tensor& logits, const Batch& b, Tensor* dlogits, int64_t num_items, ThreadPool* pool) {
  const int64_t N = b.B * b.T, V = logits.dim(-1);
  EV_CHECK(logits.numel() == N * V, "causal-LM loss: logits do not match the batch");
  const std::vector<int64_t> targets = shifted_targets(b);
  std::vector<float> logps(N);
  target_logps_forward(logits.data(), targets.data(), N, V, logps.data(), nullptr, pool);
  int64_t count = 0;
  double sum = 0;
  for (int64_t r = 0; r < N; ++r)
    if (targets[r] != kIgnoreIndex) {
      sum += logps[r];
      ++count;
    }
  const double divisor = num_items > 0 ? (double)num_items : (double)count;
  if (!count) return 0.0f;
  if (dlogits) {
    std::vector<float> g(N, (float)(-1.0 / divisor));
    target_logps_backward(logits.data(), targets.data(), N, V, g.data(), dlogits->data(), pool);
  }
  return (float)(-sum / divisor);
}

std::vector<int64_t> next_token_targets(const std::vector<int32_t>& ids, const std::vector<uint8_t>& mask, int64_t B,
                                        int64_t T) {
  EV_CHECK((int64_t)ids.size() == B * T && (int64_t)mask.size() == B * T, "next-token targets: shapes disagree");
  std::vector<int64_t> t(B * T, kIgnoreIndex);
  for (int64_t i = 0; i < B; ++i)
    for (int64_t j = 0; j + 1 < T; ++j)
      if (mask[i * T + j + 1]) t[i * T + j] = ids[i * T + j + 1];
  return t;
}

std::vector<float> token_logps(const Tensor& logits, const std::vector<int64_t>& targets,
                               std::vector<float>* entropies, ThreadPool* pool) {
  const int64_t N = (int64_t)targets.size(), V = logits.dim(-1);
  EV_CHECK(logits.numel() == N * V, "token log-probabilities: logits do not match the targets");
  std::vector<float> out(N);
  if (entropies) entropies->assign(N, 0.0f);
  target_logps_forward(logits.data(), targets.data(), N, V, out.data(), entropies ? entropies->data() : nullptr, pool);
  return out;
}

DpoResult dpo_sigmoid_loss(const std::vector<float>& policy, const std::vector<float>& ref, double beta) {
  EV_CHECK(policy.size() == ref.size() && policy.size() % 2 == 0 && !policy.empty(),
           "DPO: need chosen and rejected log-probabilities for each pair, policy and reference");
  const size_t n = policy.size() / 2;
  DpoResult r;
  r.dpolicy.assign(policy.size(), 0.0f);
  double loss = 0;
  for (size_t i = 0; i < n; ++i) {
    const double c = (double)policy[i] - ref[i], j = (double)policy[n + i] - ref[n + i];
    const double z = beta * (c - j);
    // -logsigmoid(z) = softplus(-z), stable for either sign.
    loss += std::max(-z, 0.0) + std::log1p(std::exp(-std::abs(z)));
    const double dz = -1.0 / (1.0 + std::exp(z)) / (double)n;  // d/dz softplus(-z) = -sigmoid(-z)
    r.dpolicy[i] = (float)(dz * beta);
    r.dpolicy[n + i] = (float)(-dz * beta);
    r.chosen_rewards.push_back((float)(beta * c));
    r.rejected_rewards.push_back((float)(beta * j));
  }
  r.loss = (float)(loss / (double)n);
  return r;
}

std::vector<float> group_advantages(const std::vector<float>& rewards, int64_t group_size) {
  EV_CHECK(group_size > 0 && rewards.size() % group_size == 0, "GRPO: ", rewards.size(),
           " rewards do not form groups of ", group_size);
  std::vector<float> a(rewards.size());
  for (size_t g = 0; g < rewards.size(); g += group_size) {
    double mean = 0;
    for (int64_t i = 0; i < group_size; ++i) mean += rewards[g + i];
    mean /= (double)group_size;
    double var = 0;
    for (int64_t i = 0; i < group_size; ++i) var += (rewards[g + i] - mean) * (rewards[g + i] - mean);
    // torch.std is unbiased; a group of one has NaN std in TRL (nanstd) — treat as 0 spread.
    const double sd = group_size > 1 ? std::sqrt(var / (double)(group_size - 1)) : 0.0;
    for (int64_t i = 0; i < group_size; ++i) a[g + i] = (float)((rewards[g + i] - mean) / (sd + 1e-4));
  }
  return a;
}

GrpoResult grpo_loss(const std::vector<float>& logps, const std::vector<float>& old_logps,
                     const std::vector<float>& ref_logps, const std::vector<float>& advantages,
                     const std::vector<uint8_t>& mask, int64_t C, double num_items, const GrpoOptions& o) {
  const size_t n = logps.size();
  EV_CHECK(C > 0 && n == advantages.size() * C && mask.size() == n && (old_logps.empty() || old_logps.size() == n) &&
               (o.beta == 0 || ref_logps.size() == n),
           "GRPO: log-probabilities, advantages and mask disagree in shape");
  EV_CHECK(num_items > 0, "GRPO: the batch has no completion tokens");
  GrpoResult r;
  r.per_token_loss.resize(n);
  r.coef_1.resize(n);
  r.dlogps.assign(n, 0.0f);
  double loss = 0;
  for (size_t i = 0; i < n; ++i) {
    const double A = advantages[i / C];
    const double rho = old_logps.empty() ? 1.0 : std::exp((double)logps[i] - old_logps[i]);
    const double clipped = std::clamp(rho, 1.0 - o.epsilon_low, 1.0 + o.epsilon_high);
    // -min(ρA, clip(ρ)A): the unclipped term carries the gradient unless the clipped one is smaller
    // and ρ is outside the range (inside it the two terms are the same function of ρ).
    double l, dl;
    if (rho * A <= clipped * A || clipped == rho) {
      l = -rho * A;
      dl = -rho * A;  // ∂(-ρA)/∂logp, ∂ρ/∂logp = ρ
    } else {
      l = -clipped * A;
      dl = 0;
    }
    if (o.beta != 0) {
      const double d = (double)ref_logps[i] - logps[i];
      l += o.beta * (std::exp(d) - d - 1);
      dl += o.beta * (1 - std::exp(d));
    }
    r.coef_1[i] = (float)rho;
    r.per_token_loss[i] = (float)l;
    if (mask[i]) {
      loss += l;
      r.dlogps[i] = (float)(dl / num_items);
    }
  }
  r.loss = (float)(loss / num_items);
  return r;
}

}  // namespace edgevl::train
