// WebP through libwebp's animation decoder, which is what PIL 11 uses for every WebP file (still
// or animated): the first frame, RGBA, not premultiplied; PIL's convert("RGB") then drops alpha.
// libwebp reports errors by return value, so nothing here needs setjmp.
#include <webp/decode.h>
#include <webp/demux.h>

#include <memory>

#include "core/error.h"
#include "media/image_codecs.h"

namespace edgevl::media::detail {
namespace {

struct AnimDecoderDeleter {
  void operator()(WebPAnimDecoder* d) const { WebPAnimDecoderDelete(d); }
};

const char* status_text(VP8StatusCode s) {
  switch (s) {
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "corrupt bitstream";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "truncated file";
    default: return "decoding failed";
  }
}

}  // namespace

Image decode_webp(const uint8_t* data, size_t size, const std::string& name, const DecodeLimits& limits) {
  // Canvas size first (from VP8X for extended files), so nothing big is allocated for a lie.
  WebPBitstreamFeatures features;
  const VP8StatusCode st = WebPGetFeatures(data, size, &features);
  EV_CHECK(st == VP8_STATUS_OK, "image: ", name, ": WebP: ", status_text(st));
  check_dimensions(features.width, features.height, name, limits);

  WebPAnimDecoderOptions opts;
  EV_CHECK(WebPAnimDecoderOptionsInit(&opts), "image: ", name, ": WebP: library version mismatch");
  opts.color_mode = MODE_RGBA;
  opts.use_threads = 0;
  const WebPData webp{data, size};
  std::unique_ptr<WebPAnimDecoder, AnimDecoderDeleter> dec(WebPAnimDecoderNew(&webp, &opts));
  EV_CHECK(dec, "image: ", name, ": WebP: corrupt or truncated file");
  WebPAnimInfo info;
  EV_CHECK(WebPAnimDecoderGetInfo(dec.get(), &info), "image: ", name, ": WebP: cannot read the header");
  check_dimensions(info.canvas_width, info.canvas_height, name, limits);
  uint8_t* rgba = nullptr;
  int timestamp = 0;
  EV_CHECK(info.frame_count > 0 && WebPAnimDecoderGetNext(dec.get(), &rgba, &timestamp) && rgba, "image: ", name,
           ": WebP: corrupt or truncated image data");

  Image img;
  img.width = static_cast<int>(info.canvas_width);
  img.height = static_cast<int>(info.canvas_height);
  const size_t n = static_cast<size_t>(img.width) * img.height;
  img.rgb.resize(n * 3);
  for (size_t i = 0; i < n; ++i) {
    img.rgb[i * 3 + 0] = rgba[i * 4 + 0];
    img.rgb[i * 3 + 1] = rgba[i * 4 + 1];
    img.rgb[i * 3 + 2] = rgba[i * 4 + 2];
  }
  return img;
}

}  // namespace edgevl::media::detail
