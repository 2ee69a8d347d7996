// media/ image path: decoding (PNG, JPEG, WebP, BMP, GIF), the torch-exact antialiased resize and
// the Gemma 4 image processor.
// - goldens: ../shared/golden/hf/processors/gemma4_image: every `*.torchvision` run, read in place.
//   Decoded pixels must equal PIL's exactly; pixel_values within 1e-5 (the count of bit-exact
//   values is printed too); image_position_ids and num_soft_tokens_per_image exactly.
// - format coverage beyond the goldens: PNG gray / RGBA / palette / 16-bit, WebP, BMP and GIF
//   files built here with the libraries' encoders or by hand, checked against PIL's rules.
// - bad input: missing, empty, unknown, truncated, corrupt and oversized files of every format
//   raise a one-line edgevl::Error naming the file; random byte flips never crash.
#include <png.h>
#include <webp/encode.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mmap.h"
#include "io/safetensors.h"
#include "media/gemma4_image.h"
#include "media/image.h"
#include "media/resize.h"
#include "test_util.h"

namespace edgevl {
namespace {

using test::read_bytes;
using test::expect_error;

using media::Image;
using Bytes = std::vector<uint8_t>;

std::string golden_dir() { return test::golden_hf("processors/gemma4_image"); }

// Bytes -> decode_image must fail with a message naming the pseudo-file.
std::string expect_rejected(const Bytes& b, const std::string& what, const std::string& must_contain = "") {
  std::string m = expect_error([&] { media::decode_image(b.data(), b.size(), "bad." + what); }, "bad." + what, what);
  if (!must_contain.empty()) {
    EXPECT_NE(m.find(must_contain), std::string::npos) << what << ": " << m;
  }
  return m;
}

// ---- golden tensors ------------------------------------------------------------------------

class Golden {
 public:
  Golden() : st_(safetensors::File::open(golden_dir() + "/golden.safetensors")) {
    manifest_ = nlohmann::json::parse(read_text_file(golden_dir() + "/golden.json"));
  }
  const nlohmann::json& manifest() const { return manifest_; }
  bool has(const std::string& name) const { return manifest_["tensors"].contains(name); }

  const TensorRef& raw(const std::string& name) const {
    const TensorRef* t = st_->find(name);
    if (!t) throw Error("golden tensor missing: " + name);
    return *t;
  }
  // float32 tensor, decoding the palette encoding (README: value = palette[codes]).
  std::vector<float> f32(const std::string& name) const {
    const auto& info = manifest_["tensors"][name];
    if (info.value("encoding", "raw") != "palette") {
      const TensorRef& t = raw(name);
      EXPECT_EQ(t.dtype, DType::F32) << name;
      const float* p = reinterpret_cast<const float*>(t.data);
      return std::vector<float>(p, p + t.numel());
    }
    const TensorRef& codes = raw(name + ".codes");
    const TensorRef& pal = raw(name + ".palette");
    const float* palette = reinterpret_cast<const float*>(pal.data);
    std::vector<float> out(codes.numel());
    for (int64_t i = 0; i < codes.numel(); ++i) {
      int64_t c = codes.dtype == DType::U8 ? codes.data[i] : reinterpret_cast<const int16_t*>(codes.data)[i];
      EXPECT_TRUE(c >= 0 && c < pal.numel()) << name;
      out[i] = palette[c];
    }
    return out;
  }
  std::vector<int64_t> i64(const std::string& name) const {
    const TensorRef& t = raw(name);
    EXPECT_EQ(t.dtype, DType::I64) << name;
    const int64_t* p = reinterpret_cast<const int64_t*>(t.data);
    return std::vector<int64_t>(p, p + t.numel());
  }
  Bytes u8(const std::string& name) const {
    const TensorRef& t = raw(name);
    EXPECT_EQ(t.dtype, DType::U8) << name;
    return Bytes(t.data, t.data + t.numel());
  }

