// media/ audio: decoding (media/audio.h) and the Gemma 4 feature extractor (media/gemma4_audio.h).
// - goldens: every run of ../shared/golden/hf/processors/gemma4_audio (transformers'
//   Gemma4AudioFeatureExtractor on the real wav files): waveforms bit-exact, input_features within
//   1e-5 absolute, masks, valid frames and soft-token counts exact;
// - truncation, --no-truncation, left padding, token-count arithmetic;
// - resampling and stereo mixing on files written here with libsndfile (WAV, FLAC, Ogg);
// - bad input: missing, empty, truncated and corrupt files, bad configs, empty clips -> Error.
#include <sndfile.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <random>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/safetensors.h"
#include "media/audio.h"
#include "media/gemma4_audio.h"
#include "test_util.h"

namespace edgevl {
namespace {

using test::TempDir;
using test::read_bytes;

namespace fs = std::filesystem;
using json = nlohmann::json;
using media::Gemma4AudioCall;
using media::Gemma4AudioConfig;
using media::Gemma4AudioFeatureExtractor;

std::string golden_dir() { return test::golden_hf("processors/gemma4_audio"); }

json read_json(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

void write_bytes(const std::string& path, const uint8_t* data, size_t n) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), std::streamsize(n));
}

// A golden tensor as float, decoding the processor goldens' palette encoding (NAME.codes indexes
// NAME.palette) when the tensor is stored that way.
std::vector<float> golden_floats(const safetensors::File& f, const std::string& name) {
  if (const TensorRef* t = f.find(name)) {
    EXPECT_EQ(t->dtype, DType::F32) << name;
    std::vector<float> v(size_t(t->numel()));
    std::memcpy(v.data(), t->data, v.size() * sizeof(float));
    return v;
  }
  const TensorRef* codes = f.find(name + ".codes");
  const TensorRef* palette = f.find(name + ".palette");
  EXPECT_TRUE(codes && palette) << "golden tensor " << name << " missing";
  if (!codes || !palette) return {};
  const float* pal = reinterpret_cast<const float*>(palette->data);
  std::vector<float> v(size_t(codes->numel()));
  for (size_t i = 0; i < v.size(); ++i) {
    int64_t c = codes->dtype == DType::U8 ? codes->data[i]
                                          : int64_t(reinterpret_cast<const int16_t*>(codes->data)[i]);
    v[i] = pal[c];
  }
  return v;
}
std::vector<uint8_t> golden_bools(const safetensors::File& f, const std::string& name) {
  const TensorRef* t = f.find(name);
  EXPECT_TRUE(t) << name;
  if (!t) return {};
  EXPECT_EQ(t->dtype, DType::BOOL);
  return std::vector<uint8_t>(t->data, t->data + t->numel());
}

// ---------------------------------------------------------------------------------------------
// goldens

TEST(AudioGolden, WaveformsAreS16Over32768) {
  auto f = safetensors::File::open(golden_dir() + "/golden.safetensors");
  for (const std::string stem : {"speech_a", "speech_b"}) {
    media::Audio a = media::decode_audio_file(golden_dir() + "/media/" + stem + ".wav");
    EXPECT_EQ(a.sample_rate, 16000);
    EXPECT_EQ(a.channels_in_file, 1);
    const std::vector<float> ref = golden_floats(*f, "input." + stem + ".waveform");
    ASSERT_EQ(a.samples.size(), ref.size()) << stem;
    size_t differ = 0;
    for (size_t i = 0; i < ref.size(); ++i) differ += a.samples[i] != ref[i];
    EXPECT_EQ(differ, 0u) << stem << ": decoded samples differ from the reference's s16 / 32768";
  }
}

