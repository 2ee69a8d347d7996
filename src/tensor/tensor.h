// Dimension letters used across edgevl (shapes read the same everywhere):
//   B batch, T tokens (of this step), S positions in the KV cache, D model width, H query heads,
//   Hkv key/value heads, Dh head width, F feed-forward width, V vocabulary.
//
// Tensor: a dense, row-major float32 activation buffer with a shape. Weights are not Tensors;
// they are WeightRefs (any dtype, used in place from the mapped file).
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/dtype.h"
#include "kernels/kernels.h"

namespace edgevl {

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::vector<int64_t> shape) : shape_(std::move(shape)), data_(count(shape_), 0.0f) {}

  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_[i < 0 ? shape_.size() + i : i]; }
  int64_t numel() const { return (int64_t)data_.size(); }
  float* data() { return data_.data(); }
  const float* data() const { return data_.data(); }
  float* row(int64_t i) { return data_.data() + i * shape_.back(); }
  const float* row(int64_t i) const { return data_.data() + i * shape_.back(); }
  std::vector<float>& vec() { return data_; }
  const std::vector<float>& vec() const { return data_; }
  void fill(float v) { std::fill(data_.begin(), data_.end(), v); }
  // Keeps the allocation when shrinking or staying within capacity (reused across steps).
  void resize(std::vector<int64_t> shape) {
    shape_ = std::move(shape);
    data_.resize(count(shape_));
  }

  static int64_t count(const std::vector<int64_t>& s) {
    int64_t n = 1;
    for (int64_t d : s) n *= d;
    return n;
  }

 private:
  std::vector<int64_t> shape_;
  std::vector<float> data_;
};

// A weight matrix or vector of any dtype, rows of `cols` elements, used in place.
// shape is row-major: {rows, cols} for matrices, {cols} for vectors.
// `packed` optionally holds the same matrix repacked at load for the kernel table's matmul
// (repack_for_matmul, owned by the loader); `data` still points at the GGUF rows (row gathers,
// other kernel tables), whose pages are then only read on demand.
// A low-rank update applied with a weight wherever it multiplies (a LoRA adapter at inference):
// y += scaling · (x·Aᵀ)·Bᵀ with A [r, cols] and B [rows, r] in float32, owned by whoever attached it.
struct LowRankDelta {
  int64_t r = 0;
  float scaling = 1.0f;
  const float* A = nullptr;
  const float* B = nullptr;
};

struct WeightRef {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t row_bytes = 0;
  const void* packed = nullptr;
  WeightLayout layout = WeightLayout::Gguf;
  const LowRankDelta* delta = nullptr;  // ops::linear adds it; null: none

  bool empty() const { return data == nullptr; }
  int64_t rows() const { return shape.size() == 1 ? 1 : shape[0]; }
  int64_t cols() const { return shape.back(); }
  const float* f32() const;  // only for F32 weights (norm scales, biases); asserts the dtype
  // Rows [first, first + n) with the leading dimensions flattened: one expert's slice of a stacked
  // [E, R, C] tensor, in the file's row layout (no repacked copy).
  WeightRef rows_slice(int64_t first, int64_t n) const {
    WeightRef r = *this;
    r.shape = {n, cols()};
    r.data = static_cast<const uint8_t*>(data) + first * row_bytes;
    r.packed = nullptr;
    r.layout = WeightLayout::Gguf;
    return r;
  }
};

}  // namespace edgevl