 private:
  std::unique_ptr<safetensors::File> st_;
  nlohmann::json manifest_;
};

std::string stem(const std::string& file) { return file.substr(0, file.rfind('.')); }

TEST(ImageGolden, DecodedPixelsMatchPil) {
  Golden g;
  int checked = 0;
  for (const auto& in : g.manifest()["inputs"]) {
    const std::string file = in["file"], s = stem(file);
    Image img = media::load_image(golden_dir() + "/media/" + file);
    EXPECT_EQ(img.width, in["width"].get<int>()) << file;
    EXPECT_EQ(img.height, in["height"].get<int>()) << file;
    // .rgb (after convert_to_rgb) exists only for non-RGB files; otherwise .decoded is the input.
    const std::string name = g.has("input." + s + ".rgb") ? "input." + s + ".rgb" : "input." + s + ".decoded";
    Bytes ref = g.u8(name);
    ASSERT_EQ(ref.size(), img.rgb.size()) << file;
    size_t diff = 0;
    for (size_t i = 0; i < ref.size(); ++i) diff += ref[i] != img.rgb[i];
    EXPECT_EQ(diff, 0u) << file << ": " << diff << " of " << ref.size() << " bytes differ from PIL";
    std::printf("[decode] %-20s %s %dx%d: %zu bytes differ\n", file.c_str(), in["format"].get<std::string>().c_str(),
                img.width, img.height, diff);
    ++checked;
  }
  EXPECT_EQ(checked, 4);
}

TEST(ImageGolden, Gemma4TorchvisionRuns) {
  Golden g;
  int runs = 0;
  for (const auto& [run, info] : g.manifest()["runs"].items()) {
    if (info["backend"] != "torchvision") continue;
    ++runs;
    const auto cfg = media::Gemma4ImageConfig::load(golden_dir() + "/" + info["config_file"].get<std::string>());
    const std::vector<float> pv = g.f32(run + ".pixel_values");
    const std::vector<int64_t> pos = g.i64(run + ".image_position_ids");
    const std::vector<int64_t> soft = g.i64(run + ".num_soft_tokens_per_image");
    const auto& images = info["images"];
    ASSERT_EQ(soft.size(), images.size()) << run;
    const size_t per_image = static_cast<size_t>(cfg.max_patches()) * cfg.patch_dim();
    ASSERT_EQ(pv.size(), images.size() * per_image) << run;
    double run_max = 0;
    size_t run_exact = 0;
    for (size_t i = 0; i < images.size(); ++i) {
      const std::string file = images[i];
      Image img = media::load_image(golden_dir() + "/media/" + file);
      const auto f = media::gemma4_preprocess(img, cfg);
      ASSERT_EQ(f.pixel_values.size(), per_image) << run << " " << file;
      double max_err = 0;
      size_t exact = 0;
      for (size_t k = 0; k < per_image; ++k) {
        const float ref = pv[i * per_image + k];
        max_err = std::max(max_err, static_cast<double>(std::fabs(f.pixel_values[k] - ref)));
        exact += f.pixel_values[k] == ref;
      }
      EXPECT_LE(max_err, 1e-5) << run << " " << file;
      const std::vector<int64_t> ref_pos(pos.begin() + i * cfg.max_patches() * 2,
                                         pos.begin() + (i + 1) * cfg.max_patches() * 2);
      EXPECT_EQ(f.position_ids, ref_pos) << run << " " << file;
      EXPECT_EQ(f.num_soft_tokens, soft[i]) << run << " " << file;
      EXPECT_EQ(media::gemma4_num_soft_tokens(img.height, img.width, cfg), soft[i]) << run << " " << file;
      std::printf("[gemma4] %-20s %-24s -> %4dx%-4d soft %3d  max|err| %.3g  bit-exact %zu/%zu\n", run.c_str(),
                  file.c_str(), f.resized_height, f.resized_width, f.num_soft_tokens, max_err, exact, per_image);
      run_max = std::max(run_max, max_err);
      run_exact += exact;
    }
    std::printf("[gemma4] %s: max|err| %.3g, bit-exact %zu/%zu\n", run.c_str(), run_max, run_exact, pv.size());
  }
  EXPECT_EQ(runs, 3);
}

// ---- processor rules --------------------------------------------------------------------------

TEST(Gemma4Image, TargetSize) {
  media::Gemma4ImageConfig cfg;  // class defaults: 280 soft tokens, 2520 patches
  EXPECT_EQ(media::gemma4_target_size(1000, 1000, cfg), std::make_pair(768, 768));  // spec: 256 tokens
  EXPECT_EQ(media::gemma4_num_soft_tokens(1000, 1000, cfg), 256);
  // Very wide: one pooled row, width floor(w/h) * 48, capped at 280 * 48.
  EXPECT_EQ(media::gemma4_target_size(10, 5000, cfg), std::make_pair(48, 13440));
  EXPECT_EQ(media::gemma4_target_size(4000, 10, cfg), std::make_pair(13440, 48));
  EXPECT_EQ(media::gemma4_target_size(400, 10, cfg), std::make_pair(5040, 96));  // not degenerate: 105 x 2 pooled
  cfg.max_soft_tokens = 70;
  auto [h, w] = media::gemma4_target_size(790, 610, cfg);
  EXPECT_EQ(h % 48, 0);
  EXPECT_EQ(w % 48, 0);
  EXPECT_LE(h / 16 * (w / 16), cfg.max_patches());
}

TEST(Gemma4Image, ConfigFromJson) {
  auto cfg = media::Gemma4ImageConfig::from_json(nlohmann::json::parse(
      R"({"image_processor": {"max_soft_tokens": 560, "patch_size": 16, "resample": 2, "image_mean": 0.5}})"));
  EXPECT_EQ(cfg.max_soft_tokens, 560);
  EXPECT_EQ(cfg.max_patches(), 5040);
  EXPECT_EQ(cfg.resample, media::ResizeFilter::Bilinear);
  EXPECT_EQ(cfg.image_mean[2], 0.5);
  expect_error([] { media::Gemma4ImageConfig::from_json(nlohmann::json::parse(R"({"max_soft_tokens": 100})"), "c.json"); },
               "c.json", "unsupported max_soft_tokens");
  expect_error([] { media::Gemma4ImageConfig::from_json(nlohmann::json::parse(R"({"patch_size": "16"})"), "c.json"); },
               "patch_size", "string patch_size");
  expect_error([] { media::Gemma4ImageConfig::from_json(nlohmann::json::parse(R"({"resample": 0})"), "c.json"); },
               "resample", "nearest resample");
}

TEST(Gemma4Image, PatchLayoutAndPadding) {
  // A 96x48 image that needs no resize with do_resize off: 6 x 3 patches of 16.
  media::Gemma4ImageConfig cfg;
  cfg.do_resize = false;
  cfg.max_soft_tokens = 70;
  Image img;
  img.height = 96, img.width = 48;
  img.rgb.resize(96 * 48 * 3);
  for (size_t i = 0; i < img.rgb.size(); ++i) img.rgb[i] = static_cast<uint8_t>(i * 7 % 251);
  const auto f = media::gemma4_preprocess(img, cfg);
  EXPECT_EQ(f.num_patches, 18);
  EXPECT_EQ(f.num_soft_tokens, 2);
  // Patch 4 = row 1, column 1; element (py=5, px=9, c=2).
  const size_t patch = 4, k = (5 * 16 + 9) * 3 + 2;
  EXPECT_EQ(f.pixel_values[patch * 768 + k], static_cast<float>(img.pixel(16 + 5, 16 + 9)[2]) * (1.0f / 255.0f));
  EXPECT_EQ(f.position_ids[patch * 2 + 0], 1);
  EXPECT_EQ(f.position_ids[patch * 2 + 1], 1);
  EXPECT_EQ(f.position_ids[18 * 2], -1);
  EXPECT_EQ(f.position_ids[18 * 2 + 1], -1);
  EXPECT_EQ(f.pixel_values[18 * 768], 0.0f);
}

TEST(Resize, ConstantImageStaysConstantAndSameSizeCopies) {
  for (auto filter : {media::ResizeFilter::Bicubic, media::ResizeFilter::Bilinear}) {
    for (auto [h, w, oh, ow] : {std::array<int, 4>{37, 53, 96, 48}, {300, 20, 7, 61}, {5, 5, 5, 9}}) {
      Bytes src(static_cast<size_t>(h) * w * 3, 200);
      Bytes out = media::resize_antialias_u8(src.data(), h, w, 3, oh, ow, filter);
      ASSERT_EQ(out.size(), static_cast<size_t>(oh) * ow * 3);
      for (uint8_t v : out) ASSERT_EQ(v, 200);
    }
  }
  Bytes src = {1, 2, 3, 4, 5, 6};
  EXPECT_EQ(media::resize_antialias_u8(src.data(), 1, 2, 3, 1, 2, media::ResizeFilter::Bicubic), src);
}

// ---- formats beyond the goldens ------------------------------------------------------------

Bytes png_encode(const void* pixels, int w, int h, png_uint_32 format, const void* colormap = nullptr,
                 int colormap_entries = 0) {
  png_image im;
  std::memset(&im, 0, sizeof im);
  im.version = PNG_IMAGE_VERSION;
  im.width = w, im.height = h, im.format = format;
  im.colormap_entries = colormap_entries;
  png_alloc_size_t size = 0;
  EXPECT_TRUE(png_image_write_to_memory(&im, nullptr, &size, 0, pixels, 0, colormap)) << im.message;
  Bytes out(size);
  EXPECT_TRUE(png_image_write_to_memory(&im, out.data(), &size, 0, pixels, 0, colormap)) << im.message;
  out.resize(size);
  return out;
}

Image decode(const Bytes& b, const std::string& name) { return media::decode_image(b.data(), b.size(), name); }

TEST(ImageFormats, PngGrayAlphaPalette16Bit) {
  const int w = 5, h = 3;
  Bytes gray(w * h), rgba(w * h * 4);
  for (int i = 0; i < w * h; ++i) {
    gray[i] = static_cast<uint8_t>(i * 17);
    for (int c = 0; c < 4; ++c) rgba[i * 4 + c] = static_cast<uint8_t>(i * 13 + c * 50);
    rgba[i * 4 + 3] = static_cast<uint8_t>(i % 2 ? 0 : 128);  // transparent pixels keep their colour
  }
  Image g = decode(png_encode(gray.data(), w, h, PNG_FORMAT_GRAY), "gray.png");
  for (int i = 0; i < w * h; ++i)
    for (int c = 0; c < 3; ++c) ASSERT_EQ(g.rgb[i * 3 + c], gray[i]);
  Image a = decode(png_encode(rgba.data(), w, h, PNG_FORMAT_RGBA), "rgba.png");
  for (int i = 0; i < w * h; ++i)
    for (int c = 0; c < 3; ++c) ASSERT_EQ(a.rgb[i * 3 + c], rgba[i * 4 + c]) << "alpha must be dropped, not composited";

  const uint8_t cmap[4 * 3] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 8, 7};
  Bytes idx(w * h);
  for (int i = 0; i < w * h; ++i) idx[i] = static_cast<uint8_t>(i % 4);
  Image p = decode(png_encode(idx.data(), w, h, PNG_FORMAT_RGB_COLORMAP, cmap, 4), "palette.png");
  for (int i = 0; i < w * h; ++i)
    for (int c = 0; c < 3; ++c) ASSERT_EQ(p.rgb[i * 3 + c], cmap[idx[i] * 3 + c]);

