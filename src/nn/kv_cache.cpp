#include "nn/kv_cache.h"

#include <algorithm>

#include "core/error.h"

namespace edgevl::nn {

KvCache::KvCache(int64_t n_layers, int64_t kv_width, int64_t max_positions)
    : kv_width_(kv_width), max_positions_(max_positions), k_(n_layers), v_(n_layers) {}

void KvCache::reserve_more(int64_t n) {
  const int64_t need = size_ + n;
  EV_CHECK(need <= max_positions_, "context overflow: ", need, " positions requested, the context holds ",
           max_positions_, " (raise --ctx)");
  if (need <= capacity_) return;
  capacity_ = std::min(max_positions_, std::max(need, capacity_ * 2));
  for (auto& k : k_) k.resize(capacity_ * kv_width_);
  for (auto& v : v_) v.resize(capacity_ * kv_width_);
}

}  // namespace edgevl::nn
