#include "media/resize.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace edgevl::media {
namespace {

// Filters as torch writes them (HelperInterpLinear / HelperInterpCubic::aa_filter); the
// operation order is kept so the double weights, and so the int16 ones, come out identical.
double linear_filter(double x) {
  x = std::abs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

double cubic_filter(double x) {
  constexpr double a = -0.5;  // Keys / PIL; torch uses it whenever antialias=True
  x = std::abs(x);
  if (x < 1.0) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2.0) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0.0;
}

// One axis: for each output index the first input index, the tap count and int16 weights.
struct AxisTaps {
  int taps = 0;  // stride of `weights` per output index
  std::vector<int> first, count;
  std::vector<int16_t> weights;
  int precision = 0;  // fixed-point bits of the weights
};

AxisTaps compute_taps(int in_size, int out_size, ResizeFilter filter) {
  // torch's area_pixel_compute_scale without align_corners or an explicit scale factor.
  const double scale = static_cast<double>(in_size) / out_size;
  const int interp_size = filter == ResizeFilter::Bicubic ? 4 : 2;
  const double support = scale >= 1.0 ? (interp_size * 0.5) * scale : interp_size * 0.5;
  const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
  double (*fn)(double) = filter == ResizeFilter::Bicubic ? cubic_filter : linear_filter;

  AxisTaps t;
  t.taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(out_size);
  t.count.resize(out_size);
  std::vector<double> w(static_cast<size_t>(out_size) * t.taps, 0.0);
  double w_max = 0.0;
  for (int i = 0; i < out_size; ++i) {
    const double center = scale * (i + 0.5);
    const int64_t xmin = std::max(static_cast<int64_t>(center - support + 0.5), int64_t{0});
    int64_t xsize = std::min(static_cast<int64_t>(center + support + 0.5), int64_t{in_size}) - xmin;
    xsize = std::clamp(xsize, int64_t{0}, int64_t{t.taps});  // torch clips a rare off-by-one
    double* wi = w.data() + static_cast<size_t>(i) * t.taps;
    double total = 0.0;
    for (int64_t j = 0; j < xsize; ++j) {
      wi[j] = fn((j + xmin - center + 0.5) * invscale);
      total += wi[j];
    }
    if (total != 0.0) {
      for (int64_t j = 0; j < xsize; ++j) {
        wi[j] /= total;
        w_max = std::max(w_max, wi[j]);
      }
    }
    t.first[i] = static_cast<int>(xmin);
    t.count[i] = static_cast<int>(xsize);
  }
  // Largest precision (below 22) for which the biggest weight still fits in int16.
  int prec = 0;
  for (; prec < 22; ++prec) {
    if (static_cast<int>(0.5 + w_max * (1 << (prec + 1))) >= (1 << 15)) break;
  }
  EV_ASSERT(prec > 0);
  t.precision = prec;
  t.weights.resize(w.size());
  for (size_t k = 0; k < w.size(); ++k) {
    const double v = w[k] * (1 << prec);
    t.weights[k] = static_cast<int16_t>(v < 0 ? static_cast<int>(-0.5 + v) : static_cast<int>(0.5 + v));
  }
  return t;
}

inline uint8_t round_shift_clamp(int32_t acc, int prec) {
  const int32_t v = acc >> prec;  // arithmetic shift (C++20), like _mm256_srai_epi32
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// Filters along rows: [h, in_w, c] -> [h, out_w, c].
void horizontal_pass(const uint8_t* src, int h, int in_w, int c, const AxisTaps& t, int out_w, uint8_t* dst) {
  const int32_t half = 1 << (t.precision - 1);
  for (int y = 0; y < h; ++y) {
    const uint8_t* row = src + static_cast<size_t>(y) * in_w * c;
    uint8_t* out = dst + static_cast<size_t>(y) * out_w * c;
    for (int x = 0; x < out_w; ++x) {
      const int16_t* k = t.weights.data() + static_cast<size_t>(x) * t.taps;
      const uint8_t* p = row + static_cast<size_t>(t.first[x]) * c;
      for (int ch = 0; ch < c; ++ch) {
        int32_t acc = half;
        for (int j = 0; j < t.count[x]; ++j) acc += k[j] * p[j * c + ch];
        out[x * c + ch] = round_shift_clamp(acc, t.precision);
      }
    }
  }
}

// Filters along columns: [in_h, w, c] -> [out_h, w, c].
void vertical_pass(const uint8_t* src, int w, int c, const AxisTaps& t, int out_h, uint8_t* dst) {
  const int32_t half = 1 << (t.precision - 1);
  const size_t line = static_cast<size_t>(w) * c;
  std::vector<int32_t> acc(line);
  for (int y = 0; y < out_h; ++y) {
    const int16_t* k = t.weights.data() + static_cast<size_t>(y) * t.taps;
    std::fill(acc.begin(), acc.end(), half);
    for (int j = 0; j < t.count[y]; ++j) {
      const uint8_t* in = src + static_cast<size_t>(t.first[y] + j) * line;
      const int32_t kj = k[j];
      for (size_t i = 0; i < line; ++i) acc[i] += kj * in[i];
    }
    uint8_t* out = dst + static_cast<size_t>(y) * line;
    for (size_t i = 0; i < line; ++i) out[i] = round_shift_clamp(acc[i], t.precision);
  }
}

}  // namespace

std::vector<uint8_t> resize_antialias_u8(const uint8_t* src, int height, int width, int channels, int out_h,
                                         int out_w, ResizeFilter filter) {
  EV_CHECK(height > 0 && width > 0 && out_h > 0 && out_w > 0 && channels > 0, "resize: bad size ", height, "x",
           width, " -> ", out_h, "x", out_w);
  const size_t h_size = static_cast<size_t>(height) * out_w * channels;
  std::vector<uint8_t> wide;  // after the horizontal pass
  const uint8_t* cur = src;
  if (out_w != width) {
    const AxisTaps t = compute_taps(width, out_w, filter);
    wide.resize(h_size);
    horizontal_pass(src, height, width, channels, t, out_w, wide.data());
    cur = wide.data();
  }
  if (out_h != height) {
    const AxisTaps t = compute_taps(height, out_h, filter);
    std::vector<uint8_t> out(static_cast<size_t>(out_h) * out_w * channels);
    vertical_pass(cur, out_w, channels, t, out_h, out.data());
    return out;
  }
  if (cur == src) return std::vector<uint8_t>(src, src + h_size);  // same size: a copy, as torch
  return wide;
}

Image resize_antialias(const Image& img, int out_h, int out_w, ResizeFilter filter) {
  Image out;
  out.height = out_h;
  out.width = out_w;
  out.rgb = resize_antialias_u8(img.rgb.data(), img.height, img.width, 3, out_h, out_w, filter);
  return out;
}

}  // namespace edgevl::media
