// Gemma 4 audio feature extractor: mirrors transformers' Gemma4AudioFeatureExtractor
// (models/gemma4/feature_extraction_gemma4.py, spec: ../shared/specs/gemma4.md section 4) and the
// soft-token count of Gemma4Processor._compute_audio_num_tokens.
//
// Per clip (16 kHz mono float32, e.g. from media/audio.h):
//   batch padding (SequenceFeatureExtractor.pad: truncate to max_length rounded up to a multiple of
//   pad_to_multiple_of, then pad every clip to the longest one rounded up the same way, with
//   padding_value on padding_side; sample mask 1 = real) ->
//   "semicausal" left pad of frame_length/2 zeros -> frames of frame_length+1 samples every hop
//   (the extra sample only feeds preemphasis) -> periodic Hann -> |rfft(fft_length)| ->
//   HTK mel filter bank (transformers' mel_filter_bank, norm None) -> log(mel + mel_floor) ->
//   optional per-bin mean/stddev -> zeroed where the frame mask is false.
// A frame is valid when the last sample of its window is a real sample.
//
// Precision follows the reference: the frames and the window product are float32 (numpy keeps the
// waveform's dtype), np.fft.rfft, |.|, the mel product, the log and the per-bin normalisation run
// in float64, and the result is cast to float32. (Checked on the goldens: a float32 FFT instead
// is off by up to 3e-4 in quiet bands; this order matches them to one float32 ulp.) The FFT is
// FFTW's, in double.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace edgevl::media {

// The preprocessor_config.json fields (defaults = the class defaults = Gemma 4 checkpoints).
struct Gemma4AudioConfig {
  int feature_size = 128;  // mel bins
  int sampling_rate = 16000;
  float padding_value = 0.0f;
  std::string padding_side = "right";  // or "left"
  double frame_length_ms = 20.0;
  double hop_length_ms = 10.0;
  double min_frequency = 0.0;
  double max_frequency = 8000.0;
  double preemphasis = 0.0;
  bool preemphasis_htk_flavor = true;
  bool fft_overdrive = false;  // doubles the FFT size
  double input_scale_factor = 1.0;
  double mel_floor = 1e-3;
  std::vector<double> per_bin_mean;    // empty or feature_size values
  std::vector<double> per_bin_stddev;  // empty or feature_size values

  // Derived as transformers derives them (the JSON's frame_length / hop_length / fft_length keys
  // are outputs of to_dict(); __init__ recomputes them, so they are only checked for agreement).
  int frame_length() const;  // round(sampling_rate * frame_length_ms / 1000)
  int hop_length() const;
  int fft_length() const;  // 2^ceil(log2(frame_length)), doubled with fft_overdrive

  // From a preprocessor_config.json-style object (or a processor_config.json holding one under
  // "feature_extractor"). Unknown keys are ignored; wrong types, impossible values and `dither`
  // > 0 (random noise in the reference, so never reproducible) raise edgevl::Error naming `name`.
  static Gemma4AudioConfig from_json(const nlohmann::json& j, const std::string& name);
  static Gemma4AudioConfig from_file(const std::string& path);
};

// Call-time options of Gemma4AudioFeatureExtractor.__call__ (its defaults).
struct Gemma4AudioCall {
  bool truncation = true;         // false keeps audio longer than max_length (CLI --no-truncation)
  int64_t max_length = 480000;    // samples (30 s at 16 kHz)
  int64_t pad_to_multiple_of = 128;  // samples; 0 = none
};

// Batch output, row-major.
struct Gemma4AudioFeatures {
  int64_t batch = 0, frames = 0, mels = 0;
  std::vector<float> features;     // [batch, frames, mels]
  std::vector<uint8_t> mask;       // [batch, frames], 1 = valid frame
  std::vector<int64_t> valid_frames;  // [batch], sum of each mask row
};

class Gemma4AudioFeatureExtractor {
 public:
  explicit Gemma4AudioFeatureExtractor(const Gemma4AudioConfig& cfg = {});
  const Gemma4AudioConfig& config() const { return cfg_; }

  // clips: mono waveforms at config().sampling_rate. An empty batch or an empty clip is an
  // edgevl::Error (transformers returns an empty feature row; nothing downstream can use it).
  Gemma4AudioFeatures operator()(const std::vector<std::span<const float>>& clips,
                                 const Gemma4AudioCall& call = {}) const;

  // The [fft_length/2 + 1, feature_size] float64 filter bank (for tests).
  const std::vector<double>& mel_filters() const { return mel_filters_; }

 private:
  // One padded clip -> frames x mels into out; mask from the padded sample mask.
  void extract(const float* wave, const uint8_t* sample_mask, int64_t n, int64_t frames, float* out,
               uint8_t* frame_mask) const;

  Gemma4AudioConfig cfg_;
  int frame_length_, hop_length_, fft_length_;
  std::vector<float> window_;       // periodic Hann, float32 as the reference keeps it
  std::vector<double> mel_filters_;  // [bins, mels]
  std::vector<int> band_lo_, band_hi_;  // nonzero bin range [lo, hi) of each mel filter
  struct FftPlan;
  std::shared_ptr<const FftPlan> fft_;  // FFTW r2c plan of fft_length_, shared by copies
};

// Gemma4Processor._compute_audio_num_tokens: mel frames of num_samples (semicausal framing), then
// two stride-2 convs (kernel 3, pad 1), capped at audio_seq_length (750 for Gemma 4).
int64_t gemma4_audio_num_tokens(int64_t num_samples, const Gemma4AudioConfig& cfg = {},
                                int64_t audio_seq_length = 750);
// The same two-conv arithmetic from a count of valid mel frames (a mask row's sum), which is what
// the encoder actually sees when audio was truncated.
int64_t gemma4_audio_tokens_from_frames(int64_t mel_frames, int64_t audio_seq_length = 750);

}  // namespace edgevl::media
