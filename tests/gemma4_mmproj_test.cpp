// Gemma 4 vision as a llama.cpp mmproj: the golden checkpoint's tower written in the converter's
// layout (names, shapes, keys, types) loads back into the same encoder and gives the same soft
// tokens as the HF folder (bit for bit at F32, within the type's rounding below), attached to a
// text GGUF through CausalLM::attach_mmproj; random E2B-like towers from init; the Q8_0
// attention option measured against F32.
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "models/gemma4/gemma4_mmproj.h"
#include "models/gemma4/vision_encoder.h"
#include "models/model.h"
#include "test_util.h"

namespace edgevl {
namespace {

using test::as_f32;
using test::golden_hf;
using test::golden_llamacpp;
using test::rel_error;

std::string tmp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("edgevl_mmproj_test_" + name)).string();
}

struct Images {
  std::vector<float> px;
  std::vector<int64_t> pos;
  int64_t n_images = 0, P = 0, V = 0;
  std::vector<float> golden;  // image_hidden_states
};

Images golden_images() {
  auto g = safetensors::File::open(golden_hf("gemma4") + "/golden.safetensors");
  Images im;
  const TensorRef& px = *g->find("inputs.pixel_values");
  im.n_images = px.shape[0];
  im.P = px.shape[1];
  im.V = px.shape[2];
  im.px = as_f32(px);
  const std::vector<float> pf = as_f32(*g->find("inputs.image_position_ids"));
  im.pos.assign(pf.begin(), pf.end());
  im.golden = as_f32(*g->find("image_hidden_states"));
  return im;
}

template <typename Encode>
std::vector<float> encode_all(const Images& im, Encode&& encode) {
  std::vector<float> all;
  for (int64_t i = 0; i < im.n_images; ++i) {
    Tensor out;
    encode(im.px.data() + i * im.P * im.V, im.pos.data() + i * im.P * 2, im.P, out);
    all.insert(all.end(), out.data(), out.data() + out.numel());
  }
  return all;
}

std::vector<float> hf_soft_tokens(const Images& im, Context& ctx) {
  auto model = load_model(golden_hf("gemma4"));
  return encode_all(im, [&](const float* p, const int64_t* q, int64_t n, Tensor& out) {
    model->encode_image(ctx, p, q, n, out);
  });
}

std::vector<float> mmproj_soft_tokens(const std::string& path, const Images& im, Context& ctx, int lowp = -1) {
  auto src = ModelSource::open(path);
  int64_t text_hidden = 0;
  Gemma4VisionConfig cfg = gemma4_vision_config_from_mmproj(src->gguf(), &text_hidden);
  Gemma4VisionEncoder enc(*src, cfg, text_hidden);
  if (lowp >= 0) enc.set_low_precision_attention(lowp != 0);
  return encode_all(im, [&](const float* p, const int64_t* q, int64_t n, Tensor& out) {
    enc.encode(ctx, p, q, n, out);
  });
}

TEST(Gemma4Mmproj, ConverterLayout) {
  const std::string f16 = tmp_path("f16.gguf");
  convert_gemma4_mmproj(golden_hf("gemma4"), f16, DType::F16, 1);
  auto f = gguf::File::open(f16);
  EXPECT_EQ(f->get_string("general.architecture"), "clip");
  EXPECT_EQ(f->get_string("general.type"), "mmproj");
  EXPECT_EQ(f->get_string("clip.vision.projector_type"), "gemma4v");
  EXPECT_EQ(f->get_bool("clip.has_vision_encoder"), true);
  EXPECT_EQ(f->get_int("clip.vision.projection_dim"), 64);
  EXPECT_EQ(f->get_int("clip.vision.embedding_length"), 32);
  EXPECT_EQ(f->get_int("clip.vision.block_count"), 2);
  EXPECT_EQ(f->get_int("clip.vision.patch_size"), 4);
  EXPECT_EQ(f->get_int("clip.vision.projector.scale_factor"), 2);  // pooling 2, not llama.cpp's default 3
  EXPECT_EQ(f->get_int("general.file_type"), 1);
  auto type_of = [&](const char* name) {
    const TensorRef* t = f->find_tensor(name);
    EXPECT_TRUE(t) << name;
    return t ? t->dtype : DType::F32;
  };
  EXPECT_EQ(type_of("v.patch_embd.weight"), DType::F16);
  EXPECT_EQ(f->find_tensor("v.patch_embd.weight")->shape, (std::vector<int64_t>{32, 3, 4, 4}));
  EXPECT_EQ(type_of("v.position_embd.weight"), DType::F32);
  EXPECT_EQ(f->find_tensor("v.position_embd.weight")->shape, (std::vector<int64_t>{2, 64, 32}));
  EXPECT_EQ(type_of("v.blk.1.attn_q.weight"), DType::F16);
  EXPECT_EQ(type_of("v.blk.1.ffn_down.weight"), DType::F16);
  EXPECT_EQ(type_of("v.blk.1.attn_q.input_min"), DType::F32);
  EXPECT_EQ(f->find_tensor("v.blk.1.attn_q.input_min")->shape, (std::vector<int64_t>{1}));
  for (const char* n : {"v.blk.0.ln1.weight", "v.blk.0.ln2.weight", "v.blk.0.attn_post_norm.weight",
                        "v.blk.0.ffn_post_norm.weight", "v.blk.0.attn_q_norm.weight", "v.blk.0.attn_k_norm.weight"})
    EXPECT_EQ(type_of(n), DType::F32) << n;
  EXPECT_EQ(type_of("mm.input_projection.weight"), DType::F16);
  // 2 + 2 layers x (7 linears x 5 + 6 norms) + projection.
  EXPECT_EQ(f->tensors().size(), 2u + 2 * (7 * 5 + 6) + 1);
  std::filesystem::remove(f16);
}

