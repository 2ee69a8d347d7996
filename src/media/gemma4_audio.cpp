// Gemma 4 audio features; see gemma4_audio.h. Comments cite the numpy expression each step mirrors.
#include "media/gemma4_audio.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <mutex>
#include <numbers>
#include <sstream>

#include <fftw3.h>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace edgevl::media {
namespace {

using json = nlohmann::json;

// ---- config reading -------------------------------------------------------------------------

double num(const json& j, const char* key, double def, const std::string& name) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  EV_CHECK(it->is_number(), "gemma4 audio config ", name, ": '", key, "' must be a number");
  const double v = it->get<double>();
  EV_CHECK(std::isfinite(v), "gemma4 audio config ", name, ": '", key, "' is not finite");
  return v;
}
int64_t integer(const json& j, const char* key, int64_t def, const std::string& name) {
  const double v = num(j, key, double(def), name);
  EV_CHECK(v == std::floor(v) && std::fabs(v) < 9e15, "gemma4 audio config ", name, ": '", key,
           "' must be an integer");
  return int64_t(v);
}
bool boolean(const json& j, const char* key, bool def, const std::string& name) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  EV_CHECK(it->is_boolean(), "gemma4 audio config ", name, ": '", key, "' must be true or false");
  return it->get<bool>();
}
std::vector<double> numbers(const json& j, const char* key, const std::string& name) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return {};
  EV_CHECK(it->is_array(), "gemma4 audio config ", name, ": '", key, "' must be a list of numbers");
  std::vector<double> out;
  for (const json& v : *it) {
    EV_CHECK(v.is_number() && std::isfinite(v.get<double>()), "gemma4 audio config ", name, ": '",
             key, "' must be a list of numbers");
    out.push_back(v.get<double>());
  }
  return out;
}

// Python's round() (half to even) for the ms -> samples conversion.
int64_t py_round(double x) { return int64_t(std::nearbyint(x)); }

// Python floor division.
int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// ---- constants the reference builds in __init__ ---------------------------------------------

// window_function(frame_length) = np.hanning(frame_length + 1)[:-1], cast to float32.
// np.hanning(M) = 0.5 + 0.5 * cos(pi * n / (M - 1)) with n = 1-M, 3-M, ..., M-1.
std::vector<float> periodic_hann(int frame_length) {
  const double m = frame_length + 1.0;
  std::vector<float> w(frame_length);
  for (int i = 0; i < frame_length; ++i) {
    const double n = 1.0 - m + 2.0 * i;
    w[i] = float(0.5 + 0.5 * std::cos(std::numbers::pi * n / (m - 1.0)));
  }
  return w;
}

// np.linspace(start, stop, num): start + i * ((stop - start) / (num - 1)), last element = stop.
std::vector<double> linspace(double start, double stop, int num) {
  std::vector<double> y(num);
  const double step = (stop - start) / (num - 1);
  for (int i = 0; i < num; ++i) y[i] = double(i) * step + start;
  y[num - 1] = stop;
  return y;
}

// transformers.audio_utils.mel_filter_bank(num_frequency_bins, num_mel_filters, min_frequency,
// max_frequency, sampling_rate, norm=None, mel_scale="htk"): triangles in Hz between centres
// equally spaced on the HTK mel scale. Returns [bins, mels].
std::vector<double> htk_mel_filters(int bins, int mels, double fmin, double fmax, int sr) {
  auto hz_to_mel = [](double f) { return 2595.0 * std::log10(1.0 + f / 700.0); };
  auto mel_to_hz = [](double m) { return 700.0 * (std::pow(10.0, m / 2595.0) - 1.0); };
  std::vector<double> centres = linspace(hz_to_mel(fmin), hz_to_mel(fmax), mels + 2);
  for (double& c : centres) c = mel_to_hz(c);
  const std::vector<double> fft_freqs = linspace(0.0, double(sr / 2), bins);  // sampling_rate // 2
  std::vector<double> fb(size_t(bins) * mels);
  for (int f = 0; f < bins; ++f)
    for (int m = 0; m < mels; ++m) {
      // _create_triangular_filter_bank: slopes = filter_freqs - fft_freq
      const double down = -(centres[m] - fft_freqs[f]) / (centres[m + 1] - centres[m]);
      const double up = (centres[m + 2] - fft_freqs[f]) / (centres[m + 2] - centres[m + 1]);
      fb[size_t(f) * mels + m] = std::max(0.0, std::min(down, up));
    }
  return fb;
}

