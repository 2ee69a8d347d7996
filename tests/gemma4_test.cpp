// Gemma 4 as a multimodal model (../shared/golden/hf/gemma4, a tiny Gemma4ForConditionalGeneration):
// the vision tower's every golden tensor, then the whole model with image and audio soft tokens
// merged into the prompt (each LM hidden state and the logits), then greedy decoding from an
// image prompt with the placeholder ids suppressed. Relative error 1e-4 in float32 throughout.
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mmap.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "runtime/sampler.h"
#include "test_util.h"

namespace edgevl {
namespace {

using test::as_f32;
using test::as_ids;
using test::golden_hf;
using test::isas;
using test::rel_error;

struct Golden {
  std::unique_ptr<safetensors::File> file;
  const TensorRef& operator[](const std::string& name) const {
    const TensorRef* t = file->find(name);
    if (!t) throw std::runtime_error("golden has no " + name);
    return *t;
  }
};

Golden open_golden() { return {safetensors::File::open(golden_hf("gemma4") + "/golden.safetensors")}; }

// Collects tapped activations by name, concatenating calls (one per image) in order.
struct Taps {
  std::map<std::string, std::vector<float>> acts;
  ActivationTap fn() {
    return [this](std::string_view name, const float* d, int64_t rows, int64_t cols) {
      auto& v = acts[std::string(name)];
      v.insert(v.end(), d, d + rows * cols);
    };
  }
};

// Soft tokens of every image in pixel_values [N, P, V] / positions [N, P, 2], concatenated.
std::vector<float> encode_images(CausalLM& model, Context& ctx, const TensorRef& pixels, const TensorRef& positions,
                                 const ActivationTap& tap = {}) {
  const int64_t n_images = pixels.shape[0], P = pixels.shape[1], V = pixels.shape[2];
  const std::vector<float> px = as_f32(pixels);
  const std::vector<float> pos_f = as_f32(positions);
  const std::vector<int64_t> pos(pos_f.begin(), pos_f.end());
  std::vector<float> all;
  for (int64_t i = 0; i < n_images; ++i) {
    Tensor out;
    model.encode_image(ctx, px.data() + i * P * V, pos.data() + i * P * 2, P, out, tap);
    all.insert(all.end(), out.data(), out.data() + out.numel());
  }
  return all;
}

class Gemma4Vision : public ::testing::TestWithParam<std::string> {};

TEST_P(Gemma4Vision, TowerMatchesGolden) {
  Golden g = open_golden();
  auto model = load_model(golden_hf("gemma4"));
  ASSERT_TRUE(model->has_vision());
  Context ctx(2, GetParam());
  Taps taps;
  encode_images(*model, ctx, g["inputs.pixel_values"], g["inputs.image_position_ids"], taps.fn());
  int compared = 0;
  for (const TensorRef& t : g.file->tensors()) {
    if (t.name.rfind("vision.", 0) != 0) continue;
    ASSERT_TRUE(taps.acts.count(t.name)) << "no activation for " << t.name;
    EXPECT_LE(rel_error(taps.acts[t.name], as_f32(t)), 1e-4) << t.name << " on " << GetParam();
    ++compared;
  }
  EXPECT_EQ(compared, 5);
  EXPECT_LE(rel_error(taps.acts["vision.image_features"], as_f32(g["image_hidden_states"])), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Golden, Gemma4Vision, ::testing::ValuesIn(isas()),
                         [](const auto& info) { return info.param; });

TEST(Gemma4Vision, RejectsBadPatches) {
  auto model = load_model(golden_hf("gemma4"));
  Context ctx(1, "scalar");
  Tensor out;
  std::vector<float> px(5 * 48, 0.5f);
  std::vector<int64_t> pos(5 * 2, 0);
  // 5 patches cannot pool 2x2; a position past the table is refused.
  EXPECT_THROW(model->encode_image(ctx, px.data(), pos.data(), 5, out), Error);
  std::vector<int64_t> far(4 * 2, 0);
  far[0] = 1000;
  EXPECT_THROW(model->encode_image(ctx, px.data(), far.data(), 4, out), Error);
}

// Soft tokens of the first clip of input_features [1, T, bins] with its mask.
std::vector<float> encode_audio(CausalLM& model, Context& ctx, const TensorRef& features, const TensorRef& mask) {
  const std::vector<float> f = as_f32(features);
  const std::vector<float> m_f = as_f32(mask);
  const std::vector<uint8_t> m(m_f.begin(), m_f.end());
  Tensor out;
  model.encode_audio(ctx, f.data(), m.data(), features.shape[1], features.shape[2], out);
  return std::vector<float>(out.data(), out.data() + out.numel());
}

// A row's request: the image and audio placeholders take the next soft tokens of their kind.
struct MediaRow {
  std::vector<int32_t> positions;
  std::vector<float> embeds;
};
MediaRow place_soft_tokens(const std::vector<int32_t>& row, const MediaTokens& ids, int64_t hidden,
                           const std::vector<float>& image_soft, size_t& image_cursor,
                           const std::vector<float>& audio_soft, size_t& audio_cursor) {
  MediaRow r;
  for (size_t t = 0; t < row.size(); ++t) {
    const std::vector<float>* src = nullptr;
    size_t* cursor = nullptr;
    if (row[t] == ids.image) src = &image_soft, cursor = &image_cursor;
    if (row[t] == ids.audio) src = &audio_soft, cursor = &audio_cursor;
    if (!src) continue;
    EXPECT_LE((*cursor + 1) * hidden, src->size()) << "more placeholders than soft tokens";
    if ((*cursor + 1) * hidden > src->size()) break;
    r.positions.push_back((int32_t)t);
    r.embeds.insert(r.embeds.end(), src->begin() + *cursor * hidden, src->begin() + (*cursor + 1) * hidden);
    ++*cursor;
  }
  return r;
}

class Gemma4Multimodal : public ::testing::TestWithParam<std::string> {};

TEST_P(Gemma4Multimodal, HiddenStatesLogitsAndGreedyTokens) {
  Golden g = open_golden();
  auto model = load_model(golden_hf("gemma4"));
  ASSERT_TRUE(model->has_vision() && model->has_audio());
  model->match_hf_eager_attention(true);  // the goldens were made with eager attention
  Context ctx(2, GetParam());
  const MediaTokens ids = model->media_tokens();
  const int64_t D = model->info().hidden;
  const std::vector<float> image_soft = encode_images(*model, ctx, g["inputs.pixel_values"], g["inputs.image_position_ids"]);
  const std::vector<float> audio_soft = encode_audio(*model, ctx, g["inputs.input_features"], g["inputs.input_features_mask"]);
  EXPECT_LE(rel_error(image_soft, as_f32(g["image_hidden_states"])), 1e-4);
  EXPECT_LE(rel_error(audio_soft, as_f32(g["audio_hidden_states"])), 1e-4);

  const TensorRef& ids_t = g["inputs.input_ids"];
  const int64_t B = ids_t.shape[0], T = ids_t.shape[1];
  const std::vector<int32_t> all_ids = as_ids(ids_t);
  std::map<std::string, std::vector<float>> acts;
  size_t image_cursor = 0, audio_cursor = 0;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int32_t> row(all_ids.begin() + b * T, all_ids.begin() + (b + 1) * T);
    MediaRow media = place_soft_tokens(row, ids, D, image_soft, image_cursor, audio_soft, audio_cursor);
    auto store = [&](std::string_view name, const float* data, int64_t rows, int64_t cols) {
      auto& buf = acts[std::string(name)];
      if (buf.empty()) buf.assign(B * T * cols, 0.0f);
      std::copy(data, data + rows * cols, buf.begin() + b * T * cols);
    };
    nn::KvCache cache = model->new_cache(T);
    ForwardRequest req;
    req.tokens = row;
    req.all_logits = true;
    req.tap = store;
    req.embed_positions = media.positions;
    req.embeds = media.embeds.data();
    Tensor logits;
    model->forward(ctx, cache, req, logits);
    store("logits", logits.data(), logits.dim(0), logits.dim(1));
  }
  EXPECT_EQ(image_cursor * D, image_soft.size()) << "every image soft token placed";
  EXPECT_EQ(audio_cursor * D, audio_soft.size()) << "every audio soft token placed";
  int compared = 0;
  for (const TensorRef& t : g.file->tensors()) {
    if (t.name != "logits" && t.name.rfind("hidden_states.", 0) != 0) continue;
    EXPECT_LE(rel_error(acts[t.name], as_f32(t)), 1e-4) << t.name << " on " << GetParam();
    ++compared;
  }
  EXPECT_EQ(compared, model->info().n_layers + 2);

  // Greedy decoding from an image prompt, the placeholder ids suppressed as in the golden run.
  const std::vector<float> gen_soft =
      encode_images(*model, ctx, g["gen.inputs.pixel_values"], g["gen.inputs.image_position_ids"]);
  const auto manifest = nlohmann::json::parse(read_text_file(golden_hf("gemma4") + "/golden.json"));
  const std::vector<int32_t> suppress = manifest.at("generation").at("suppress_tokens").get<std::vector<int32_t>>();
  std::vector<int32_t> step = as_ids(g["gen.inputs.input_ids"]);
  size_t gi = 0, ga = 0;
  MediaRow media = place_soft_tokens(step, ids, D, gen_soft, gi, {}, ga);
  const std::vector<int32_t> expected = as_ids(g["gen.new_tokens"]);
  nn::KvCache cache = model->new_cache((int64_t)(step.size() + expected.size()));
  std::vector<int32_t> got;
  Tensor logits;
  for (size_t i = 0; i < expected.size(); ++i) {
    ForwardRequest req;
    req.tokens = step;
    if (i == 0) {
      req.embed_positions = media.positions;
      req.embeds = media.embeds.data();
    }
    model->forward(ctx, cache, req, logits);
    got.push_back(argmax({logits.row(logits.dim(0) - 1), (size_t)logits.dim(1)}, suppress));
    step = {got.back()};
  }
  EXPECT_EQ(got, expected) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Golden, Gemma4Multimodal, ::testing::ValuesIn(isas()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace edgevl
