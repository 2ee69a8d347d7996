// Gemma 4 audio tower (models/gemma4/audio_encoder.*) against the HF transformers goldens of the
// tiny Gemma4ForConditionalGeneration checkpoint (../shared/golden/hf/gemma4): every audio.*
// tensor and audio_hidden_states within relative error 1e-4 in float32 on every kernel set this
// CPU runs, the output mask exactly; plus masking consistency and bad-input errors.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "models/gemma4/audio_encoder.h"
#include "models/source.h"
#include "test_util.h"

namespace edgevl {
namespace {

using test::golden_hf;
using test::isas;
using test::rel_error;

std::vector<float> f32(const TensorRef& t) {
  EXPECT_EQ(t.dtype, DType::F32) << t.name;
  std::vector<float> v(t.numel());
  std::memcpy(v.data(), t.data, v.size() * sizeof(float));
  return v;
}

std::vector<uint8_t> bools(const TensorRef& t) {
  EXPECT_EQ(t.dtype, DType::BOOL) << t.name;
  return std::vector<uint8_t>(t.data, t.data + t.numel());
}

struct Loaded {
  std::unique_ptr<ModelSource> src;
  std::unique_ptr<Gemma4AudioEncoder> enc;
};

// `hf_eager_mask`: reproduce the mask of HF's eager attention, which the goldens were made with
// (see Gemma4AudioConfig::hf_eager_mask).
Loaded load(const std::string& dir, bool hf_eager_mask) {
  Loaded l;
  l.src = ModelSource::open(dir);
  const HfConfig& hf = l.src->hf();
  Gemma4AudioConfig cfg = gemma4_audio_config_from_hf(hf.sub("audio_config"));
  cfg.hf_eager_mask = hf_eager_mask;
  l.enc = std::make_unique<Gemma4AudioEncoder>(*l.src, cfg, hf.sub("text_config").require_int("hidden_size"));
  return l;
}

class AudioGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(AudioGolden, EveryAudioTensorMatchesHf) {
  const std::string isa = GetParam();
  const std::string dir = golden_hf("gemma4");
  auto golden = safetensors::File::open(dir + "/golden.safetensors");
  Loaded m = load(dir, /*hf_eager_mask=*/true);
  Context ctx(2, isa);

  const TensorRef* feats_t = golden->find("inputs.input_features");
  const TensorRef* mask_t = golden->find("inputs.input_features_mask");
  ASSERT_TRUE(feats_t && mask_t);
  ASSERT_EQ(feats_t->shape.size(), 3u);
  ASSERT_EQ(feats_t->shape[0], 1) << "one clip expected";
  const int64_t Tf = feats_t->shape[1], M = feats_t->shape[2];
  ASSERT_EQ(M, m.enc->config().n_mel);
  Tensor feats({Tf, M});
  feats.vec() = f32(*feats_t);
  const std::vector<uint8_t> mask = bools(*mask_t);

  std::map<std::string, std::vector<float>> acts;
  auto tap = [&](std::string_view name, const float* data, int64_t rows, int64_t cols) {
    acts[std::string(name)].assign(data, data + rows * cols);
  };
  Tensor out;
  const int64_t n = m.enc->encode(ctx, feats, mask, out, tap);

  int compared = 0;
  for (const TensorRef& g : golden->tensors()) {
    if (g.name.rfind("audio.", 0) != 0 || g.name == "audio.attention_mask") continue;
    ASSERT_TRUE(acts.count(g.name)) << "no activation computed for golden " << g.name;
    const double err = rel_error(acts[g.name], f32(g));
    std::printf("  [%s] %-26s rel error %.3g\n", isa.c_str(), g.name.c_str(), err);
    EXPECT_LE(err, 1e-4) << isa << " " << g.name;
    ++compared;
  }
  // hidden_states.00 .. .NN, last_hidden_state, audio_features.
  EXPECT_EQ(compared, m.enc->config().n_layers + 3);

  const TensorRef* om_t = golden->find("audio.attention_mask");
  ASSERT_NE(om_t, nullptr);
  EXPECT_EQ(gemma4_audio_output_mask(mask.data(), Tf), bools(*om_t));

