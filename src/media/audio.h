// Audio files -> mono float32 samples, resampled to the rate a model's feature extractor wants.
//
// Decoding is libsndfile's (WAV, FLAC, OGG/Vorbis, Opus, MP3, AIFF, ... whatever the installed
// libsndfile reads). Integer PCM becomes float the way libsndfile normalises it: s16 / 32768,
// s24 / 2^23, s32 / 2^31 — the same numbers Python's soundfile gives (the Gemma 4 goldens'
// waveforms are s16 / 32768). Several channels are mixed to mono by averaging them (as librosa's
// `to_mono` does for transformers' audio loading). Resampling is libsoxr at its "high quality"
// setting (librosa's default `soxr_hq`).
//
// Files are untrusted: size and duration are bounded, and a missing, truncated, corrupt or
// unsupported file raises a one-line edgevl::Error naming the file; nothing aborts.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace edgevl::media {

struct AudioLimits {
  double max_seconds = 3600.0;               // longer files are refused before decoding
  uint64_t max_file_bytes = uint64_t(1) << 30;  // 1 GiB
};

struct Audio {
  std::vector<float> samples;  // mono
  int sample_rate = 0;         // Hz
  int channels_in_file = 0;    // before mixing down
};

// Decodes a file (or bytes in memory, `name` standing in for the path in errors) at its own rate.
Audio decode_audio_file(const std::string& path, const AudioLimits& limits = {});
Audio decode_audio_memory(const void* data, size_t size, const std::string& name = "<memory>",
                          const AudioLimits& limits = {});

// Resamples mono samples; returns the input unchanged when the rates agree.
std::vector<float> resample_audio(std::span<const float> samples, int from_rate, int to_rate);

// decode_audio_file, then resample to `target_rate` when the file's rate differs.
Audio load_audio(const std::string& path, int target_rate, const AudioLimits& limits = {});

}  // namespace edgevl::media