  std::vector<uint16_t> g16(w * h);
  for (int i = 0; i < w * h; ++i) g16[i] = static_cast<uint16_t>(i * 40);  // 0..560
  Image q = decode(png_encode(g16.data(), w, h, PNG_FORMAT_LINEAR_Y), "gray16.png");
  for (int i = 0; i < w * h; ++i) ASSERT_EQ(q.rgb[i * 3], std::min<int>(g16[i], 255)) << "PIL's I;16 clip";
}

Bytes webp_lossless(int w, int h, Bytes* rgb_out) {
  Bytes rgb(w * h * 3);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(i * 31 % 256);
  uint8_t* out = nullptr;
  size_t n = WebPEncodeLosslessRGB(rgb.data(), w, h, w * 3, &out);
  EXPECT_GT(n, 0u);
  Bytes b(out, out + n);
  WebPFree(out);
  if (rgb_out) *rgb_out = rgb;
  return b;
}

TEST(ImageFormats, WebpLossless) {
  Bytes rgb;
  Bytes file = webp_lossless(23, 11, &rgb);
  Image img = decode(file, "x.webp");
  EXPECT_EQ(img.width, 23);
  EXPECT_EQ(img.height, 11);
  EXPECT_EQ(img.rgb, rgb);
}

// 24-bit bottom-up BMP written by hand: rows are BGR, padded to 4 bytes.
Bytes bmp_encode(const Bytes& rgb, int w, int h) {
  const int stride = (w * 3 + 3) / 4 * 4;
  Bytes b(54 + stride * h, 0);
  auto put32 = [&](size_t at, uint32_t v) { for (int i = 0; i < 4; ++i) b[at + i] = (v >> (8 * i)) & 255; };
  b[0] = 'B', b[1] = 'M';
  put32(2, static_cast<uint32_t>(b.size()));
  put32(10, 54);
  put32(14, 40);
  put32(18, w);
  put32(22, h);
  b[26] = 1, b[28] = 24;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) b[54 + (h - 1 - y) * stride + x * 3 + c] = rgb[(y * w + x) * 3 + (2 - c)];
  return b;
}

