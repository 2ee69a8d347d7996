// Keys and values of one sequence, per layer: [S, Hkv*Dh] float32 rows, position p at row p.
// Layers may differ in width (Gemma 4's global layers have wider heads); a layer of width 0
// stores nothing (it reads another layer's keys and values). Grows on demand up to `max_positions`.
#pragma once
#include <cstdint>
#include <vector>

namespace edgevl::nn {

class KvCache {
 public:
  KvCache() = default;
  KvCache(int64_t n_layers, int64_t kv_width, int64_t max_positions)
      : KvCache(std::vector<int64_t>(n_layers, kv_width), max_positions) {}
  KvCache(std::vector<int64_t> kv_widths, int64_t max_positions);

  int64_t size() const { return size_; }              // positions filled
  int64_t max_positions() const { return max_positions_; }
  int64_t kv_width(int64_t layer) const { return widths_[layer]; }
  // Makes room for positions [size, size + n) and returns nothing; throws past max_positions.
  void reserve_more(int64_t n);
  float* k(int64_t layer, int64_t pos) { return k_[layer].data() + pos * widths_[layer]; }
  float* v(int64_t layer, int64_t pos) { return v_[layer].data() + pos * widths_[layer]; }
  const float* k(int64_t layer) const { return k_[layer].data(); }
  const float* v(int64_t layer) const { return v_[layer].data(); }
  void commit(int64_t n) { size_ += n; }   // after a forward wrote n new positions
  void truncate(int64_t n) { size_ = n; }  // drop positions >= n (e.g. to reuse a prompt prefix)
  void clear() { size_ = 0; }

 private:
  std::vector<int64_t> widths_;
  int64_t max_positions_ = 0, size_ = 0, capacity_ = 0;
  std::vector<std::vector<float>> k_, v_;
};

}  // namespace edgevl::nn
