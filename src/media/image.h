// Image decoding: PNG, JPEG, WebP, BMP and GIF files (or bytes) into 8-bit RGB, HxWx3, row-major.
//
// The pixels are the ones Hugging Face processors see: PIL's Image.open(...) followed by
// transformers' convert_to_rgb, which is a plain PIL convert("RGB"). That means:
// - alpha is dropped, not composited onto white (convert("RGB") ignores it);
// - gray and palette images are expanded (palette entries, tRNS ignored);
// - 16-bit PNG channels keep their high byte, except 16-bit gray without alpha, which PIL opens
//   as mode "I;16" and clips to 255 when converting;
// - JPEG goes through libjpeg-turbo with its default (islow DCT, fancy upsampling), as PIL does;
//   CMYK/YCCK JPEGs are converted with PIL's cmyk->rgb formula (Adobe files stored inverted);
// - animated WebP/GIF: the first frame; EXIF orientation is NOT applied (neither does PIL's
//   convert; transformers' load_image would apply it).
// Files are untrusted: sizes are checked against DecodeLimits before any pixel buffer is
// allocated, corrupt or truncated data raises edgevl::Error naming the file, never a crash.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace edgevl::media {

struct Image {
  int height = 0;
  int width = 0;
  std::vector<uint8_t> rgb;  // height * width * 3, row-major, channel fastest

  const uint8_t* pixel(int y, int x) const { return rgb.data() + (static_cast<size_t>(y) * width + x) * 3; }
};

struct DecodeLimits {
  int64_t max_pixels = int64_t{1} << 26;  // 67M pixels (8192 x 8192): ~200 MB of RGB
  int max_side = 32768;
};

enum class ImageFormat { Unknown, Png, Jpeg, WebP, Bmp, Gif };

// Sniffs the format from the first bytes (magic numbers), never from the file name.
ImageFormat sniff_image_format(const uint8_t* data, size_t size);
const char* image_format_name(ImageFormat f);

// `name` stands in for the path in error messages ("image: <name>: ...").
Image decode_image(const uint8_t* data, size_t size, const std::string& name = "<memory>",
                   const DecodeLimits& limits = {});
Image load_image(const std::string& path, const DecodeLimits& limits = {});

}  // namespace edgevl::media
