// Gemma4ClippableLinear: a bias-free linear whose input and output are clamped to stored bounds
// (`<name>.input_min/.input_max/.output_min/.output_max`). The on-device vision and audio towers
// were trained with these clamps and they stay active at inference; without the bounds
// (use_clipped_linears false) it is a plain linear.
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "models/weights.h"
#include "tensor/context.h"
#include "tensor/tensor.h"

namespace edgevl {

struct ClippedLinear {
  WeightRef w;
  float in_min = -std::numeric_limits<float>::infinity(), in_max = std::numeric_limits<float>::infinity();
  float out_min = -std::numeric_limits<float>::infinity(), out_max = std::numeric_limits<float>::infinity();

  // `prefix` names the module ("model.vision_tower.encoder.layers.{L}.self_attn.q_proj"); the
  // matrix is `<prefix>.linear.weight`, [out, in], under which the loader also lists it (the
  // slot must then stay put: adapters attach to it by that name).
  void load(WeightLoader& loader, const std::string& prefix, int64_t out, int64_t in, bool clipped, int64_t layer);
  // Both spellings: HF `<hf_prefix>.linear.weight` / `<hf_prefix>.input_min` ..., llama.cpp's
  // mmproj `<gguf_prefix>.weight` / `<gguf_prefix>.input_min` ... (the loader picks by source).
  void load(WeightLoader& loader, const std::string& hf_prefix, const std::string& gguf_prefix, int64_t out,
            int64_t in, bool clipped, int64_t layer);
  // y [rows, out] = clamp(clamp(x, in) · wᵀ, out); `scratch` holds the clamped input.
  void apply(Context& ctx, const float* x, int64_t rows, float* y, Tensor& scratch) const;
};

}  // namespace edgevl