TEST(AudioGolden, EveryRunMatches) {
  const json g = read_json(golden_dir() + "/golden.json");
  auto st = safetensors::File::open(golden_dir() + "/golden.safetensors");
  ASSERT_FALSE(g["runs"].empty());
  for (const auto& [run, r] : g["runs"].items()) {
    SCOPED_TRACE(run);
    ASSERT_TRUE(r["call_kwargs"].empty()) << "call kwargs not handled by this test: " << r["call_kwargs"].dump();
    ASSERT_TRUE(r["constructor_kwargs"].empty());
    const Gemma4AudioConfig cfg = Gemma4AudioConfig::from_file(golden_dir() + "/" + r["config_file"].get<std::string>());
    Gemma4AudioFeatureExtractor fe(cfg);
    std::vector<media::Audio> audio;
    for (const auto& name : r["audio"]) audio.push_back(media::load_audio(golden_dir() + "/media/" + name.get<std::string>(), 16000));
    std::vector<std::span<const float>> clips;
    for (size_t i = 0; i < audio.size(); ++i) {
      clips.emplace_back(audio[i].samples);
      EXPECT_EQ(int64_t(audio[i].samples.size()), r["num_samples"][i].get<int64_t>());
    }
    const auto out = fe(clips);

    const auto shape = r["outputs"]["input_features"]["shape"].get<std::vector<int64_t>>();
    ASSERT_EQ(shape, (std::vector<int64_t>{out.batch, out.frames, out.mels}));
    const std::vector<float> ref = golden_floats(*st, run + ".input_features");
    ASSERT_EQ(ref.size(), out.features.size());
    double max_abs = 0, max_ref = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      max_abs = std::max(max_abs, double(std::fabs(out.features[i] - ref[i])));
      max_ref = std::max(max_ref, double(std::fabs(ref[i])));
    }
    std::printf("[ gemma4_audio ] %s: input_features max abs err %.3g (rel to max|ref| %.3g)\n", run.c_str(),
                max_abs, max_abs / max_ref);
    EXPECT_LE(max_abs, 1e-5);

    EXPECT_EQ(out.mask, golden_bools(*st, run + ".input_features_mask"));
    const json& tc = r["token_counts"];
    EXPECT_EQ(out.valid_frames, tc["valid_frames (mask.sum)"].get<std::vector<int64_t>>());
    for (const auto& [key, counts] : tc.items()) {
      if (key.rfind("audio_tokens", 0) != 0) continue;
      std::vector<int64_t> mine;
      for (size_t i = 0; i < clips.size(); ++i)
        mine.push_back(key.find("_compute_audio_num_tokens") != std::string::npos
                           ? media::gemma4_audio_num_tokens(int64_t(clips[i].size()), cfg)
                           : media::gemma4_audio_tokens_from_frames(out.valid_frames[i]));
      EXPECT_EQ(mine, counts.get<std::vector<int64_t>>()) << key;
    }
  }
}

TEST(AudioGolden, ConfigFileEqualsClassDefaults) {
  // The goldens' configs are the class defaults; an empty object must give the same extractor.
  const Gemma4AudioConfig a = Gemma4AudioConfig::from_file(golden_dir() + "/configs/default.numpy.json");
  const Gemma4AudioConfig b = Gemma4AudioConfig::from_json(json::object(), "{}");
  EXPECT_EQ(a.frame_length(), 320);
  EXPECT_EQ(a.hop_length(), 160);
  EXPECT_EQ(a.fft_length(), 512);
  Gemma4AudioFeatureExtractor fa(a), fb(b);
  EXPECT_EQ(fa.mel_filters(), fb.mel_filters());
  EXPECT_EQ(fa.mel_filters().size(), 257u * 128u);
}

// ---------------------------------------------------------------------------------------------
// extractor behaviour beyond the goldens

std::vector<float> tone(int64_t n, double hz, int rate, float amp = 0.3f) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = amp * float(std::sin(2 * std::numbers::pi * hz * double(i) / rate));
  return v;
}

TEST(Gemma4Audio, TokenCountArithmetic) {
  // frames = (n + 160 - 321) // 160 + 1; two (t - 1) // 2 + 1 convs; cap 750.
  EXPECT_EQ(media::gemma4_audio_num_tokens(0), 0);
  EXPECT_EQ(media::gemma4_audio_num_tokens(160), 0);
  EXPECT_EQ(media::gemma4_audio_num_tokens(161), 1);
  EXPECT_EQ(media::gemma4_audio_num_tokens(16000), 25);  // 100 frames -> 50 -> 25: 40 ms a token
  EXPECT_EQ(media::gemma4_audio_num_tokens(480000), 750);
  EXPECT_EQ(media::gemma4_audio_num_tokens(640000), 750);  // capped
  EXPECT_EQ(media::gemma4_audio_num_tokens(640000, {}, 100000), 1000);
  for (int64_t n : {161, 321, 480, 481, 12345, 92020}) {
    const int64_t frames = (n + 160 - 321) / 160 + 1;
    EXPECT_EQ(media::gemma4_audio_num_tokens(n), media::gemma4_audio_tokens_from_frames(frames)) << n;
  }
}