TEST(Gemma4Mmproj, SameSoftTokensAsHfFolder) {
  const Images im = golden_images();
  Context ctx(2);
  const std::vector<float> hf = hf_soft_tokens(im, ctx);
  ASSERT_LE(rel_error(hf, im.golden), 1e-4);
  struct Case {
    DType type;
    double tol;  // against the HF folder's soft tokens
  };
  for (Case c : {Case{DType::F32, 0.0}, Case{DType::F16, 2e-3}, Case{DType::BF16, 2e-2}, Case{DType::Q8_0, 5e-2}}) {
    const std::string path = tmp_path(std::string(dtype_name(c.type)) + ".gguf");
    convert_gemma4_mmproj(golden_hf("gemma4"), path, c.type, 1);
    // head_dim 16: the attention stays in float whatever the weights (Q8_0 needs whole blocks).
    const std::vector<float> mm = mmproj_soft_tokens(path, im, ctx);
    ASSERT_EQ(mm.size(), hf.size());
    const double err = rel_error(mm, hf);
    EXPECT_LE(err, c.tol) << dtype_name(c.type);
    std::printf("mmproj %s: soft tokens rel. error %.3g against the HF folder\n", dtype_name(c.type), err);
    std::filesystem::remove(path);
  }
}

TEST(Gemma4Mmproj, AttachToTextGguf) {
  const Images im = golden_images();
  const std::string path = tmp_path("attach.gguf");
  convert_gemma4_mmproj(golden_hf("gemma4"), path, DType::F32, 1);
  auto model = load_model(golden_llamacpp("gemma4_text") + "/gemma4_text-F32.gguf");
  EXPECT_FALSE(model->has_vision());
  model->attach_mmproj(path);
  ASSERT_TRUE(model->has_vision());
  Context ctx(2);
  const std::vector<float> soft = encode_all(im, [&](const float* p, const int64_t* q, int64_t n, Tensor& out) {
    model->encode_image(ctx, p, q, n, out);
  });
  EXPECT_LE(rel_error(soft, im.golden), 1e-4);
  // Not an mmproj; a projection that does not fit the text model.
  EXPECT_THROW(model->attach_mmproj(golden_llamacpp("gemma4_text") + "/gemma4_text-F32.gguf"), Error);
  std::filesystem::remove(path);
}

TEST(Gemma4Mmproj, RandomInitAndLowPrecisionAttention) {
  // A small on-device-like tower (clipped linears, pooling 3), random weights from init.
  const std::string cfg_path = tmp_path("config.json");
  {
    FILE* f = std::fopen(cfg_path.c_str(), "w");
    ASSERT_TRUE(f);
    std::fputs(R"({"model_type": "gemma4", "text_config": {"hidden_size": 96},
      "vision_config": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
      "num_attention_heads": 2, "head_dim": 64, "patch_size": 4, "pooling_kernel_size": 3,
      "position_embedding_size": 64, "use_clipped_linears": true}})",
               f);
    std::fclose(f);
  }
  const std::string path = tmp_path("init.gguf");
  init_gemma4_mmproj(load_hf_config(cfg_path), path, DType::F32, 7, 1);
  // A 12 x 9 patch grid, then padding to 117 patches.
  Images im;
  im.n_images = 1;
  im.V = 48;
  im.P = 117;
  im.px.resize(im.P * im.V);
  for (size_t i = 0; i < im.px.size(); ++i) im.px[i] = (float)((i * 2654435761u) % 1000) / 1000.0f;
  for (int64_t t = 0; t < im.P; ++t) {
    const bool real = t < 108;
    im.pos.push_back(real ? t % 12 : -1);
    im.pos.push_back(real ? t / 12 : -1);
  }
  Context ctx(2);
  const std::vector<float> f32 = mmproj_soft_tokens(path, im, ctx, 0);
  const std::vector<float> bf16 = mmproj_soft_tokens(path, im, ctx, 1);
  ASSERT_EQ(f32.size(), (size_t)12 * 96);
  const double err = rel_error(bf16, f32);
  std::printf("Q8_0 attention: soft tokens rel. error %.3g against F32\n", err);
  EXPECT_GT(err, 0.0);
  EXPECT_LE(err, 1e-2);
  std::filesystem::remove(path);
  std::filesystem::remove(cfg_path);
}

}  // namespace
}  // namespace edgevl