  const TensorRef* ahs = golden->find("audio_hidden_states");
  ASSERT_NE(ahs, nullptr);
  ASSERT_EQ(n, ahs->shape[0]);
  ASSERT_EQ(out.dim(1), ahs->shape[1]);
  const double err = rel_error(out.vec(), f32(*ahs));
  std::printf("  [%s] %-26s rel error %.3g\n", isa.c_str(), "audio_hidden_states", err);
  EXPECT_LE(err, 1e-4) << isa << " audio_hidden_states";
}

INSTANTIATE_TEST_SUITE_P(Gemma4, AudioGolden, ::testing::ValuesIn(isas()),
                         [](const auto& info) { return info.param; });

TEST(Gemma4Audio, SoftTokenCount) {
  EXPECT_EQ(gemma4_audio_output_frames(0), 0);
  EXPECT_EQ(gemma4_audio_output_frames(1), 1);
  EXPECT_EQ(gemma4_audio_output_frames(4), 1);
  EXPECT_EQ(gemma4_audio_output_frames(5), 2);
  EXPECT_EQ(gemma4_audio_output_frames(48), 12);
  EXPECT_EQ(gemma4_audio_output_frames(3000), 750);  // 30 s at 10 ms hops
  const std::vector<uint8_t> mask = {1, 1, 1, 1, 1, 1, 0, 0, 0};
  EXPECT_EQ(gemma4_audio_output_mask(mask.data(), 9), (std::vector<uint8_t>{1, 1, 0}));
}

// A clip padded past its end (mask 0, garbage features) must give the valid frames the tower
// gives the clip alone: padded frames are zeroed before each conv, masked as keys, and only ever
// follow the valid ones (the light conv is causal).
TEST(Gemma4Audio, PaddedFramesDoNotChangeValidOutputs) {
  Loaded m = load(golden_hf("gemma4"), false);
  Context ctx(2);
  const int64_t M = m.enc->config().n_mel, L = 37, Tf = 61;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  Tensor padded({Tf, M});
  for (float& v : padded.vec()) v = nd(rng) * 3.0f;
  std::vector<uint8_t> mask(Tf, 0);
  for (int64_t t = 0; t < L; ++t) mask[t] = 1;
  Tensor alone({L, M});
  std::memcpy(alone.data(), padded.data(), L * M * sizeof(float));

  Tensor out_padded, out_alone;
  const int64_t n = m.enc->encode(ctx, padded, mask, out_padded);
  const int64_t n_alone = m.enc->encode(ctx, alone, {}, out_alone);
  EXPECT_EQ(n, (L + 3) / 4);
  ASSERT_EQ(n, n_alone);
  for (float v : out_padded.vec()) ASSERT_TRUE(std::isfinite(v));
  EXPECT_LE(rel_error(out_padded.vec(), out_alone.vec()), 1e-5);

  // Masking a frame in the middle changes the result (the mask is not ignored).
  std::vector<uint8_t> holey(L, 1);
  holey[12] = holey[13] = holey[14] = holey[15] = 0;
  Tensor out_holey;
  EXPECT_EQ(m.enc->encode(ctx, alone, holey, out_holey), n - 1);
}

TEST(Gemma4Audio, BadInputIsAnError) {
  Loaded m = load(golden_hf("gemma4"), false);
  Context ctx(1);
  const int64_t M = m.enc->config().n_mel;
  Tensor out;
  EXPECT_THROW(m.enc->encode(ctx, Tensor({8, M + 1}), {}, out), Error);
  EXPECT_THROW(m.enc->encode(ctx, Tensor({8, M}), std::vector<uint8_t>(7, 1), out), Error);
  EXPECT_THROW(m.enc->encode(ctx, Tensor({0, M}), {}, out), Error);
  EXPECT_THROW(m.enc->encode(ctx, Tensor({8 * M}), {}, out), Error);
  EXPECT_NO_THROW(m.enc->encode(ctx, Tensor({8, M}), std::vector<uint8_t>(8, 1), out));

  // A text hidden size the projector's weight does not have.
  EXPECT_THROW(Gemma4AudioEncoder(*m.src, m.enc->config(), 65), Error);

  auto cfg = [](const std::string& json) { return gemma4_audio_config_from_hf(parse_hf_config(json, "test")); };
  EXPECT_NO_THROW(cfg("{}"));
  EXPECT_THROW(cfg(R"({"hidden_size": 30, "num_attention_heads": 4})"), Error);
  EXPECT_THROW(cfg(R"({"num_attention_heads": 0})"), Error);
  EXPECT_THROW(cfg(R"({"subsampling_conv_channels": [30, 8]})"), Error);
  EXPECT_THROW(cfg(R"({"subsampling_conv_channels": [32]})"), Error);
  EXPECT_THROW(cfg(R"({"attention_chunk_size": 0})"), Error);
  EXPECT_THROW(cfg(R"({"attention_context_left": 0})"), Error);
  EXPECT_THROW(cfg(R"({"attention_logit_cap": 0})"), Error);
  EXPECT_THROW(cfg(R"({"hidden_act": "tanhshrink"})"), Error);
  EXPECT_THROW(cfg(R"({"conv_kernel_size": 0})"), Error);
}

}  // namespace
}  // namespace edgevl