TEST(Gemma4Audio, TruncationAndNoTruncation) {
  Gemma4AudioFeatureExtractor fe;
  const std::vector<float> long_clip = tone(35 * 16000, 440, 16000);
  const std::vector<std::span<const float>> clips{long_clip};
  const auto cut = fe(clips);  // default: truncated to 480000 samples
  const int64_t frames_30s = (480000 + 160 - 321) / 160 + 1;  // 2999
  EXPECT_EQ(cut.frames, frames_30s);
  EXPECT_EQ(cut.valid_frames[0], frames_30s);
  EXPECT_EQ(media::gemma4_audio_tokens_from_frames(cut.valid_frames[0]), 750);
  // The same as cutting the clip by hand.
  const std::vector<std::span<const float>> by_hand{std::span<const float>(long_clip).first(480000)};
  EXPECT_EQ(fe(by_hand).features, cut.features);

  Gemma4AudioCall keep;
  keep.truncation = false;  // CLI --no-truncation
  const auto full = fe(clips, keep);
  const int64_t padded = (560000 + 127) / 128 * 128;
  EXPECT_EQ(full.frames, (padded + 160 - 321) / 160 + 1);
  EXPECT_EQ(full.valid_frames[0], (560000 + 160 - 321) / 160 + 1);
  // Frames before the cut agree.
  for (size_t i = 0; i < size_t(frames_30s * 128); ++i) ASSERT_EQ(full.features[i], cut.features[i]) << i;
}

TEST(Gemma4Audio, BatchPaddingSides) {
  const std::vector<float> a = tone(5000, 300, 16000), b = tone(2000, 900, 16000);
  Gemma4AudioFeatureExtractor right;
  const auto r = right({a, b});
  EXPECT_EQ(r.frames, (5120 + 160 - 321) / 160 + 1);  // 5000 padded to a multiple of 128
  EXPECT_EQ(r.valid_frames, (std::vector<int64_t>{(5000 + 160 - 321) / 160 + 1, (2000 + 160 - 321) / 160 + 1}));
  // Padded frames are zero; clip b alone gives the same valid frames.
  const auto b_alone = right({b});
  for (int64_t t = 0; t < r.frames; ++t)
    for (int64_t m = 0; m < r.mels; ++m) {
      const float v = r.features[size_t((r.frames + t) * r.mels + m)];
      if (t < r.valid_frames[1])
        ASSERT_EQ(v, b_alone.features[size_t(t * r.mels + m)]);
      else
        ASSERT_EQ(v, 0.0f);
    }

  Gemma4AudioConfig cfg;
  cfg.padding_side = "left";
  Gemma4AudioFeatureExtractor left(cfg);
  const auto l = left({a, b});
  // Left padding: b's samples end where the batch ends, so its valid frames are the last ones
  // whose window ends on a real sample.
  EXPECT_EQ(l.mask[size_t(l.frames)], 0);
  EXPECT_EQ(l.mask[size_t(2 * l.frames - 1)], 1);
}

TEST(Gemma4Audio, ThirtySecondsIsFast) {
  Gemma4AudioFeatureExtractor fe;
  const std::vector<float> clip = tone(480000, 1000, 16000);
  fe({clip});  // warm up
  double best = 1e9;
  for (int i = 0; i < 3; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto out = fe({clip});
    best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    ASSERT_EQ(out.frames, 2999);
  }
  std::printf("[ gemma4_audio ] 30 s clip: %.1f ms\n", best);
  EXPECT_LT(best, 200.0);  // target is well under 50 ms; the bound leaves room for a busy machine
}

