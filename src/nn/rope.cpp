#include "nn/rope.h"

#include <cmath>

#include "core/error.h"

namespace edgevl::nn {

Rope::Rope(const RopeConfig& cfg, int64_t head_dim) {
  rotary_dim_ = cfg.rotary_dim > 0 ? cfg.rotary_dim : head_dim;
  EV_CHECK(rotary_dim_ % 2 == 0 && rotary_dim_ <= head_dim, "rope: rotary dim ", rotary_dim_, " invalid for head dim ",
           head_dim);
  EV_CHECK(cfg.theta > 0, "rope: theta must be positive");
  interleaved_ = cfg.interleaved;
  const int64_t half = rotary_dim_ / 2;
  inv_freq_.resize(half);
  // HF: 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim)), in float32.
  for (int64_t i = 0; i < half; ++i) {
    float expo = (float)(2 * i) / (float)rotary_dim_;
    inv_freq_[i] = 1.0f / std::pow((float)cfg.theta, expo);
  }
  if (cfg.type == "default") {
  } else if (cfg.type == "proportional") {
    // _compute_proportional_rope_parameters: int(partial_rotary_factor * head_dim // 2) pairs rotate.
    EV_CHECK(cfg.factor > 0, "rope: proportional factor must be positive");
    const int64_t rotating = (int64_t)std::floor(cfg.partial_rotary_factor * (double)rotary_dim_ / 2.0);
    for (int64_t i = 0; i < half; ++i) inv_freq_[i] = i < rotating ? inv_freq_[i] / (float)cfg.factor : 0.0f;
  } else if (cfg.type == "linear") {
    EV_CHECK(cfg.factor > 0, "rope: linear factor must be positive");
    for (float& f : inv_freq_) f /= (float)cfg.factor;
  } else if (cfg.type == "llama3") {
    // _compute_llama3_parameters: wavelengths beyond low_freq_wavelen are divided by factor,
    // those under high_freq_wavelen kept, the band between smoothly interpolated.
    const double low_wavelen = cfg.original_max_position / cfg.low_freq_factor;
    const double high_wavelen = cfg.original_max_position / cfg.high_freq_factor;
    for (float& f : inv_freq_) {
      const float wavelen = 2.0f * (float)M_PI / f;
      float v = wavelen > (float)low_wavelen ? f / (float)cfg.factor : f;
      const float smooth = ((float)cfg.original_max_position / wavelen - (float)cfg.low_freq_factor) /
                           (float)(cfg.high_freq_factor - cfg.low_freq_factor);
      const float smoothed = (1 - smooth) * v / (float)cfg.factor + smooth * v;
      const bool medium = !(wavelen < (float)high_wavelen) && !(wavelen > (float)low_wavelen);
      f = medium ? smoothed : v;
    }
  } else {
    fail("rope: unsupported rope_type '", cfg.type, "'");
  }
}

void Rope::divide_frequencies(const std::vector<float>& factors) {
  EV_CHECK(factors.size() == inv_freq_.size(), "rope: ", factors.size(), " frequency factors for ", inv_freq_.size(),
           " frequencies");
  for (size_t i = 0; i < factors.size(); ++i) inv_freq_[i] /= factors[i];
}

void Rope::apply(float* x, int64_t n_heads, int64_t head_dim, int64_t pos) const {
  const int64_t half = rotary_dim_ / 2;
  // cos/sin of (pos * inv_freq) in float32, like HF's position embedding module.
  float cs[512], sn[512];
  EV_ASSERT(half <= 512);
  for (int64_t i = 0; i < half; ++i) {
    float ang = (float)pos * inv_freq_[i];
    cs[i] = std::cos(ang) * attention_scaling_;
    sn[i] = std::sin(ang) * attention_scaling_;
  }
  for (int64_t h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    if (interleaved_) {
      for (int64_t i = 0; i < half; ++i) {
        float a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = a * cs[i] - b * sn[i];
        v[2 * i + 1] = b * cs[i] + a * sn[i];
      }
    } else {
      for (int64_t i = 0; i < half; ++i) {
        float a = v[i], b = v[i + half];
        v[i] = a * cs[i] - b * sn[i];
        v[i + half] = b * cs[i] + a * sn[i];
      }
    }
  }
}

}  // namespace edgevl::nn
