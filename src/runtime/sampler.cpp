#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_set>

namespace edgevl {

Sampler::Sampler(SamplingOptions opt) : opt_(std::move(opt)), rng_(opt_.seed) {}

int32_t argmax(std::span<const float> logits, std::span<const int32_t> suppress) {
  int32_t best = -1;
  float best_v = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < logits.size(); ++i) {
    if (!suppress.empty() && std::find(suppress.begin(), suppress.end(), (int32_t)i) != suppress.end()) continue;
    if (best < 0 || logits[i] > best_v) {
      best = (int32_t)i;
      best_v = logits[i];
    }
  }
  return best;
}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
  const int32_t V = (int32_t)logits.size();
  work_.assign(logits.begin(), logits.end());
  for (int32_t id : opt_.suppress)
    if (id >= 0 && id < V) work_[id] = -std::numeric_limits<float>::infinity();
  if (opt_.repeat_penalty != 1.0f && opt_.repeat_last_n != 0) {
    const size_t n = opt_.repeat_last_n < 0 ? history.size() : std::min<size_t>(history.size(), opt_.repeat_last_n);
    std::unordered_set<int32_t> seen(history.end() - n, history.end());
    for (int32_t id : seen) {
      if (id < 0 || id >= V) continue;
      float& l = work_[id];
      l = l > 0 ? l / opt_.repeat_penalty : l * opt_.repeat_penalty;
    }
  }
  if (opt_.temperature <= 0) return argmax(work_);

  // Candidates sorted by logit; top-k first keeps the sort partial for big vocabularies.
  ids_.resize(V);
  std::iota(ids_.begin(), ids_.end(), 0);
  int32_t k = opt_.top_k > 0 ? std::min(opt_.top_k, V) : V;
  auto by_logit = [&](int32_t a, int32_t b) { return work_[a] > work_[b]; };
  std::partial_sort(ids_.begin(), ids_.begin() + k, ids_.end(), by_logit);
  ids_.resize(k);

  // Softmax at the temperature over the candidates.
  std::vector<double> p(k);
  const double mx = work_[ids_[0]];
  double sum = 0;
  for (int32_t i = 0; i < k; ++i) {
    p[i] = std::exp((work_[ids_[i]] - mx) / opt_.temperature);
    sum += p[i];
  }
  for (double& v : p) v /= sum;

  // min-p: drop candidates below min_p × the top probability.
  int32_t keep = k;
  if (opt_.min_p > 0) {
    const double floor = opt_.min_p * p[0];
    keep = 1;
    while (keep < k && p[keep] >= floor) ++keep;
  }
  // top-p: smallest prefix whose mass reaches top_p.
  if (opt_.top_p < 1.0f) {
    double cum = 0;
    int32_t i = 0;
    for (; i < keep; ++i) {
      cum += p[i];
      if (cum >= opt_.top_p) {
        ++i;
        break;
      }
    }
    keep = std::max<int32_t>(1, std::min(keep, i));
  }
  double mass = 0;
  for (int32_t i = 0; i < keep; ++i) mass += p[i];
  std::uniform_real_distribution<double> uni(0.0, mass);
  double r = uni(rng_);
  for (int32_t i = 0; i < keep; ++i) {
    r -= p[i];
    if (r <= 0) return ids_[i];
  }
  return ids_[keep - 1];
}

}  // namespace edgevl