TEST(Gemma4Audio, BadConfigsAndInputs) {
  auto bad = [](const json& j) { EXPECT_THROW(Gemma4AudioConfig::from_json(j, "test.json"), Error) << j.dump(); };
  bad(json::array());
  bad({{"feature_size", "128"}});
  bad({{"feature_size", 0}});
  bad({{"feature_size", 12.5}});
  bad({{"sampling_rate", -16000}});
  bad({{"padding_side", "middle"}});
  bad({{"fft_overdrive", 1}});
  bad({{"dither", 0.1}});
  bad({{"mel_floor", 0}});
  bad({{"min_frequency", 9000.0}});
  bad({{"per_bin_mean", {1.0, 2.0}}});
  bad({{"per_bin_stddev", json::array({"x"})}});
  bad({{"frame_length", 400}});  // transformers would silently use 320
  bad({{"feature_extractor_type", "WhisperFeatureExtractor"}});
  TempDir dir;
  const std::string p = dir.file("preprocessor_config.json");
  write_bytes(p, reinterpret_cast<const uint8_t*>("{\"feature_size\": 1"), 18);
  EXPECT_THROW(Gemma4AudioConfig::from_file(p), Error);
  EXPECT_THROW(Gemma4AudioConfig::from_file(dir.file("missing.json")), Error);
  try {
    Gemma4AudioConfig::from_json({{"feature_size", "128"}}, "cfg.json");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cfg.json"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
  }
  // A processor_config.json with the extractor nested under "feature_extractor" is accepted.
  EXPECT_EQ(Gemma4AudioConfig::from_json({{"feature_extractor", {{"feature_size", 64}}}}, "p").feature_size, 64);

  Gemma4AudioFeatureExtractor fe;
  EXPECT_THROW(fe({}), Error);
  const std::vector<float> empty;
  EXPECT_THROW(fe({empty}), Error);
  const std::vector<float> short_clip(100, 0.1f);  // shorter than one window: no frames, no tokens
  const auto out = fe({short_clip});
  EXPECT_EQ(out.frames, 0);
  EXPECT_EQ(media::gemma4_audio_num_tokens(100), 0);
}

// ---------------------------------------------------------------------------------------------
// decoding and resampling on files written here

// Writes interleaved float frames with libsndfile; false when this libsndfile cannot write `format`.
bool write_sound(const std::string& path, int format, int rate, int channels, const std::vector<float>& frames) {
  SF_INFO info{};
  info.samplerate = rate;
  info.channels = channels;
  info.format = format;
  if (!sf_format_check(&info)) return false;
  SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
  if (!f) return false;
  const sf_count_t n = sf_count_t(frames.size()) / channels;
  const bool ok = sf_writef_float(f, frames.data(), n) == n;
  sf_close(f);
  return ok;
}

// Frequency of a sine by counting upward zero crossings (interpolated) over the middle of the clip.
double frequency(const std::vector<float>& x, int rate) {
  std::vector<double> cross;
  for (size_t i = x.size() / 10; i + 1 < x.size() * 9 / 10; ++i)
    if (x[i] < 0 && x[i + 1] >= 0) cross.push_back(double(i) + x[i] / double(x[i] - x[i + 1]));
  if (cross.size() < 2) return 0;
  return rate * double(cross.size() - 1) / (cross.back() - cross.front());
}
float peak(const std::vector<float>& x) {
  float p = 0;
  for (size_t i = x.size() / 10; i < x.size() * 9 / 10; ++i) p = std::max(p, std::fabs(x[i]));
  return p;
}

