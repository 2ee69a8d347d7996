// Inference against training goldens: the KV-cached forward of a model on every unpadded row of a
// golden batch, compared with golden logits [B, T, V] (e.g. lora.logits with an adapter attached).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "models/model.h"
#include "test_util.h"
#include "train/model.h"

namespace edgevl::test {

// Worst relative error over the unpadded rows, and how many rows that was (0: none to compare).
struct RowsCompared {
  double worst = 0;
  int rows = 0;
};

inline RowsCompared compare_unpadded_rows(CausalLM& model, const train::Batch& b, const std::vector<float>& ref) {
  Context ctx(2);
  const int64_t V = model.info().vocab_size;
  RowsCompared r;
  for (int64_t i = 0; i < b.B; ++i) {
    if (std::count(b.attention_mask.begin() + i * b.T, b.attention_mask.begin() + (i + 1) * b.T, 1) != b.T) continue;
    const std::vector<int32_t> tokens(b.input_ids.begin() + i * b.T, b.input_ids.begin() + (i + 1) * b.T);
    nn::KvCache cache = model.new_cache(b.T);
    ForwardRequest req;
    req.tokens = tokens;
    req.all_logits = true;
    Tensor logits;
    model.forward(ctx, cache, req, logits);
    const std::vector<float> want(ref.begin() + i * b.T * V, ref.begin() + (i + 1) * b.T * V);
    r.worst = std::max(r.worst, rel_error(logits.vec(), want));
    ++r.rows;
  }
  return r;
}

}  // namespace edgevl::test
