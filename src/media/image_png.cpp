// PNG through libpng, converted the way PIL's PngImagePlugin + convert("RGB") does (image.h).
//
// libpng reports errors by longjmp. The function that calls setjmp (run_libpng) holds only plain
// data and pointers; every C++ object it touches is owned by its caller, so a longjmp never skips
// a destructor. It returns a status and the caller throws edgevl::Error after libpng is cleaned up.
#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "media/image_codecs.h"

namespace edgevl::media::detail {
namespace {

struct PngSource {  // plain data: the read callback's cursor and the error text
  const uint8_t* data;
  size_t size;
  size_t pos;
  char msg[200];
};

struct PngLayout {  // what libpng will hand us after the transforms
  int64_t width = 0, height = 0;
  int channels = 0;     // 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
  bool gray16 = false;  // 16-bit gray kept at 16 bits (big-endian) for PIL's "I;16" clip
  size_t rowbytes = 0;
};

enum class Status { Ok, Failed, TooBig };

void read_cb(png_structp png, png_bytep out, png_size_t n) {
  auto* src = static_cast<PngSource*>(png_get_io_ptr(png));
  if (n > src->size - src->pos) png_error(png, "truncated file");
  std::memcpy(out, src->data + src->pos, n);
  src->pos += n;
}

[[noreturn]] void error_cb(png_structp png, png_const_charp msg) {
  auto* src = static_cast<PngSource*>(png_get_error_ptr(png));
  std::snprintf(src->msg, sizeof src->msg, "%s", msg ? msg : "libpng error");
  png_longjmp(png, 1);
}

void warning_cb(png_structp, png_const_charp) {}  // ancillary-chunk problems: PIL ignores them too

Status run_libpng(PngSource& src, const DecodeLimits& limits, PngLayout& lay, std::vector<uint8_t>& pixels,
                  std::vector<png_bytep>& rows) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, error_cb, warning_cb);
  if (!png) {
    std::snprintf(src.msg, sizeof src.msg, "out of memory");
    return Status::Failed;
  }
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    std::snprintf(src.msg, sizeof src.msg, "out of memory");
    return Status::Failed;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return Status::Failed;
  }
  png_set_read_fn(png, &src, read_cb);
  png_read_info(png, info);

  lay.width = png_get_image_width(png, info);
  lay.height = png_get_image_height(png, info);
  if (lay.width <= 0 || lay.height <= 0 || lay.width > limits.max_side || lay.height > limits.max_side ||
      lay.width * lay.height > limits.max_pixels) {
    png_destroy_read_struct(&png, &info, nullptr);
    return Status::TooBig;
  }
  const int bit_depth = png_get_bit_depth(png, info);
  const int color_type = png_get_color_type(png, info);
  // No tRNS -> alpha, no gamma, no background: PIL's convert("RGB") uses neither.
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  lay.gray16 = bit_depth == 16 && color_type == PNG_COLOR_TYPE_GRAY;
  if (bit_depth == 16 && !lay.gray16) png_set_strip_16(png);  // keeps the high byte, like "RGB;16B"
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  lay.channels = png_get_channels(png, info);
  lay.rowbytes = png_get_rowbytes(png, info);
  const size_t want = static_cast<size_t>(lay.width) * lay.channels * (lay.gray16 ? 2 : 1);
  if (lay.channels < 1 || lay.channels > 4 || lay.rowbytes != want) {
    png_destroy_read_struct(&png, &info, nullptr);
    std::snprintf(src.msg, sizeof src.msg, "unsupported pixel layout (%d channels)", lay.channels);
    return Status::Failed;
  }
  try {
    pixels.resize(lay.rowbytes * static_cast<size_t>(lay.height));
    rows.resize(static_cast<size_t>(lay.height));
  } catch (const std::bad_alloc&) {
    png_destroy_read_struct(&png, &info, nullptr);
    std::snprintf(src.msg, sizeof src.msg, "out of memory");
    return Status::Failed;
  }
  for (size_t y = 0; y < rows.size(); ++y) rows[y] = pixels.data() + y * lay.rowbytes;
  png_read_image(png, rows.data());
  // No png_read_end: PIL stops after the image data too, so a missing IEND is not an error.
  png_destroy_read_struct(&png, &info, nullptr);
  return Status::Ok;
}

}  // namespace

Image decode_png(const uint8_t* data, size_t size, const std::string& name, const DecodeLimits& limits) {
  PngSource src{data, size, 0, {}};
  PngLayout lay;
  std::vector<uint8_t> pixels;
  std::vector<png_bytep> rows;
  const Status st = run_libpng(src, limits, lay, pixels, rows);
  if (st == Status::TooBig) check_dimensions(lay.width, lay.height, name, limits);
  EV_CHECK(st == Status::Ok, "image: ", name, ": PNG: ", src.msg);

  Image img;
  img.width = static_cast<int>(lay.width);
  img.height = static_cast<int>(lay.height);
  const size_t n = static_cast<size_t>(lay.width) * lay.height;
  if (lay.channels == 3) {
    img.rgb = std::move(pixels);
    return img;
  }
  img.rgb.resize(n * 3);
  uint8_t* out = img.rgb.data();
  const uint8_t* in = pixels.data();
  for (size_t i = 0; i < n; ++i, out += 3) {
    if (lay.gray16) {  // PIL "I;16" -> RGB clips the 16-bit value at 255
      const unsigned v = (unsigned{in[0]} << 8) | in[1];
      out[0] = out[1] = out[2] = static_cast<uint8_t>(v > 255 ? 255 : v);
      in += 2;
    } else if (lay.channels <= 2) {  // gray (+ alpha, dropped)
      out[0] = out[1] = out[2] = in[0];
      in += lay.channels;
    } else {  // RGBA: alpha dropped
      out[0] = in[0], out[1] = in[1], out[2] = in[2];
      in += 4;
    }
  }
  return img;
}

}  // namespace edgevl::media::detail
