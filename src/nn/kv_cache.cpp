#include "nn/kv_cache.h"

#include <algorithm>
#include <utility>

#include "core/error.h"

namespace edgevl::nn {

KvCache::KvCache(std::vector<int64_t> kv_widths, int64_t max_positions)
    : widths_(std::move(kv_widths)), max_positions_(max_positions), k_(widths_.size()), v_(widths_.size()) {}

void KvCache::reserve_more(int64_t n) {
  const int64_t need = size_ + n;
  EV_CHECK(need <= max_positions_, "context overflow: ", need, " positions requested, the context holds ",
           max_positions_, " (raise --ctx)");
  if (need <= capacity_) return;
  capacity_ = std::min(max_positions_, std::max(need, capacity_ * 2));
  for (size_t l = 0; l < widths_.size(); ++l) {
    k_[l].resize(capacity_ * widths_[l]);
    v_[l].resize(capacity_ * widths_[l]);
  }
}

}  // namespace edgevl::nn