TEST(AudioDecode, StereoResampledTo16k) {
  TempDir dir;
  const int rate = 44100;
  const double hz = 1000;
  std::vector<float> stereo;
  for (int i = 0; i < rate * 2; ++i) {  // 2 s: left at 0.5, right at 0.25 -> mono 0.375
    const float s = float(std::sin(2 * std::numbers::pi * hz * i / rate));
    stereo.push_back(0.5f * s);
    stereo.push_back(0.25f * s);
  }
  struct Fmt {
    const char* name;
    int format;
    double amp_tol;
  };
  const Fmt fmts[] = {{"a.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 1e-3},
                      {"a.flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 1e-3},
                      {"a.ogg", SF_FORMAT_OGG | SF_FORMAT_VORBIS, 0.05},
                      {"a.mp3", SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III, 0.05}};
  for (const Fmt& f : fmts) {
    SCOPED_TRACE(f.name);
    const std::string path = dir.file(f.name);
    if (!write_sound(path, f.format, rate, 2, stereo)) {
      std::printf("[ audio ] this libsndfile cannot write %s; decode of it not checked\n", f.name);
      continue;
    }
    const media::Audio raw = media::decode_audio_file(path);
    EXPECT_EQ(raw.sample_rate, rate);
    EXPECT_EQ(raw.channels_in_file, 2);
    EXPECT_NEAR(peak(raw.samples), 0.375, f.amp_tol);

    const media::Audio a = media::load_audio(path, 16000);
    EXPECT_EQ(a.sample_rate, 16000);
    // Length scales by 16000/44100 (lossy codecs add a little encoder delay / padding).
    EXPECT_NEAR(double(a.samples.size()), raw.samples.size() * 16000.0 / rate, 0.02 * 32000);
    EXPECT_NEAR(frequency(a.samples, 16000), hz, 1.0);
    EXPECT_NEAR(peak(a.samples), 0.375, f.amp_tol + 0.01);
  }
  // Resampling alone keeps a tone below the new Nyquist, and leaves equal rates untouched.
  const std::vector<float> t = tone(48000, 3000, 48000);
  const std::vector<float> r = media::resample_audio(t, 48000, 16000);
  EXPECT_EQ(r.size(), 16000u);
  EXPECT_NEAR(frequency(r, 16000), 3000, 2.0);
  EXPECT_EQ(media::resample_audio(t, 16000, 16000), t);
}

TEST(AudioDecode, BadFiles) {
  TempDir dir;
  const std::string good = golden_dir() + "/media/speech_b.wav";
  const std::vector<uint8_t> bytes = read_bytes(good);
  ASSERT_GT(bytes.size(), 1000u);
  auto expect_error = [&](const std::string& path, const char* what) {
    try {
      media::decode_audio_file(path);
      ADD_FAILURE() << what << ": no error";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(path), std::string::npos) << what << ": " << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << what << ": " << msg;
    }
  };
  expect_error(dir.file("missing.wav"), "missing file");
  expect_error(dir.str(), "a directory");

  const std::string empty = dir.file("empty.wav");
  write_bytes(empty, bytes.data(), 0);
  expect_error(empty, "empty file");

  const std::string header_only = dir.file("header_only.wav");
  write_bytes(header_only, bytes.data(), 30);
  expect_error(header_only, "cut inside the header");

  const std::string cut = dir.file("cut.wav");
  write_bytes(cut, bytes.data(), bytes.size() / 2);
  expect_error(cut, "cut inside the data");

  std::mt19937 rng(7);
  std::vector<uint8_t> noise(4096);
  for (auto& b : noise) b = uint8_t(rng());
  const std::string junk = dir.file("junk.wav");
  write_bytes(junk, noise.data(), noise.size());
  expect_error(junk, "random bytes");

  std::vector<uint8_t> bad_fmt = bytes;  // format tag 0x7777 in the fmt chunk
  bad_fmt[20] = 0x77;
  bad_fmt[21] = 0x77;
  const std::string unsupported = dir.file("unsupported.wav");
  write_bytes(unsupported, bad_fmt.data(), bad_fmt.size());
  expect_error(unsupported, "unsupported encoding");

  const std::string zero = dir.file("zero.wav");
  ASSERT_TRUE(write_sound(zero, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, 1, {}));
  expect_error(zero, "no samples");

  // Duration and size bounds hold before decoding.
  media::AudioLimits tight;
  tight.max_seconds = 1.0;
  EXPECT_THROW(media::decode_audio_file(good, tight), Error);
  tight = {};
  tight.max_file_bytes = 100;
  EXPECT_THROW(media::decode_audio_file(good, tight), Error);

  // The same bytes from memory decode identically; junk in memory is an error too.
  const media::Audio from_mem = media::decode_audio_memory(bytes.data(), bytes.size(), "upload.wav");
  EXPECT_EQ(from_mem.samples, media::decode_audio_file(good).samples);
  EXPECT_THROW(media::decode_audio_memory(noise.data(), noise.size(), "upload.wav"), Error);
  EXPECT_THROW(media::decode_audio_memory(bytes.data(), 0, "upload.wav"), Error);

  // Mutated headers and cut lengths either decode or raise Error; nothing else escapes.
  for (int i = 0; i < 300; ++i) {
    std::vector<uint8_t> m(bytes.begin(), bytes.begin() + std::min<size_t>(bytes.size(), 64 + rng() % 4096));
    for (int k = 0; k < 1 + int(rng() % 4); ++k) m[rng() % std::min<size_t>(m.size(), 64)] = uint8_t(rng());
    try {
      const media::Audio a = media::decode_audio_memory(m.data(), m.size(), "mutant.wav");
      EXPECT_FALSE(a.samples.empty());
    } catch (const Error&) {
    }
  }
}

}  // namespace
}  // namespace edgevl
