// The KV-cached forward of a model over the rows of a golden batch: every activation collected in the
// goldens' layout (run_rows), or compared with golden logits [B, T, V] on the unpadded rows
// (compare_unpadded_rows, e.g. lora.logits with an adapter attached).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
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

// A vision-language batch's media go through the model's own towers (in the batch's order: row by
// row, each placeholder run taking the next image or clip) and fill the placeholders.
inline RowsCompared compare_unpadded_rows(CausalLM& model, const train::Batch& b, const std::vector<float>& ref) {
  Context ctx(2);
  const int64_t V = model.info().vocab_size, D = model.info().hidden;
  const MediaTokens ids = model.media_tokens();
  size_t next_image = 0, next_audio = 0;
  RowsCompared r;
  for (int64_t i = 0; i < b.B; ++i) {
    const std::vector<int32_t> tokens(b.input_ids.begin() + i * b.T, b.input_ids.begin() + (i + 1) * b.T);
    std::vector<int32_t> positions;
    std::vector<float> embeds;
    Tensor soft;
    int64_t used = 0;
    for (int64_t t = 0; t < b.T; ++t) {
      const bool image = tokens[t] == ids.image && ids.image >= 0, audio = tokens[t] == ids.audio && ids.audio >= 0;
      if (!image && !audio) continue;
      if (t == 0 || tokens[t - 1] != tokens[t]) {  // a run starts: its file's soft tokens
        if (image) {
          const train::BatchImage& im = b.images.at(next_image++);
          model.encode_image(ctx, im.pixels.data(), im.positions.data(), im.n_patches, soft);
        } else {
          const train::BatchAudio& a = b.audio.at(next_audio++);
          model.encode_audio(ctx, a.features.data(), a.mask.empty() ? nullptr : a.mask.data(), a.frames,
                             (int64_t)a.features.size() / a.frames, soft);
        }
        used = 0;
      }
      positions.push_back((int32_t)t);
      embeds.insert(embeds.end(), soft.row(used), soft.row(used) + D);
      ++used;
    }
    if (std::count(b.attention_mask.begin() + i * b.T, b.attention_mask.begin() + (i + 1) * b.T, 1) != b.T) continue;
    nn::KvCache cache = model.new_cache(b.T);
    ForwardRequest req;
    req.tokens = tokens;
    req.all_logits = true;
    req.embed_positions = positions;
    req.embeds = embeds.data();
    Tensor logits;
    model.forward(ctx, cache, req, logits);
    const std::vector<float> want(ref.begin() + i * b.T * V, ref.begin() + (i + 1) * b.T * V);
    r.worst = std::max(r.worst, rel_error(logits.vec(), want));
    ++r.rows;
  }
  return r;
}

// Runs each batch row from an empty cache and collects every tapped activation and the logits,
// laid out [B, T, cols] like the goldens.
inline std::map<std::string, std::vector<float>> run_rows(CausalLM& model, Context& ctx, const std::vector<int32_t>& ids,
                                                   int64_t B, int64_t T) {
  std::map<std::string, std::vector<float>> out;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int32_t> row(ids.begin() + b * T, ids.begin() + (b + 1) * T);
    auto store = [&](std::string_view name, const float* data, int64_t rows, int64_t cols) {
      auto& buf = out[std::string(name)];
      if (buf.empty()) buf.assign(B * T * cols, 0.0f);
      std::memcpy(&buf[b * T * cols], data, rows * cols * sizeof(float));
    };
    nn::KvCache cache = model.new_cache(T);
    ForwardRequest req;
    req.tokens = row;
    req.all_logits = true;
    req.tap = store;
    Tensor logits;
    model.forward(ctx, cache, req, logits);
    store("logits", logits.data(), logits.dim(0), logits.dim(1));
  }
  return out;
}

}  // namespace edgevl::test
