// Gemma 4 towers as a llama.cpp mmproj: the golden checkpoint's vision and audio towers written in
// the converter's layout (names, shapes, keys, types) load back into the same encoders and give the
// same soft tokens as the HF folder (bit for bit at F32, within the type's rounding below),
// attached to a text GGUF through CausalLM::attach_mmproj; malformed audio tensors are refused
// with a message naming them; random E2B-like towers from init; the Q8_0 attention option
// measured against F32.
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "models/gemma4/audio_encoder.h"
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

// Files in this process's own temporary folder (removed at exit).
std::string tmp_path(const std::string& name) {
  static test::TempDir dir;
  return dir.file(name);
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
  // Vision: 2 + 2 layers x (7 linears x 5 + 6 norms) + projection; audio: 8 + 2 layers x
  // (10 linears x 5 + 12 others).
  EXPECT_EQ(f->tensors().size(), (2u + 2 * (7 * 5 + 6) + 1) + (8u + 2 * (10 * 5 + 12)));
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

// --- The audio tower ------------------------------------------------------------------------------

struct Clip {
  std::vector<float> feats;  // [frames, mels]
  std::vector<uint8_t> mask;
  int64_t frames = 0, mels = 0;
  std::vector<float> golden;  // audio_hidden_states
};

Clip golden_clip() {
  auto g = safetensors::File::open(golden_hf("gemma4") + "/golden.safetensors");
  Clip c;
  const TensorRef& f = *g->find("inputs.input_features");
  EXPECT_EQ(f.shape.size(), 3u);
  EXPECT_EQ(f.shape[0], 1) << "one clip expected";
  c.frames = f.shape[1];
  c.mels = f.shape[2];
  c.feats = as_f32(f);
  const TensorRef& m = *g->find("inputs.input_features_mask");
  EXPECT_EQ(m.dtype, DType::BOOL);
  c.mask.assign(m.data, m.data + m.numel());
  c.golden = as_f32(*g->find("audio_hidden_states"));
  return c;
}

// The clip's soft tokens with HF's eager-attention mask, which the goldens were made with.
std::vector<float> encode_clip(Gemma4AudioEncoder& enc, const Clip& c, Context& ctx) {
  enc.set_hf_eager_mask(true);
  Tensor out;
  enc.encode(ctx, c.feats.data(), c.mask.data(), c.frames, out, {});
  return out.vec();
}

std::vector<float> mmproj_audio_tokens(const std::string& path, const Clip& clip, Context& ctx) {
  auto src = ModelSource::open(path);
  int64_t text_hidden = 0;
  const Gemma4AudioConfig cfg = gemma4_audio_config_from_mmproj(src->gguf(), &text_hidden);
  Gemma4AudioEncoder enc(*src, cfg, text_hidden);
  return encode_clip(enc, clip, ctx);
}

TEST(Gemma4Mmproj, AudioConverterLayout) {
  const std::string f16 = tmp_path("audio_f16.gguf");
  convert_gemma4_mmproj(golden_hf("gemma4"), f16, DType::F16, 1);
  auto f = gguf::File::open(f16);
  // Both towers in one file, a projector type per modality (no clip.projector_type).
  EXPECT_EQ(f->get_bool("clip.has_vision_encoder"), true);
  EXPECT_EQ(f->get_bool("clip.has_audio_encoder"), true);
  EXPECT_EQ(f->get_string("clip.vision.projector_type"), "gemma4v");
  EXPECT_EQ(f->get_string("clip.audio.projector_type"), "gemma4a");
  EXPECT_FALSE(f->find("clip.projector_type"));
  EXPECT_EQ(f->get_int("clip.audio.projection_dim"), 64);
  EXPECT_EQ(f->get_int("clip.audio.embedding_length"), 32);
  EXPECT_EQ(f->get_int("clip.audio.feed_forward_length"), 128);
  EXPECT_EQ(f->get_int("clip.audio.block_count"), 2);
  EXPECT_EQ(f->get_int("clip.audio.attention.head_count"), 4);
  EXPECT_EQ(f->get_int("clip.audio.num_mel_bins"), 32);
  EXPECT_NEAR(*f->get_float("clip.audio.attention.layer_norm_epsilon"), 1e-6, 1e-12);
  // This tiny tower's attention window differs from what llama.cpp fixes (chunk 12, 12 past
  // frames); its logit cap and residual weight do not.
  EXPECT_EQ(f->get_int("clip.audio.chunk_size"), 4);
  EXPECT_EQ(f->get_int("edgevl.audio.attention.context_left"), 5);
  EXPECT_FALSE(f->find("edgevl.audio.attention.logit_cap"));
  EXPECT_FALSE(f->find("edgevl.audio.residual_weight"));

  auto hf_src = ModelSource::open(golden_hf("gemma4"));
  const Gemma4AudioConfig hc = gemma4_audio_config_from_hf(hf_src->hf().sub("audio_config"));
  int64_t text_hidden = 0;
  const Gemma4AudioConfig mc = gemma4_audio_config_from_mmproj(*f, &text_hidden);
  EXPECT_EQ(text_hidden, 64);
  EXPECT_EQ(mc.hidden, hc.hidden);
  EXPECT_EQ(mc.n_layers, hc.n_layers);
  EXPECT_EQ(mc.n_heads, hc.n_heads);
  EXPECT_EQ(mc.conv_channels0, hc.conv_channels0);
  EXPECT_EQ(mc.conv_channels1, hc.conv_channels1);
  EXPECT_EQ(mc.n_mel, hc.n_mel);
  EXPECT_EQ(mc.conv_kernel, hc.conv_kernel);
  EXPECT_EQ(mc.chunk, hc.chunk);
  EXPECT_EQ(mc.context_left, hc.context_left);
  EXPECT_EQ(mc.context_right, hc.context_right);
  EXPECT_EQ(mc.logit_cap, hc.logit_cap);
  EXPECT_EQ(mc.invalid_logit, hc.invalid_logit);
  EXPECT_EQ(mc.residual_weight, hc.residual_weight);
  EXPECT_EQ(mc.rms_eps, hc.rms_eps);
  EXPECT_EQ(mc.gradient_clipping, hc.gradient_clipping);
  EXPECT_EQ(mc.clipped_linears, hc.clipped_linears);
  EXPECT_EQ(mc.act, hc.act);
  EXPECT_EQ(mc.output_dims, hc.output_dims);

  auto type_of = [&](const std::string& name) {
    const TensorRef* t = f->find_tensor(name);
    EXPECT_TRUE(t) << name;
    return t ? t->dtype : DType::Q8_0;
  };
  auto shape_of = [&](const std::string& name) {
    const TensorRef* t = f->find_tensor(name);
    return t ? t->shape : std::vector<int64_t>{};
  };
  // The converter's conv rule keeps the subsampler and the depthwise kernel in F32.
  EXPECT_EQ(type_of("a.conv1d.0.weight"), DType::F32);
  EXPECT_EQ(shape_of("a.conv1d.0.weight"), (std::vector<int64_t>{32, 1, 3, 3}));
  EXPECT_EQ(type_of("a.conv1d.1.weight"), DType::F32);
  EXPECT_EQ(shape_of("a.conv1d.1.weight"), (std::vector<int64_t>{8, 32, 3, 3}));
  EXPECT_EQ(type_of("a.input_projection.weight"), DType::F32);
  EXPECT_EQ(type_of("a.blk.1.conv_dw.weight"), DType::F32);
  EXPECT_EQ(shape_of("a.blk.1.conv_dw.weight"), (std::vector<int64_t>{32, 3}));
  for (const char* n : {"a.blk.1.attn_q.weight", "a.blk.1.attn_k_rel.weight", "a.blk.1.ffn_up_1.weight",
                        "a.blk.1.conv_pw1.weight", "a.pre_encode.out.weight", "mm.a.input_projection.weight"})
    EXPECT_EQ(type_of(n), DType::F16) << n;
  for (const char* n : {"a.conv1d.0.norm.weight", "a.blk.0.ffn_norm.weight", "a.blk.0.ffn_post_norm_1.weight",
                        "a.blk.0.attn_pre_norm.weight", "a.blk.0.ln2.weight", "a.blk.0.conv_norm.weight",
                        "a.blk.0.norm_conv.weight", "a.blk.0.per_dim_scale.weight", "a.pre_encode.out.bias",
                        "a.blk.0.conv_pw2.output_max"})
    EXPECT_EQ(type_of(n), DType::F32) << n;
  EXPECT_EQ(shape_of("a.blk.0.conv_pw2.output_max"), (std::vector<int64_t>{1}));

  // Every table entry is in the file under its mmproj name and shape, with HF's values converted:
  // per_dim_scale as softplus, the rest as they are.
  const std::vector<Gemma4AudioTensor> table = gemma4_audio_tensors(hc, 64);
  for (const Gemma4AudioTensor& t : table) {
    const TensorRef* g = f->find_tensor(t.gguf);
    const TensorRef* h = hf_src->find(t.hf);
    ASSERT_TRUE(g && h) << t.gguf << " / " << t.hf;
    EXPECT_EQ(g->shape, t.gguf_shape) << t.gguf;
    EXPECT_EQ(h->shape, t.shape) << t.hf;
    if (g->dtype != DType::F32) continue;
    std::vector<float> want = as_f32(*h), got = as_f32(*g);
    if (t.kind == AudioTensorKind::PerDimScale)
      for (float& x : want) x = gemma4_audio_softplus(x);
    EXPECT_EQ(got, want) << t.gguf;
  }
  size_t audio_in_file = 0;
  for (const TensorRef& t : f->tensors()) audio_in_file += t.name.rfind("a.", 0) == 0 || t.name.rfind("mm.a.", 0) == 0;
  EXPECT_EQ(audio_in_file, table.size());
  std::filesystem::remove(f16);
}

TEST(Gemma4Mmproj, AudioSameSoftTokensAsHfFolder) {
  const Clip clip = golden_clip();
  Context ctx(2);
  auto src = ModelSource::open(golden_hf("gemma4"));
  Gemma4AudioEncoder hf_enc(*src, gemma4_audio_config_from_hf(src->hf().sub("audio_config")), 64);
  const std::vector<float> hf = encode_clip(hf_enc, clip, ctx);
  ASSERT_LE(rel_error(hf, clip.golden), 1e-4);
  struct Case {
    DType type;
    double tol;  // against the HF folder's soft tokens
  };
  for (Case c : {Case{DType::F32, 0.0}, Case{DType::F16, 2e-3}, Case{DType::BF16, 2e-2}, Case{DType::Q8_0, 5e-2}}) {
    const std::string path = tmp_path(std::string("audio_") + dtype_name(c.type) + ".gguf");
    convert_gemma4_mmproj(golden_hf("gemma4"), path, c.type, 1);
    const std::vector<float> mm = mmproj_audio_tokens(path, clip, ctx);
    ASSERT_EQ(mm.size(), hf.size());
    const double err = rel_error(mm, hf);
    EXPECT_LE(err, c.tol) << dtype_name(c.type);
    if (c.type == DType::F32) {
      EXPECT_LE(rel_error(mm, clip.golden), 1e-4);
    }
    std::printf("mmproj %s: audio soft tokens rel. error %.3g against the HF folder (%.3g against HF's goldens)\n",
                dtype_name(c.type), err, rel_error(mm, clip.golden));
    std::filesystem::remove(path);
  }
}

TEST(Gemma4Mmproj, AttachAudioToTextGguf) {
  const Clip clip = golden_clip();
  const std::string path = tmp_path("attach_audio.gguf");
  convert_gemma4_mmproj(golden_hf("gemma4"), path, DType::F32, 1);
  auto model = load_model(golden_llamacpp("gemma4_text") + "/gemma4_text-F32.gguf");
  EXPECT_FALSE(model->has_audio());
  model->attach_mmproj(path);
  ASSERT_TRUE(model->has_audio());
  EXPECT_TRUE(model->has_vision());
  EXPECT_EQ(model->audio_mel_bins(), clip.mels);
  model->match_hf_eager_attention(true);
  Context ctx(2);
  Tensor out;
  const int64_t n = model->encode_audio(ctx, clip.feats.data(), clip.mask.data(), clip.frames, clip.mels, out);
  EXPECT_EQ(n * 64, (int64_t)clip.golden.size());
  EXPECT_LE(rel_error(out.vec(), clip.golden), 1e-4);
  // Adapters find the tower's weights by their HF names, in HF's layout.
  const auto& by_name = model->weights_by_hf_name();
  for (const char* n : {"model.audio_tower.layers.1.self_attn.q_proj.linear.weight",
                        "model.audio_tower.layers.1.lconv1d.linear_end.linear.weight",
                        "model.audio_tower.subsample_conv_projection.layer0.conv.weight",
                        "model.embed_audio.embedding_projection.weight"})
    EXPECT_TRUE(by_name.count(n)) << n;
  ASSERT_TRUE(by_name.count("model.audio_tower.layers.0.lconv1d.depthwise_conv1d.weight"));
  EXPECT_EQ(by_name.at("model.audio_tower.layers.0.lconv1d.depthwise_conv1d.weight")->shape,
            (std::vector<int64_t>{32, 1, 3}));
  // One mmproj per model.
  EXPECT_THROW(model->attach_mmproj(path), Error);
  std::filesystem::remove(path);
}

// A copy of the mmproj `from` with one change: tensor `tensor` dropped or given another shape
// (its first bytes, zeros past them; F32 files), or key `key` set to `value`.
struct Edit {
  std::string tensor;
  std::vector<int64_t> shape;  // empty: drop the tensor
  std::string key;
  uint32_t value = 0;
};
void write_edited(const gguf::File& from, const std::string& to, const Edit& e) {
  gguf::Writer w;
  w.copy_metadata(from);
  if (!e.key.empty()) w.set_u32(e.key, e.value);
  for (const TensorRef& t : from.tensors()) {
    if (t.name != e.tensor) {
      w.add_tensor(t.name, t.dtype, t.shape, t.data, t.nbytes);
      continue;
    }
    if (e.shape.empty()) continue;
    int64_t n = 1;
    for (int64_t d : e.shape) n *= d;
    std::vector<uint8_t> bytes(n * sizeof(float), 0);
    std::memcpy(bytes.data(), t.data, std::min(bytes.size(), t.nbytes));
    w.add_tensor(t.name, DType::F32, e.shape, std::move(bytes));
  }
  w.write(to);
}

TEST(Gemma4Mmproj, MalformedAudioTensorsAreRefused) {
  const std::string good = tmp_path("audio_good.gguf"), bad = tmp_path("audio_bad.gguf");
  convert_gemma4_mmproj(golden_hf("gemma4"), good, DType::F32, 1);
  auto f = gguf::File::open(good);
  struct Case {
    Edit edit;
    const char* says;  // the error names the tensor or key
  };
  auto tensor = [](const char* name, std::vector<int64_t> shape) { return Edit{name, std::move(shape), "", 0}; };
  auto key = [](const char* name, uint32_t value) { return Edit{"", {}, name, value}; };
  const Case cases[] = {
      {tensor("a.blk.1.attn_k_rel.weight", {32, 31}), "a.blk.1.attn_k_rel.weight"},
      {tensor("a.blk.0.conv_dw.weight", {32, 1, 3}), "a.blk.0.conv_dw.weight"},  // HF's shape, not the converter's
      {tensor("a.blk.1.per_dim_scale.weight", {}), "a.blk.1.per_dim_scale.weight"},
      {tensor("a.blk.0.ffn_down_1.input_max", {2}), "a.blk.0.ffn_down_1.input_max"},
      {tensor("mm.a.input_projection.weight", {48, 48}), "mm.a.input_projection.weight"},
      {tensor("a.conv1d.1.weight", {8, 32, 9}), "a.conv1d.1.weight"},
      {key("clip.audio.num_mel_bins", 128), "num_mel_bins"},
      {key("clip.audio.feed_forward_length", 64), "feed_forward_length"},
  };
  for (const Case& c : cases) {
    write_edited(*f, bad, c.edit);
    auto model = load_model(golden_llamacpp("gemma4_text") + "/gemma4_text-F32.gguf");
    std::string msg;
    try {
      model->attach_mmproj(bad);
    } catch (const Error& e) {
      msg = e.what();
    }
    EXPECT_NE(msg.find(c.says), std::string::npos) << "error for " << c.says << ": '" << msg << "'";
    std::printf("  refused: %s\n", msg.c_str());
    // Nothing half-attached: neither tower.
    EXPECT_FALSE(model->has_audio()) << c.says;
    EXPECT_FALSE(model->has_vision()) << c.says;
  }
  std::filesystem::remove(good);
  std::filesystem::remove(bad);
}

TEST(Gemma4Mmproj, RandomInitWithAudio) {
  // Vision plus an audio tower with the released towers' settings (the ones llama.cpp fixes),
  // at a small width; random weights from init, the same per tensor name at every type.
  const std::string cfg_path = tmp_path("config_audio.json");
  {
    FILE* f = std::fopen(cfg_path.c_str(), "w");
    ASSERT_TRUE(f);
    std::fputs(R"({"model_type": "gemma4", "text_config": {"hidden_size": 96},
      "vision_config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
      "num_attention_heads": 2, "head_dim": 32, "patch_size": 4, "pooling_kernel_size": 3,
      "position_embedding_size": 64, "use_clipped_linears": true},
      "audio_config": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
      "subsampling_conv_channels": [128, 32], "conv_kernel_size": 5, "attention_chunk_size": 12,
      "attention_context_left": 13, "attention_context_right": 0, "output_proj_dims": 80,
      "use_clipped_linears": true}})",
               f);
    std::fclose(f);
  }
  const std::string f32 = tmp_path("init_audio_f32.gguf"), q8 = tmp_path("init_audio_q8.gguf");
  init_gemma4_mmproj(load_hf_config(cfg_path), f32, DType::F32, 7, 1);
  init_gemma4_mmproj(load_hf_config(cfg_path), q8, DType::Q8_0, 7, 1);
  {
    auto f = gguf::File::open(f32);
    // llama.cpp's values throughout: no key beyond the converter's.
    for (const auto& [key, value] : f->metadata()) EXPECT_EQ(key.rfind("edgevl.", 0), std::string::npos) << key;
    EXPECT_FALSE(f->find("clip.audio.chunk_size"));
    EXPECT_EQ(f->get_int("clip.audio.num_mel_bins"), 128);
  }
  // 3 s of features: 300 frames -> 75 soft tokens.
  Clip clip;
  clip.frames = 300;
  clip.mels = 128;
  clip.mask.assign(clip.frames, 1);
  clip.feats.resize(clip.frames * clip.mels);
  for (size_t i = 0; i < clip.feats.size(); ++i) clip.feats[i] = (float)((i * 2654435761u) % 1000) / 100.0f - 5.0f;
  Context ctx(2);
  auto tokens = [&](const std::string& path) {
    auto src = ModelSource::open(path);
    int64_t text_hidden = 0;
    const Gemma4AudioConfig cfg = gemma4_audio_config_from_mmproj(src->gguf(), &text_hidden);
    Gemma4AudioEncoder enc(*src, cfg, text_hidden);
    EXPECT_EQ(text_hidden, 96);
    Tensor out;
    enc.encode(ctx, clip.feats.data(), clip.mask.data(), clip.frames, out, {});
    return out.vec();
  };
  const std::vector<float> a = tokens(f32), b = tokens(q8);
  ASSERT_EQ(a.size(), (size_t)75 * 96);
  for (float x : a) ASSERT_TRUE(std::isfinite(x));
  const double err = rel_error(b, a);
  std::printf("random audio tower: Q8_0 soft tokens rel. error %.3g against F32\n", err);
  EXPECT_GT(err, 0.0);
  EXPECT_LE(err, 5e-2);
  std::filesystem::remove(f32);
  std::filesystem::remove(q8);
  std::filesystem::remove(cfg_path);
}

}  // namespace
}  // namespace edgevl
