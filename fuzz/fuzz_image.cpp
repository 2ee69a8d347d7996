// libFuzzer target for image decoding and the Gemma 4 image processor: any bytes must either
// decode into an image within the limits (then preprocess cleanly) or raise edgevl::Error.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "core/error.h"
#include "media/gemma4_image.h"
#include "media/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  edgevl::media::DecodeLimits limits;
  limits.max_pixels = 1 << 20;  // keeps each run fast; the bounds logic is the same at any limit
  limits.max_side = 4096;
  try {
    const edgevl::media::Image img = edgevl::media::decode_image(data, size, "fuzz", limits);
    if (img.height <= 0 || img.width <= 0 || img.rgb.size() != size_t(img.height) * img.width * 3) std::abort();
    edgevl::media::Gemma4ImageConfig cfg;
    cfg.max_soft_tokens = 70;
    const auto f = edgevl::media::gemma4_preprocess(img, cfg);
    if (f.pixel_values.size() != size_t(f.max_patches) * f.patch_dim) std::abort();
  } catch (const edgevl::Error&) {
  }
  return 0;
}
