// JPEG through libjpeg-turbo with its default decoding settings (islow IDCT, fancy upsampling):
// PIL's JpegDecode.c uses the same, so the pixels are identical to PIL's on the same library.
//
// libjpeg's error_exit must not return; we longjmp back into run_libjpeg, which holds only plain
// data (its C++ buffers are owned by the caller), so no destructor is ever skipped. The default
// error_exit would call exit(): it is replaced before anything else runs.
#include <cstdio>  // jpeglib.h needs FILE and size_t first
#include <jpeglib.h>
#include <jerror.h>

#include <csetjmp>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "media/image_codecs.h"

namespace edgevl::media::detail {
namespace {

struct JpegError {  // plain data; `pub` must stay first (libjpeg hands back a jpeg_error_mgr*)
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char msg[JMSG_LENGTH_MAX];
};

[[noreturn]] void error_exit_cb(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->msg);
  std::longjmp(err->jump, 1);
}

// Warnings (level -1) are ignored like PIL does, except running out of data: PIL refuses a
// truncated JPEG ("image file is truncated"), where libjpeg would pad it with gray.
void emit_message_cb(j_common_ptr cinfo, int level) {
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) error_exit_cb(cinfo);
}

void output_message_cb(j_common_ptr) {}  // never print to stderr

struct JpegLayout {
  int64_t width = 0, height = 0;
  int channels = 0;         // 1 gray, 3 RGB, 4 CMYK
  bool inverted_cmyk = false;  // Adobe files store CMYK inverted (PIL's "CMYK;I")
};

enum class Status { Ok, Failed, TooBig };

Status run_libjpeg(const uint8_t* data, size_t size, const DecodeLimits& limits, JpegLayout& lay,
                   std::vector<uint8_t>& pixels, char* msg) {
  jpeg_decompress_struct cinfo;
  JpegError err;
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = error_exit_cb;
  err.pub.emit_message = emit_message_cb;
  err.pub.output_message = output_message_cb;
  err.msg[0] = 0;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    std::snprintf(msg, JMSG_LENGTH_MAX, "%s", err.msg);
    return Status::Failed;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);

  lay.width = cinfo.image_width;
  lay.height = cinfo.image_height;
  if (lay.width <= 0 || lay.height <= 0 || lay.width > limits.max_side || lay.height > limits.max_side ||
      lay.width * lay.height > limits.max_pixels) {
    jpeg_destroy_decompress(&cinfo);
    return Status::TooBig;
  }
  switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE: cinfo.out_color_space = JCS_GRAYSCALE; break;
    case JCS_CMYK:
    case JCS_YCCK:
      cinfo.out_color_space = JCS_CMYK;
      lay.inverted_cmyk = cinfo.saw_Adobe_marker;
      break;
    default: cinfo.out_color_space = JCS_RGB; break;
  }
  jpeg_start_decompress(&cinfo);
  lay.channels = cinfo.output_components;
  if ((lay.channels != 1 && lay.channels != 3 && lay.channels != 4) ||
      static_cast<int64_t>(cinfo.output_width) != lay.width || static_cast<int64_t>(cinfo.output_height) != lay.height) {
    jpeg_destroy_decompress(&cinfo);
    std::snprintf(msg, JMSG_LENGTH_MAX, "unsupported layout (%d components)", lay.channels);
    return Status::Failed;
  }
  const size_t stride = static_cast<size_t>(lay.width) * lay.channels;
  try {
    pixels.resize(stride * static_cast<size_t>(lay.height));
  } catch (const std::bad_alloc&) {
    jpeg_destroy_decompress(&cinfo);
    std::snprintf(msg, JMSG_LENGTH_MAX, "out of memory");
    return Status::Failed;
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = pixels.data() + stride * cinfo.output_scanline;
    if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) {  // suspension cannot happen with a memory source
      jpeg_destroy_decompress(&cinfo);
      std::snprintf(msg, JMSG_LENGTH_MAX, "decoder stopped early");
      return Status::Failed;
    }
  }
  // Like PIL, do not insist on what follows the last scanline (jpeg_finish_decompress would read
  // up to EOI and fail on files that PIL accepts).
  jpeg_destroy_decompress(&cinfo);
  return Status::Ok;
}

// PIL's cmyk2rgb: r = 255 - k' - c*(255-k)/255 with its MULDIV255 rounding.
inline uint8_t cmyk_channel(int c, int nk) {
  const int t = c * nk + 128;
  const int v = nk - (((t >> 8) + t) >> 8);
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

}  // namespace

Image decode_jpeg(const uint8_t* data, size_t size, const std::string& name, const DecodeLimits& limits) {
  JpegLayout lay;
  std::vector<uint8_t> pixels;
  char msg[JMSG_LENGTH_MAX] = {};
  const Status st = run_libjpeg(data, size, limits, lay, pixels, msg);
  if (st == Status::TooBig) check_dimensions(lay.width, lay.height, name, limits);
  EV_CHECK(st == Status::Ok, "image: ", name, ": JPEG: ", msg);

  Image img;
  img.width = static_cast<int>(lay.width);
  img.height = static_cast<int>(lay.height);
  if (lay.channels == 3) {
    img.rgb = std::move(pixels);
    return img;
  }
  const size_t n = static_cast<size_t>(lay.width) * lay.height;
  img.rgb.resize(n * 3);
  uint8_t* out = img.rgb.data();
  const uint8_t* in = pixels.data();
  for (size_t i = 0; i < n; ++i, out += 3) {
    if (lay.channels == 1) {
      out[0] = out[1] = out[2] = *in++;
      continue;
    }
    int c = in[0], m = in[1], y = in[2], k = in[3];
    if (lay.inverted_cmyk) c = 255 - c, m = 255 - m, y = 255 - y, k = 255 - k;
    const int nk = 255 - k;
    out[0] = cmyk_channel(c, nk), out[1] = cmyk_channel(m, nk), out[2] = cmyk_channel(y, nk);
    in += 4;
  }
  return img;
}

}  // namespace edgevl::media::detail
