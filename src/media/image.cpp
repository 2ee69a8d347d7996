#include "media/image.h"

#include <cstring>
#include <limits>
#include <memory>

#include "core/error.h"
#include "core/mmap.h"
#include "media/image_codecs.h"

namespace edgevl::media {

ImageFormat sniff_image_format(const uint8_t* d, size_t n) {
  auto starts = [&](const char* magic, size_t off = 0) {
    size_t m = std::strlen(magic);
    return n >= off + m && std::memcmp(d + off, magic, m) == 0;
  };
  if (starts("\x89PNG\r\n\x1a\n")) return ImageFormat::Png;
  if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return ImageFormat::Jpeg;
  if (starts("RIFF") && starts("WEBP", 8)) return ImageFormat::WebP;
  if (starts("BM")) return ImageFormat::Bmp;
  if (starts("GIF87a") || starts("GIF89a")) return ImageFormat::Gif;
  return ImageFormat::Unknown;
}

const char* image_format_name(ImageFormat f) {
  switch (f) {
    case ImageFormat::Png: return "PNG";
    case ImageFormat::Jpeg: return "JPEG";
    case ImageFormat::WebP: return "WebP";
    case ImageFormat::Bmp: return "BMP";
    case ImageFormat::Gif: return "GIF";
    case ImageFormat::Unknown: break;
  }
  return "unknown";
}

namespace detail {

void check_dimensions(int64_t w, int64_t h, const std::string& name, const DecodeLimits& lim) {
  EV_CHECK(w > 0 && h > 0, "image: ", name, ": empty image (", w, "x", h, ")");
  EV_CHECK(w <= lim.max_side && h <= lim.max_side, "image: ", name, ": ", w, "x", h,
           " exceeds the largest allowed side of ", lim.max_side, " pixels");
  EV_CHECK(w * h <= lim.max_pixels, "image: ", name, ": ", w, "x", h, " exceeds the limit of ",
           lim.max_pixels, " pixels");
}

}  // namespace detail

Image decode_image(const uint8_t* data, size_t size, const std::string& name, const DecodeLimits& limits) {
  EV_CHECK(data != nullptr || size == 0, "image: ", name, ": null data");
  EV_CHECK(size > 0, "image: ", name, ": empty file");
  // libjpeg/libpng/libwebp take sizes in narrower types on some paths; no real image is this big.
  EV_CHECK(size <= static_cast<size_t>(std::numeric_limits<int32_t>::max()), "image: ", name,
           ": file too large (", size, " bytes)");
  switch (sniff_image_format(data, size)) {
    case ImageFormat::Png: return detail::decode_png(data, size, name, limits);
    case ImageFormat::Jpeg: return detail::decode_jpeg(data, size, name, limits);
    case ImageFormat::WebP: return detail::decode_webp(data, size, name, limits);
    case ImageFormat::Bmp:
    case ImageFormat::Gif: return detail::decode_stb(data, size, name, limits);
    case ImageFormat::Unknown: break;
  }
  fail("image: ", name, ": unknown format (not PNG, JPEG, WebP, BMP or GIF)");
}

Image load_image(const std::string& path, const DecodeLimits& limits) {
  std::unique_ptr<MappedFile> file;
  try {
    file = std::make_unique<MappedFile>(path);
  } catch (const Error& e) {
    fail("image: ", e.what());  // "image: <path>: cannot open: No such file or directory"
  }
  return decode_image(file->data(), file->size(), path, limits);
}

}  // namespace edgevl::media
