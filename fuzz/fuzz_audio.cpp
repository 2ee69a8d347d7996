// libFuzzer target for audio decoding (libsndfile from memory), resampling and the Gemma 4
// feature extractor: any bytes must either give features or raise edgevl::Error.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "core/error.h"
#include "media/audio.h"
#include "media/gemma4_audio.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  edgevl::media::AudioLimits limits;
  limits.max_seconds = 20;  // keeps each run fast
  try {
    edgevl::media::Audio a = edgevl::media::decode_audio_memory(data, size, "fuzz", limits);
    const std::vector<float> wave = edgevl::media::resample_audio(a.samples, a.sample_rate, 16000);
    static const edgevl::media::Gemma4AudioFeatureExtractor extract;
    const auto f = extract({std::span<const float>(wave)});
    if (f.features.size() != size_t(f.batch * f.frames * f.mels)) std::abort();
  } catch (const edgevl::Error&) {
  }
  return 0;
}