TEST(ImageFormats, BmpAndGif) {
  Bytes rgb(3 * 5 * 3);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(i * 11);
  Image b = decode(bmp_encode(rgb, 3, 5), "x.bmp");
  EXPECT_EQ(b.width, 3);
  EXPECT_EQ(b.height, 5);
  EXPECT_EQ(b.rgb, rgb);
  // 1x1 GIF, 2-colour global table (white, black), pixel index 0.
  const Bytes gif = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0, 255, 255, 255, 0, 0, 0,
                     0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 1, 0, 0x3b};
  Image g = decode(gif, "x.gif");
  EXPECT_EQ(g.width, 1);
  EXPECT_EQ(g.rgb, (Bytes{255, 255, 255}));
}

// ---- bad input ---------------------------------------------------------------------------

uint32_t crc32(const uint8_t* p, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
  }
  return ~c;
}

void put_be32(uint8_t* p, uint32_t v) { p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v; }

Bytes truncated(const Bytes& b, double frac) { return Bytes(b.begin(), b.begin() + static_cast<long>(b.size() * frac)); }

TEST(ImageBadInput, MissingEmptyUnknown) {
  expect_error([] { media::load_image("/nonexistent/nope.png"); }, "/nonexistent/nope.png", "missing file");
  expect_rejected({}, "empty", "empty");
  expect_rejected({'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'}, "txt", "unknown format");
  Bytes doc = read_bytes(golden_dir() + "/media/doc_page.png");
  media::DecodeLimits small;
  small.max_pixels = 1000;
  expect_error([&] { media::decode_image(doc.data(), doc.size(), "doc.png", small); }, "exceeds", "limits");
}