// FFTW's planner keeps global state and is not thread-safe (executing a plan is); plans are made
// and destroyed under this lock.
std::mutex& fftw_planner_mutex() {
  static std::mutex m;
  return m;
}

}  // namespace

// A real-to-complex FFTW plan made once per extractor (FFTW_ESTIMATE: no timing runs at load).
// It is executed with the new-array interface on per-call buffers from fftw_alloc, which have
// the alignment the plan was made for.
struct Gemma4AudioFeatureExtractor::FftPlan {
  explicit FftPlan(int n) {
    std::lock_guard<std::mutex> lock(fftw_planner_mutex());
    double* in = fftw_alloc_real(size_t(n));
    fftw_complex* out = fftw_alloc_complex(size_t(n / 2 + 1));
    plan = (in && out) ? fftw_plan_dft_r2c_1d(n, in, out, FFTW_ESTIMATE) : nullptr;
    fftw_free(in);
    fftw_free(out);
    EV_CHECK(plan, "gemma4 audio: FFTW could not plan a real FFT of ", n);
  }
  ~FftPlan() {
    std::lock_guard<std::mutex> lock(fftw_planner_mutex());
    fftw_destroy_plan(plan);
  }
  fftw_plan plan = nullptr;
};

namespace {
// fftw_alloc'd buffers for one call.
struct FftBuffers {
  explicit FftBuffers(int n)
      : in(fftw_alloc_real(size_t(n))), out(fftw_alloc_complex(size_t(n / 2 + 1))) {
    EV_CHECK(in && out, "gemma4 audio: out of memory for FFT buffers");
  }
  ~FftBuffers() {
    fftw_free(in);
    fftw_free(out);
  }
  FftBuffers(const FftBuffers&) = delete;
  FftBuffers& operator=(const FftBuffers&) = delete;
  double* in;
  fftw_complex* out;
};
}  // namespace

// ---- config -----------------------------------------------------------------------------------

int Gemma4AudioConfig::frame_length() const { return int(py_round(sampling_rate * frame_length_ms / 1000.0)); }
int Gemma4AudioConfig::hop_length() const { return int(py_round(sampling_rate * hop_length_ms / 1000.0)); }
int Gemma4AudioConfig::fft_length() const {
  int n = 1;
  while (n < frame_length()) n *= 2;
  return fft_overdrive ? 2 * n : n;
}

