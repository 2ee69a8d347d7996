#include "media/gemma4_image.h"

#include <cmath>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mmap.h"

namespace edgevl::media {
namespace {

using Json = nlohmann::json;

bool supported_soft_tokens(int n) { return n == 70 || n == 140 || n == 280 || n == 560 || n == 1120; }

// Reads `key` when present (null means "keep the default", as HF treats it).
template <typename T>
void read_field(const Json& j, const char* key, T& out, const std::string& name) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return;
  try {
    out = it->get<T>();
  } catch (const Json::exception&) {
    fail("gemma4 image config: ", name, ": '", key, "' has the wrong type (", it->type_name(), ")");
  }
}

void read_triple(const Json& j, const char* key, std::array<double, 3>& out, const std::string& name) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return;
  if (it->is_number()) {  // HF accepts one value for all channels
    out.fill(it->get<double>());
    return;
  }
  EV_CHECK(it->is_array() && it->size() == 3, "gemma4 image config: ", name, ": '", key,
           "' must be a number or 3 numbers");
  for (int c = 0; c < 3; ++c) {
    EV_CHECK((*it)[c].is_number(), "gemma4 image config: ", name, ": '", key, "' must hold numbers");
    out[c] = (*it)[c].get<double>();
  }
}

}  // namespace

Gemma4ImageConfig Gemma4ImageConfig::from_json(const Json& root, const std::string& name) {
  EV_CHECK(root.is_object(), "gemma4 image config: ", name, ": not a JSON object");
  const Json& j = root.contains("image_processor") && root["image_processor"].is_object() ? root["image_processor"] : root;
  Gemma4ImageConfig c;
  read_field(j, "patch_size", c.patch_size, name);
  read_field(j, "pooling_kernel_size", c.pooling_kernel_size, name);
  read_field(j, "max_soft_tokens", c.max_soft_tokens, name);
  read_field(j, "do_resize", c.do_resize, name);
  read_field(j, "do_rescale", c.do_rescale, name);
  read_field(j, "rescale_factor", c.rescale_factor, name);
  read_field(j, "do_normalize", c.do_normalize, name);
  read_triple(j, "image_mean", c.image_mean, name);
  read_triple(j, "image_std", c.image_std, name);
  int resample = 3;
  read_field(j, "resample", resample, name);
  // transformers' torchvision backend: LANCZOS (1) falls back to BICUBIC; NEAREST/BOX/HAMMING
  // would need other kernels that no Gemma 4 checkpoint uses.
  EV_CHECK(resample == 1 || resample == 2 || resample == 3, "gemma4 image config: ", name, ": resample ", resample,
           " not supported (2 = bilinear, 3 = bicubic)");
  c.resample = resample == 2 ? ResizeFilter::Bilinear : ResizeFilter::Bicubic;

  EV_CHECK(c.patch_size > 0 && c.patch_size <= 1024, "gemma4 image config: ", name, ": bad patch_size ",
           c.patch_size);
  EV_CHECK(c.pooling_kernel_size > 0 && c.pooling_kernel_size <= 64, "gemma4 image config: ", name,
           ": bad pooling_kernel_size ", c.pooling_kernel_size);
  EV_CHECK(supported_soft_tokens(c.max_soft_tokens), "gemma4 image config: ", name, ": max_soft_tokens ",
           c.max_soft_tokens, " is not one of 70, 140, 280, 560, 1120");
  EV_CHECK(std::isfinite(c.rescale_factor) && c.rescale_factor != 0, "gemma4 image config: ", name,
           ": bad rescale_factor");
  for (double s : c.image_std) EV_CHECK(s != 0, "gemma4 image config: ", name, ": image_std has a zero");
  return c;
}

Gemma4ImageConfig Gemma4ImageConfig::load(const std::string& path) {
  Json j;
  try {
    j = Json::parse(read_text_file(path));
  } catch (const Json::exception& e) {
    fail("gemma4 image config: ", path, ": invalid JSON: ", e.what());
  }
  return from_json(j, path);
}