TEST(ImageBadInput, Png) {
  Bytes png = read_bytes(golden_dir() + "/media/doc_page.png");
  expect_rejected(truncated(png, 0.5), "half.png", "PNG");
  expect_rejected(truncated(png, 0.02), "head.png", "PNG");
  Bytes bad = png;
  bad[png.size() / 2] ^= 0x55;  // inside IDAT: CRC or zlib error
  expect_rejected(bad, "flipped.png", "PNG");
  Bytes huge = png;  // IHDR: width/height at 16/20, CRC over type+data at 29
  put_be32(&huge[16], 100000), put_be32(&huge[20], 100000);
  put_be32(&huge[29], crc32(&huge[12], 17));
  expect_rejected(huge, "huge.png", "exceeds");
}

TEST(ImageBadInput, Jpeg) {
  Bytes jpg = read_bytes(golden_dir() + "/media/photo.jpg");
  expect_rejected(truncated(jpg, 0.5), "half.jpg", "JPEG");
  expect_rejected(truncated(jpg, 0.01), "head.jpg", "JPEG");
  Bytes huge = jpg;
  size_t sof = 0;
  for (size_t i = 2; i + 9 < huge.size(); ++i)
    if (huge[i] == 0xFF && (huge[i + 1] == 0xC0 || huge[i + 1] == 0xC1 || huge[i + 1] == 0xC2)) { sof = i; break; }
  ASSERT_GT(sof, 0u);
  huge[sof + 5] = huge[sof + 7] = 0xFD, huge[sof + 6] = huge[sof + 8] = 0xE8;  // 65000 x 65000
  expect_rejected(huge, "huge.jpg", "exceeds");
  Bytes bad = jpg;
  bad[sof + 9] = 7;  // 7 components: libjpeg refuses
  expect_rejected(bad, "components.jpg", "JPEG");
}

