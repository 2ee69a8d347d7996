// Gemma 4 image preprocessing, numerically identical to transformers' Gemma4ImageProcessor
// (torchvision backend, the v5 default; models/gemma4/image_processing_gemma4.py) on CPU:
//   1. aspect-preserving resize so that at most max_soft_tokens * k^2 patches remain, both sides
//      multiples of patch_size * k (k = pooling_kernel_size): bicubic, antialiased, on the
//      8-bit image (media/resize.h);
//   2. rescale (x * rescale_factor in float32; no mean/std by default: the model maps to [-1, 1]);
//   3. patchify row-major into [num_patches, patch*patch*3], each patch laid out (py, px, channel);
//   4. position ids (x = patch column, y = patch row), then padding to max_patches with zero
//      pixels and position (-1, -1).
// num_soft_tokens = num_patches / k^2 is what the prompt expands <|image|> into.
// See specs/gemma4.md section 3.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "media/image.h"
#include "media/resize.h"

namespace edgevl::media {

// preprocessor_config.json fields; the defaults are the class defaults (= the released checkpoints').
struct Gemma4ImageConfig {
  int patch_size = 16;
  int pooling_kernel_size = 3;
  int max_soft_tokens = 280;  // one of 70, 140, 280, 560, 1120 (HF refuses anything else)
  bool do_resize = true;
  bool do_rescale = true;
  double rescale_factor = 1.0 / 255.0;
  bool do_normalize = false;
  std::array<double, 3> image_mean{0.0, 0.0, 0.0};
  std::array<double, 3> image_std{1.0, 1.0, 1.0};
  ResizeFilter resample = ResizeFilter::Bicubic;  // PIL code 3 (1 = LANCZOS also maps here, as in HF)

  int max_patches() const { return max_soft_tokens * pooling_kernel_size * pooling_kernel_size; }
  int patch_dim() const { return patch_size * patch_size * 3; }

  // Accepts a preprocessor_config.json object, or a processor_config.json holding one under
  // "image_processor". Unknown keys are ignored; wrong types or values raise Error naming `name`.
  static Gemma4ImageConfig from_json(const nlohmann::json& j, const std::string& name = "<json>");
  static Gemma4ImageConfig load(const std::string& path);
};

struct Gemma4ImageFeatures {
  int max_patches = 0;  // rows of pixel_values / position_ids
  int patch_dim = 0;    // patch_size^2 * 3
  std::vector<float> pixel_values;    // [max_patches, patch_dim]; rows >= num_patches are zero
  std::vector<int64_t> position_ids;  // [max_patches, 2] as (x, y); (-1, -1) for padding rows
  int num_patches = 0;
  int num_soft_tokens = 0;
  int resized_height = 0, resized_width = 0;
};

// Target (height, width) of the resize; HF's get_aspect_ratio_preserving_size, errors included.
std::pair<int, int> gemma4_target_size(int height, int width, const Gemma4ImageConfig& cfg);
// Soft tokens an image of this size becomes, without touching pixels (prompt expansion).
int gemma4_num_soft_tokens(int height, int width, const Gemma4ImageConfig& cfg);

Gemma4ImageFeatures gemma4_preprocess(const Image& img, const Gemma4ImageConfig& cfg);

}  // namespace edgevl::media
