// Internal to media/: one decoder per container format, each in its own file, all returning
// PIL-compatible RGB (see image.h) or throwing edgevl::Error "image: <name>: <problem>".
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "media/image.h"

namespace edgevl::media::detail {

// Rejects empty, oversized or absurd dimensions before anything is allocated.
void check_dimensions(int64_t width, int64_t height, const std::string& name, const DecodeLimits& limits);

Image decode_png(const uint8_t* data, size_t size, const std::string& name, const DecodeLimits& limits);
Image decode_jpeg(const uint8_t* data, size_t size, const std::string& name, const DecodeLimits& limits);
Image decode_webp(const uint8_t* data, size_t size, const std::string& name, const DecodeLimits& limits);
// BMP and GIF through stb_image (Debian's libstb).
Image decode_stb(const uint8_t* data, size_t size, const std::string& name, const DecodeLimits& limits);

}  // namespace edgevl::media::detail
