// exp(x) by Cody-Waite range reduction and a degree-6 polynomial (Cephes' expf coefficients),
// accurate to ~2 ulp, written as plain arithmetic so loops over it vectorize (std::exp is a
// library call the compiler cannot). exp(-inf) and anything below -87.3 give 0. Shared by the
// scalar kernels and the element-wise ops so both round alike.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace edgevl {

inline float exp_approx(float x) {
  const bool underflow = x < -87.33654f;
  x = std::min(std::max(x, -87.33654f), 88.72283f);
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits = ((int32_t)n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return underflow ? 0.0f : p * scale;
}

}  // namespace edgevl