std::pair<int, int> gemma4_target_size(int height, int width, const Gemma4ImageConfig& cfg) {
  EV_CHECK(height > 0 && width > 0, "gemma4 image: empty image (", height, "x", width, ")");
  // Python floats are doubles: the same arithmetic, in the same order, gives the same floors.
  const int64_t total_px = int64_t{height} * width;
  const int64_t target_px = int64_t{cfg.max_patches()} * cfg.patch_size * cfg.patch_size;
  const double factor = std::sqrt(static_cast<double>(target_px) / static_cast<double>(total_px));
  const double ideal_h = factor * height, ideal_w = factor * width;
  const int64_t side = int64_t{cfg.pooling_kernel_size} * cfg.patch_size;
  int64_t th = static_cast<int64_t>(std::floor(ideal_h / side)) * side;
  int64_t tw = static_cast<int64_t>(std::floor(ideal_w / side)) * side;
  EV_CHECK(th > 0 || tw > 0, "gemma4 image: cannot resize ", height, "x", width, " to a multiple of ", side);
  const int64_t max_side = int64_t{cfg.max_patches() / (cfg.pooling_kernel_size * cfg.pooling_kernel_size)} * side;
  if (th == 0) {  // very wide: one row of pooled patches
    th = side;
    tw = std::min(static_cast<int64_t>(std::floor(static_cast<double>(width) / height)) * side, max_side);
  } else if (tw == 0) {  // very tall
    tw = side;
    th = std::min(static_cast<int64_t>(std::floor(static_cast<double>(height) / width)) * side, max_side);
  }
  EV_CHECK(th * tw <= target_px, "gemma4 image: resizing ", height, "x", width, " to ", th, "x", tw, " exceeds ",
           cfg.max_patches(), " patches");
  return {static_cast<int>(th), static_cast<int>(tw)};
}

int gemma4_num_soft_tokens(int height, int width, const Gemma4ImageConfig& cfg) {
  if (cfg.do_resize) std::tie(height, width) = gemma4_target_size(height, width, cfg);
  const int64_t patches = int64_t{height / cfg.patch_size} * (width / cfg.patch_size);
  return static_cast<int>(patches / (cfg.pooling_kernel_size * cfg.pooling_kernel_size));
}

Gemma4ImageFeatures gemma4_preprocess(const Image& input, const Gemma4ImageConfig& cfg) {
  EV_CHECK(input.height > 0 && input.width > 0 && input.rgb.size() == size_t(input.height) * input.width * 3,
           "gemma4 image: bad input image (", input.height, "x", input.width, ")");
  Image resized;
  const Image* img = &input;
  if (cfg.do_resize) {
    auto [th, tw] = gemma4_target_size(input.height, input.width, cfg);
    if (th != input.height || tw != input.width) {  // HF returns the image untouched otherwise
      resized = resize_antialias(input, th, tw, cfg.resample);
      img = &resized;
    }
  }
  const int P = cfg.patch_size;
  EV_CHECK(img->height % P == 0 && img->width % P == 0, "gemma4 image: ", img->height, "x", img->width,
           " is not a multiple of patch_size ", P, " (do_resize is off)");
  const int rows = img->height / P, cols = img->width / P;
  const int64_t num_patches = int64_t{rows} * cols;
  EV_CHECK(num_patches <= cfg.max_patches(), "gemma4 image: ", num_patches, " patches exceed max_patches ",
           cfg.max_patches());

  // Per-channel affine map in float32, the way torch evaluates it: rescale alone is x * f;
  // normalize (fused with rescale in HF) is (x - m) / s with m, s rounded to float first.
  std::array<float, 3> mul{1, 1, 1}, sub{0, 0, 0}, div{1, 1, 1};
  const bool normalize = cfg.do_normalize;
  for (int c = 0; c < 3; ++c) {
    if (normalize) {
      const float inv = cfg.do_rescale ? static_cast<float>(1.0 / cfg.rescale_factor) : 1.0f;
      sub[c] = cfg.do_rescale ? static_cast<float>(cfg.image_mean[c]) * inv : static_cast<float>(cfg.image_mean[c]);
      div[c] = cfg.do_rescale ? static_cast<float>(cfg.image_std[c]) * inv : static_cast<float>(cfg.image_std[c]);
    } else if (cfg.do_rescale) {
      mul[c] = static_cast<float>(cfg.rescale_factor);
    }
  }

  Gemma4ImageFeatures f;
  f.max_patches = cfg.max_patches();
  f.patch_dim = cfg.patch_dim();
  f.num_patches = static_cast<int>(num_patches);
  f.num_soft_tokens = static_cast<int>(num_patches / (cfg.pooling_kernel_size * cfg.pooling_kernel_size));
  f.resized_height = img->height;
  f.resized_width = img->width;
  f.pixel_values.assign(static_cast<size_t>(f.max_patches) * f.patch_dim, 0.0f);
  f.position_ids.assign(static_cast<size_t>(f.max_patches) * 2, -1);
  for (int py = 0; py < rows; ++py) {
    for (int px = 0; px < cols; ++px) {
      const size_t patch = static_cast<size_t>(py) * cols + px;
      float* out = f.pixel_values.data() + patch * f.patch_dim;
      for (int dy = 0; dy < P; ++dy) {
        const uint8_t* in = img->pixel(py * P + dy, px * P);
        for (int i = 0; i < P * 3; ++i) {
          const int c = i % 3;
          const float x = static_cast<float>(in[i]);
          *out++ = normalize ? (x - sub[c]) / div[c] : x * mul[c];
        }
      }
      f.position_ids[patch * 2 + 0] = px;
      f.position_ids[patch * 2 + 1] = py;
    }
  }
  return f;
}

}  // namespace edgevl::media