Gemma4AudioConfig Gemma4AudioConfig::from_json(const json& root, const std::string& name) {
  EV_CHECK(root.is_object(), "gemma4 audio config ", name, ": not a JSON object");
  const json& j = root.contains("feature_extractor") && root["feature_extractor"].is_object()
                      ? root["feature_extractor"]
                      : root;
  if (auto it = j.find("feature_extractor_type"); it != j.end() && !it->is_null())
    EV_CHECK(it->is_string() && it->get<std::string>() == "Gemma4AudioFeatureExtractor",
             "gemma4 audio config ", name, ": feature_extractor_type is ", it->dump(),
             ", not Gemma4AudioFeatureExtractor");
  Gemma4AudioConfig c;
  c.feature_size = int(integer(j, "feature_size", c.feature_size, name));
  c.sampling_rate = int(integer(j, "sampling_rate", c.sampling_rate, name));
  c.padding_value = float(num(j, "padding_value", c.padding_value, name));
  if (auto it = j.find("padding_side"); it != j.end() && !it->is_null()) {
    EV_CHECK(it->is_string(), "gemma4 audio config ", name, ": 'padding_side' must be a string");
    c.padding_side = it->get<std::string>();
  }
  c.frame_length_ms = num(j, "frame_length_ms", c.frame_length_ms, name);
  c.hop_length_ms = num(j, "hop_length_ms", c.hop_length_ms, name);
  c.min_frequency = num(j, "min_frequency", c.min_frequency, name);
  c.max_frequency = num(j, "max_frequency", c.max_frequency, name);
  c.preemphasis = num(j, "preemphasis", c.preemphasis, name);
  c.preemphasis_htk_flavor = boolean(j, "preemphasis_htk_flavor", c.preemphasis_htk_flavor, name);
  c.fft_overdrive = boolean(j, "fft_overdrive", c.fft_overdrive, name);
  c.input_scale_factor = num(j, "input_scale_factor", c.input_scale_factor, name);
  c.mel_floor = num(j, "mel_floor", c.mel_floor, name);
  c.per_bin_mean = numbers(j, "per_bin_mean", name);
  c.per_bin_stddev = numbers(j, "per_bin_stddev", name);
  const double dither = num(j, "dither", 0.0, name);

  auto bad = [&](auto&&... what) { fail("gemma4 audio config ", name, ": ", what...); };
  if (c.feature_size < 1 || c.feature_size > 4096) bad("feature_size ", c.feature_size, " is out of range");
  if (c.sampling_rate < 1000 || c.sampling_rate > 384000) bad("sampling_rate ", c.sampling_rate, " is out of range");
  if (c.padding_side != "right" && c.padding_side != "left") bad("padding_side must be \"right\" or \"left\"");
  if (!(c.frame_length_ms > 0) || !(c.hop_length_ms > 0) || c.frame_length_ms > 1000 || c.hop_length_ms > 1000)
    bad("frame_length_ms / hop_length_ms must be in (0, 1000]");
  if (c.frame_length() < 2 || c.hop_length() < 1) bad("frames shorter than 2 samples");
  if (c.min_frequency < 0 || c.min_frequency > c.max_frequency) bad("need 0 <= min_frequency <= max_frequency");
  if (c.preemphasis < 0 || c.preemphasis >= 1) bad("preemphasis must be in [0, 1)");
  if (!(c.mel_floor > 0)) bad("mel_floor must be > 0 (log of 0 otherwise)");
  if (dither != 0.0) bad("dither ", dither, " adds random noise; only 0 is supported");
  if (!c.per_bin_mean.empty() && int(c.per_bin_mean.size()) != c.feature_size)
    bad("per_bin_mean has ", c.per_bin_mean.size(), " values, feature_size is ", c.feature_size);
  if (!c.per_bin_stddev.empty() && int(c.per_bin_stddev.size()) != c.feature_size)
    bad("per_bin_stddev has ", c.per_bin_stddev.size(), " values, feature_size is ", c.feature_size);
  for (double s : c.per_bin_stddev)
    if (s == 0) bad("per_bin_stddev has a zero");
  // to_dict() writes the derived sizes; transformers recomputes them from the _ms fields, so a
  // disagreeing value means the file was written for something else.
  const std::pair<const char*, int> derived[] = {
      {"frame_length", c.frame_length()}, {"hop_length", c.hop_length()}, {"fft_length", c.fft_length()}};
  for (const auto& [key, value] : derived)
    if (j.contains(key) && !j[key].is_null() && integer(j, key, value, name) != value)
      bad("'", key, "' is ", j[key].dump(), " but the _ms fields give ", value,
          " (transformers derives it from frame_length_ms / hop_length_ms)");
  return c;
}

Gemma4AudioConfig Gemma4AudioConfig::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EV_CHECK(in, "gemma4 audio config ", path, ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  EV_CHECK(!j.is_discarded(), "gemma4 audio config ", path, ": invalid JSON");
  return from_json(j, path);
}

// ---- extractor --------------------------------------------------------------------------------

