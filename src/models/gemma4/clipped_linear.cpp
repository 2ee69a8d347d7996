#include "models/gemma4/clipped_linear.h"

#include <algorithm>

#include "tensor/ops.h"

namespace edgevl {

namespace {
// std::clamp, as compares the compiler turns into vector min/max.
void clamp_rows(const float* x, float* y, int64_t n, float lo, float hi) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i] < lo ? lo : x[i];
    y[i] = hi < v ? hi : v;
  }
}
}  // namespace

void ClippedLinear::load(WeightLoader& loader, const std::string& prefix, int64_t out, int64_t in, bool clipped,
                         int64_t layer) {
  w = loader.load((prefix + ".linear.weight").c_str(), nullptr, {out, in}, kRequired, layer);
  loader.remember((prefix + ".linear.weight").c_str(), layer, &w);  // adapters find it by this name
  if (!clipped) return;
  in_min = loader.scalar(prefix + ".input_min", nullptr, layer);
  in_max = loader.scalar(prefix + ".input_max", nullptr, layer);
  out_min = loader.scalar(prefix + ".output_min", nullptr, layer);
  out_max = loader.scalar(prefix + ".output_max", nullptr, layer);
}

void ClippedLinear::load(WeightLoader& loader, const std::string& hf_prefix, const std::string& gguf_prefix,
                         int64_t out, int64_t in, bool clipped, int64_t layer) {
  w = loader.load((hf_prefix + ".linear.weight").c_str(), (gguf_prefix + ".weight").c_str(), {out, in}, kRequired,
                  layer);
  loader.remember((hf_prefix + ".linear.weight").c_str(), layer, &w);
  if (!clipped) return;
  in_min = loader.scalar(hf_prefix + ".input_min", (gguf_prefix + ".input_min").c_str(), layer);
  in_max = loader.scalar(hf_prefix + ".input_max", (gguf_prefix + ".input_max").c_str(), layer);
  out_min = loader.scalar(hf_prefix + ".output_min", (gguf_prefix + ".output_min").c_str(), layer);
  out_max = loader.scalar(hf_prefix + ".output_max", (gguf_prefix + ".output_max").c_str(), layer);
}

void ClippedLinear::apply(Context& ctx, const float* x, int64_t rows, float* y, Tensor& scratch) const {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const int64_t in = w.cols(), out = w.rows();
  if (in_min > -kInf || in_max < kInf) {
    scratch.resize({rows, in});
    float* xc = scratch.data();
    clamp_rows(x, xc, rows * in, in_min, in_max);
    x = xc;
  }
  ops::linear(ctx, w, x, rows, y);
  if (out_min > -kInf || out_max < kInf)
    clamp_rows(y, y, rows * out, out_min, out_max);
}

}  // namespace edgevl
