#include "models/gemma4/clipped_linear.h"

#include <algorithm>

#include "tensor/ops.h"

namespace edgevl {

void ClippedLinear::load(WeightLoader& loader, const std::string& prefix, int64_t out, int64_t in, bool clipped,
                         int64_t layer) {
  w = loader.load((prefix + ".linear.weight").c_str(), nullptr, {out, in}, kRequired, layer);
  if (!clipped) return;
  in_min = loader.scalar(prefix + ".input_min", nullptr, layer);
  in_max = loader.scalar(prefix + ".input_max", nullptr, layer);
  out_min = loader.scalar(prefix + ".output_min", nullptr, layer);
  out_max = loader.scalar(prefix + ".output_max", nullptr, layer);
}

void ClippedLinear::apply(Context& ctx, const float* x, int64_t rows, float* y, Tensor& scratch) const {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const int64_t in = w.cols(), out = w.rows();
  if (in_min > -kInf || in_max < kInf) {
    scratch.resize({rows, in});
    float* xc = scratch.data();
    for (int64_t i = 0; i < rows * in; ++i) xc[i] = std::clamp(x[i], in_min, in_max);
    x = xc;
  }
  ops::linear(ctx, w, x, rows, y);
  if (out_min > -kInf || out_max < kInf)
    for (int64_t i = 0; i < rows * out; ++i) y[i] = std::clamp(y[i], out_min, out_max);
}

}  // namespace edgevl