TEST(ImageBadInput, WebpBmpGif) {
  Bytes webp = webp_lossless(40, 30, nullptr);
  expect_rejected(truncated(webp, 0.5), "half.webp", "WebP");
  expect_rejected(truncated(webp, 0.3), "short.webp", "WebP");
  Bytes huge = webp;  // VP8L header after "RIFF....WEBPVP8L" + size + 0x2f: 14-bit width-1, height-1
  ASSERT_EQ(std::memcmp(&huge[12], "VP8L", 4), 0);
  huge[21] = 0xFF, huge[22] = 0xFF, huge[23] = 0xFF, huge[24] = (huge[24] & 0xF0) | 0x0F;  // 16384 x 16384
  expect_rejected(huge, "huge.webp", "exceeds");

  Bytes rgb(8 * 8 * 3, 9);
  Bytes bmp = bmp_encode(rgb, 8, 8);
  expect_rejected(truncated(bmp, 0.6), "half.bmp", "BMP");
  Bytes hbmp = bmp;
  hbmp[18] = 0xA0, hbmp[19] = 0x86, hbmp[20] = 0x01;  // width 100000
  expect_rejected(hbmp, "huge.bmp", "exceeds");

  const Bytes gif = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0, 255, 255, 255, 0, 0, 0,
                     0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 1, 0, 0x3b};
  expect_rejected(Bytes(gif.begin(), gif.begin() + 32), "half.gif", "GIF");
  Bytes hgif = gif;
  hgif[6] = hgif[7] = hgif[8] = hgif[9] = 0xFF;  // 65535 x 65535 screen
  expect_rejected(hgif, "huge.gif", "exceeds");
}

// Random byte flips in every format: decoding may succeed or throw Error, never crash or hang.
TEST(ImageBadInput, RandomFlipsNeverCrash) {
  std::vector<std::pair<std::string, Bytes>> files;
  Bytes rgb(16 * 12 * 3);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(i * 5);
  files.push_back({"png", png_encode(rgb.data(), 16, 12, PNG_FORMAT_RGB)});
  files.push_back({"webp", webp_lossless(16, 12, nullptr)});
  files.push_back({"bmp", bmp_encode(rgb, 16, 12)});
  files.push_back({"gif", {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0, 255, 255, 255, 0, 0, 0,
                           0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 1, 0, 0x3b}});
  files.push_back({"jpg", read_bytes(golden_dir() + "/media/photo.jpg")});
  std::mt19937 rng(1234);
  for (const auto& [ext, good] : files) {
    int ok = 0, rejected = 0;
    const int rounds = ext == "jpg" ? 40 : 300;
    for (int r = 0; r < rounds; ++r) {
      Bytes b = good;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < flips; ++k) b[rng() % b.size()] ^= static_cast<uint8_t>(1 + rng() % 255);
      if (rng() % 4 == 0) b.resize(rng() % b.size());
      try {
        Image img = media::decode_image(b.data(), b.size(), "fuzz." + ext);
        ASSERT_EQ(img.rgb.size(), static_cast<size_t>(img.width) * img.height * 3);
        ++ok;
      } catch (const Error&) {
        ++rejected;
      }
    }
    std::printf("[fuzz] %-4s decoded %d, rejected %d\n", ext.c_str(), ok, rejected);
  }
}

}  // namespace
}  // namespace edgevl
