// BMP and GIF through stb_image (Debian's libstb: a shared build of stb_image.h), which reports
// errors by return value. Asked for 3 channels, stb drops alpha and replicates gray, matching
// PIL's convert("RGB"). GIF: the first frame; transparent pixels come out black where PIL would
// give the palette colour behind the transparent index (a known difference).
#include <stb/stb_image.h>

#include <memory>

#include "core/error.h"
#include "media/image_codecs.h"

namespace edgevl::media::detail {
namespace {

// stb reads zeros past the end of its buffer instead of failing, so a truncated file would decode
// to a partly black image; PIL refuses those ("image file is truncated"). These walks check that
// the bytes the first image needs are all there.
uint32_t le32(const uint8_t* p) { return p[0] | (p[1] << 8) | (p[2] << 16) | (uint32_t{p[3]} << 24); }
uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

const char* bmp_problem(const uint8_t* d, size_t n) {
  if (n < 26) return "truncated header";
  const uint32_t offset = le32(d + 10), hsize = le32(d + 14);
  int64_t w, h, bpp, compression = 0;
  if (hsize == 12) {  // OS/2 BITMAPCOREHEADER
    w = le16(d + 18), h = le16(d + 20), bpp = le16(d + 24);
  } else {
    if (n < 34) return "truncated header";
    w = static_cast<int32_t>(le32(d + 18)), h = static_cast<int32_t>(le32(d + 22));
    bpp = le16(d + 28), compression = le32(d + 30);
  }
  if (h < 0) h = -h;  // top-down rows
  if (compression != 0 && compression != 3 && compression != 6) return nullptr;  // RLE etc.: stb decides
  if (w <= 0 || w > (int64_t{1} << 30) || bpp <= 0 || bpp > 32) return nullptr;  // stb rejects these
  const uint64_t stride = ((static_cast<uint64_t>(w) * bpp + 31) / 32) * 4;
  if (offset > n || stride * static_cast<uint64_t>(h) > n - offset) return "truncated pixel data";
  return nullptr;
}

const char* gif_problem(const uint8_t* d, size_t n) {
  size_t p = 13;  // header + logical screen descriptor
  if (n < p) return "truncated header";
  if (d[10] & 0x80) p += size_t{3} << ((d[10] & 7) + 1);  // global colour table
  auto skip_sub_blocks = [&]() {
    while (p < n) {
      const size_t len = d[p++];
      if (len == 0) return true;
      p += len;
    }
    return false;
  };
  while (p < n) {
    const uint8_t tag = d[p++];
    if (tag == 0x21) {  // extension: label, then sub-blocks
      if (++p > n || !skip_sub_blocks()) return "truncated extension block";
    } else if (tag == 0x2C) {  // image descriptor: the first frame must be complete
      if (p + 9 > n) return "truncated image descriptor";
      const uint8_t flags = d[p + 8];
      p += 9;
      if (flags & 0x80) p += size_t{3} << ((flags & 7) + 1);  // local colour table
      if (++p > n || !skip_sub_blocks()) return "truncated image data";
      return nullptr;
    } else if (tag == 0x3B) {
      return "no image in file";
    } else {
      return "corrupt block structure";
    }
  }
  return "truncated file";
}

}  // namespace

Image decode_stb(const uint8_t* data, size_t size, const std::string& name, const DecodeLimits& limits) {
  const int len = static_cast<int>(size);  // decode_image bounds size to int32
  const bool bmp = data[0] == 'B';
  const char* fmt = bmp ? "BMP: " : "GIF: ";
  int w = 0, h = 0, comp = 0;
  // The header first: reject huge images before stb allocates them.
  EV_CHECK(stbi_info_from_memory(data, len, &w, &h, &comp), "image: ", name, ": ", fmt,
           stbi_failure_reason() ? stbi_failure_reason() : "corrupt file");
  check_dimensions(w, h, name, limits);
  const char* problem = bmp ? bmp_problem(data, size) : gif_problem(data, size);
  EV_CHECK(!problem, "image: ", name, ": ", fmt, problem);
  struct Free {
    void operator()(stbi_uc* p) const { stbi_image_free(p); }
  };
  std::unique_ptr<stbi_uc, Free> px(stbi_load_from_memory(data, len, &w, &h, &comp, 3));
  EV_CHECK(px, "image: ", name, ": ", fmt, stbi_failure_reason() ? stbi_failure_reason() : "corrupt file");
  check_dimensions(w, h, name, limits);
  Image img;
  img.width = w;
  img.height = h;
  img.rgb.assign(px.get(), px.get() + static_cast<size_t>(w) * h * 3);
  return img;
}

}  // namespace edgevl::media::detail
