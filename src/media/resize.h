// Antialiased resize of 8-bit images, bit-exact with PyTorch's CPU kernel for uint8 input
// (`_upsample_bicubic2d_aa` / `_upsample_bilinear2d_aa`, torch 2.x, UpSampleKernel.cpp). That is
// what torchvision.transforms.v2.functional.resize(uint8 tensor, antialias=True) runs on CPU for
// BICUBIC, and so what every transformers "torchvision backend" image processor feeds its models.
//
// The kernel is PIL's resampler: separable, horizontal pass first into an 8-bit intermediate,
// then vertical; filter support widened by the downscale factor (the antialias), weights
// normalised per output pixel in double, then turned into int16 fixed point with the largest
// precision that keeps the biggest weight below 2^15; sums are integer, rounded by adding half
// and shifting, and clamped to 0..255. Bicubic uses Keys' a = -0.5 (PIL's), not torch's -0.75.
#pragma once
#include <cstdint>
#include <vector>

#include "media/image.h"

namespace edgevl::media {

enum class ResizeFilter { Bilinear, Bicubic };

// src: height x width x channels (interleaved, row-major). Returns out_h x out_w x channels.
// A dimension whose size does not change is not filtered (as in torch).
std::vector<uint8_t> resize_antialias_u8(const uint8_t* src, int height, int width, int channels, int out_h,
                                         int out_w, ResizeFilter filter);

Image resize_antialias(const Image& img, int out_h, int out_w, ResizeFilter filter);

}  // namespace edgevl::media