Gemma4AudioFeatureExtractor::Gemma4AudioFeatureExtractor(const Gemma4AudioConfig& cfg)
    : cfg_(cfg),
      frame_length_(cfg.frame_length()),
      hop_length_(cfg.hop_length()),
      fft_length_(cfg.fft_length()),
      window_(periodic_hann(frame_length_)),
      fft_(std::make_shared<const FftPlan>(fft_length_)) {
  const int bins = fft_length_ / 2 + 1, mels = cfg.feature_size;
  mel_filters_ = htk_mel_filters(bins, mels, cfg.min_frequency, cfg.max_frequency, cfg.sampling_rate);
  // Each triangle covers a few bins; summing only those is exact (the rest are +0 terms).
  band_lo_.assign(mels, 0);
  band_hi_.assign(mels, 0);
  for (int m = 0; m < mels; ++m) {
    int lo = bins, hi = 0;
    for (int f = 0; f < bins; ++f)
      if (mel_filters_[size_t(f) * mels + m] != 0) lo = std::min(lo, f), hi = f + 1;
    band_lo_[m] = std::min(lo, hi);
    band_hi_[m] = hi;
  }
}

void Gemma4AudioFeatureExtractor::extract(const float* wave, const uint8_t* sample_mask, int64_t n,
                                          int64_t frames, float* out, uint8_t* frame_mask) const {
  const int fl = frame_length_, nfft = fft_length_, bins = nfft / 2 + 1, mels = cfg_.feature_size;
  const int64_t pad_left = fl / 2;  // semicausal: np.pad(waveform, (frame_length // 2, 0))
  const float scale = float(cfg_.input_scale_factor);
  const float pre = float(cfg_.preemphasis);        // float32 array * Python float -> float32
  const float pre_first = float(1.0 - cfg_.preemphasis);
  std::vector<float> raw(fl + 1), frame(fl);
  std::vector<double> mag(bins);
  FftBuffers fft(nfft);
  for (int64_t t = 0; t < frames; ++t) {
    // frames_to_process[t] = padded[t*hop : t*hop + frame_length + 1]
    for (int j = 0; j <= fl; ++j) {
      const int64_t s = t * hop_length_ + j - pad_left;
      float v = s >= 0 ? wave[s] : 0.0f;
      if (cfg_.input_scale_factor != 1.0) v = v * scale;  // applied before the left pad; 0 stays 0
      raw[j] = v;
    }
    if (cfg_.preemphasis > 0.0) {
      if (cfg_.preemphasis_htk_flavor) {
        frame[0] = raw[0] * pre_first;
        for (int j = 1; j < fl; ++j) frame[j] = raw[j] - pre * raw[j - 1];
      } else {
        for (int j = 0; j < fl; ++j) frame[j] = raw[j + 1] - pre * raw[j];
      }
    } else {
      std::copy(raw.begin(), raw.begin() + fl, frame.begin());
    }
    // frames * window in float32, then np.fft.rfft promotes to float64
    for (int j = 0; j < fl; ++j) fft.in[j] = double(frame[j] * window_[j]);
    std::fill(fft.in + fl, fft.in + nfft, 0.0);  // rfft(frames, n=fft_length) zero-pads
    fftw_execute_dft_r2c(fft_->plan, fft.in, fft.out);
    for (int k = 0; k < bins; ++k) mag[k] = std::hypot(fft.out[k][0], fft.out[k][1]);  // np.abs
    // mask: the window's last sample (padded index t*hop + frame_length) is real audio
    const int64_t last = t * hop_length_ + fl - pad_left;
    const bool valid = last >= 0 && last < n && sample_mask[last];
    frame_mask[t] = valid;
    float* row = out + t * mels;
    for (int m = 0; m < mels; ++m) {
      double acc = 0.0;  // magnitude_spec @ mel_filters, float64
      for (int k = band_lo_[m]; k < band_hi_[m]; ++k) acc += mag[k] * mel_filters_[size_t(k) * mels + m];
      double v = std::log(acc + cfg_.mel_floor);
      if (!cfg_.per_bin_mean.empty()) v = v - cfg_.per_bin_mean[m];
      if (!cfg_.per_bin_stddev.empty()) v = v / cfg_.per_bin_stddev[m];
      const float f = float(v);
      row[m] = valid ? f : f * 0.0f;  // speech * mask[..., None]
    }
  }
}

Gemma4AudioFeatures Gemma4AudioFeatureExtractor::operator()(const std::vector<std::span<const float>>& clips,
                                                            const Gemma4AudioCall& call) const {
  EV_CHECK(!clips.empty(), "gemma4 audio: no audio clips given");
  EV_CHECK(call.max_length > 0 && call.pad_to_multiple_of >= 0 && call.pad_to_multiple_of <= (1 << 20),
           "gemma4 audio: bad max_length / pad_to_multiple_of");
  auto round_up = [&](int64_t len) {
    const int64_t m = call.pad_to_multiple_of;
    return (m > 0 && len % m != 0) ? (len / m + 1) * m : len;
  };
  // SequenceFeatureExtractor._truncate: the limit is rounded up to the multiple first.
  const int64_t limit = call.truncation ? round_up(call.max_length) : INT64_MAX;
  std::vector<int64_t> lens;
  for (size_t b = 0; b < clips.size(); ++b) {
    EV_CHECK(!clips[b].empty(), "gemma4 audio: clip ", b, " has no samples");
    lens.push_back(std::min<int64_t>(int64_t(clips[b].size()), limit));
  }
  // padding="longest": the longest (truncated) clip, rounded up to the multiple.
  const int64_t padded = round_up(*std::max_element(lens.begin(), lens.end()));
  EV_CHECK(padded <= (int64_t(1) << 34), "gemma4 audio: ", padded, " samples is too long");

  const int64_t pad_left = frame_length_ / 2, win = frame_length_ + 1;
  const int64_t frames = padded + pad_left < win ? 0 : floor_div(padded + pad_left - win, hop_length_) + 1;

  Gemma4AudioFeatures r;
  r.batch = int64_t(clips.size());
  r.frames = frames;
  r.mels = cfg_.feature_size;
  r.features.assign(size_t(r.batch * frames * r.mels), 0.0f);
  r.mask.assign(size_t(r.batch * frames), 0);
  r.valid_frames.assign(size_t(r.batch), 0);
  std::vector<float> wave(padded);
  std::vector<uint8_t> smask(padded);
  for (int64_t b = 0; b < r.batch; ++b) {
    const int64_t len = lens[b], gap = padded - len;
    const int64_t at = cfg_.padding_side == "left" ? gap : 0;
    std::fill(wave.begin(), wave.end(), cfg_.padding_value);
    std::fill(smask.begin(), smask.end(), uint8_t(0));
    std::copy(clips[b].begin(), clips[b].begin() + len, wave.begin() + at);
    std::fill(smask.begin() + at, smask.begin() + at + len, uint8_t(1));
    extract(wave.data(), smask.data(), padded, frames, r.features.data() + b * frames * r.mels,
            r.mask.data() + b * frames);
    for (int64_t t = 0; t < frames; ++t) r.valid_frames[b] += r.mask[b * frames + t];
  }
  return r;
}

int64_t gemma4_audio_tokens_from_frames(int64_t mel_frames, int64_t audio_seq_length) {
  if (mel_frames <= 0) return 0;
  int64_t t = mel_frames;
  for (int i = 0; i < 2; ++i) t = floor_div(t + 2 - 3, 2) + 1;  // Conv2d k3 s2 p1, twice
  return std::min(t, audio_seq_length);
}

int64_t gemma4_audio_num_tokens(int64_t num_samples, const Gemma4AudioConfig& cfg, int64_t audio_seq_length) {
  const int64_t fl = cfg.frame_length();
  const int64_t frames = floor_div(num_samples + fl / 2 - (fl + 1), cfg.hop_length()) + 1;
  return gemma4_audio_tokens_from_frames(frames, audio_seq_length);
}

}  // namespace edgevl::media
