// Gemma 4 mmproj writer: llama.cpp's converter layout (names, shapes, keys, types), from an HF
// folder's vision and audio towers or from random weights.
#include "models/gemma4/gemma4_mmproj.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/thread_pool.h"
#include "io/gguf.h"
#include "kernels/quants.h"
#include "models/gemma4/audio_encoder.h"
#include "models/gemma4/vision_encoder.h"
#include "models/source.h"
#include "models/weights.h"

namespace edgevl {

namespace {

// The converter's type for a matrix (conversion/base.py prepare_tensors): the output type, F16
// where rows do not fit its blocks (gguf.quants raises and the converter falls back to F16).
DType matrix_type(DType out, int64_t cols) {
  if (out == DType::F32 || out == DType::F16 || out == DType::BF16) return out;
  const DType fit = type_for_row(out, cols);
  return fit == out ? out : DType::F16;
}

// The converter's type for a tensor, with the Gemma 4 and mmproj tensor_force_quant overrides:
// 1-D tensors, norms, the position table and clip bounds in F32; the patch embedding F16 only for
// F16 output; audio conv kernels and the subsampler's projection F32.
DType mmproj_type(const Gemma4VisionTensor& t, DType out, int64_t cols) {
  switch (t.kind) {
    case VisionTensorKind::Vector:
    case VisionTensorKind::Clip:
    case VisionTensorKind::PositionTable: return DType::F32;
    case VisionTensorKind::PatchEmbedding: return out == DType::F16 ? DType::F16 : DType::F32;
    case VisionTensorKind::Matrix: break;
  }
  return matrix_type(out, cols);
}
DType mmproj_type(const Gemma4AudioTensor& t, DType out, int64_t cols) {
  return t.kind == AudioTensorKind::Matrix ? matrix_type(out, cols) : DType::F32;
}

std::vector<float> read_f32_array(const nlohmann::json& j, const char* key, std::vector<float> def) {
  if (!j.contains(key) || !j[key].is_array()) return def;
  std::vector<float> v;
  for (const auto& x : j[key]) v.push_back(x.get<float>());
  return v;
}

// image_mean / image_std as the converter finds them (preprocessor_config.json, then
// processor_config.json's image_processor); Gemma 4 normalises in the model, so 0 / 1.
void image_norm(const std::string& dir, std::vector<float>& mean, std::vector<float>& std_) {
  mean = {0, 0, 0};
  std_ = {1, 1, 1};
  namespace fs = std::filesystem;
  for (const char* name : {"preprocessor_config.json", "processor_config.json"}) {
    const fs::path p = fs::path(dir) / name;
    if (dir.empty() || !fs::exists(p)) continue;
    std::ifstream in(p);
    nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) continue;
    if (j.contains("image_processor")) j.update(j["image_processor"]);
    mean = read_f32_array(j, "image_mean", mean);
    std_ = read_f32_array(j, "image_std", std_);
  }
}

// general.* and the vision keys.
void write_metadata(gguf::Writer& w, const Gemma4VisionConfig& c, const HfConfig& vision, int64_t text_hidden,
                    DType dtype, const std::string& dir) {
  w.set_string("general.architecture", "clip");
  w.set_string("general.type", "mmproj");
  w.set_string("general.name", "edgevl-init");
  w.set_u32("general.file_type", gguf::llama_file_type(dtype));
  w.set_u32("general.quantization_version", 2);
  w.set_bool("clip.has_vision_encoder", true);
  w.set_u32("clip.vision.projection_dim", (uint32_t)text_hidden);
  w.set_u32("clip.vision.image_size", 224);  // the converter's placeholder; unused for gemma4v
  w.set_u32("clip.vision.patch_size", (uint32_t)c.patch_size);
  w.set_u32("clip.vision.embedding_length", (uint32_t)c.hidden);
  w.set_u32("clip.vision.feed_forward_length", (uint32_t)c.ffn);
  w.set_u32("clip.vision.block_count", (uint32_t)c.n_layers);
  w.set_u32("clip.vision.attention.head_count", (uint32_t)c.n_heads);
  std::vector<float> mean, std_;
  image_norm(dir, mean, std_);
  w.set_f32_array("clip.vision.image_mean", mean);
  w.set_f32_array("clip.vision.image_std", std_);
  w.set_string("clip.vision.projector_type", "gemma4v");
  w.set_f32("clip.vision.attention.layer_norm_epsilon", (float)vision.get_float("layer_norm_eps", 1e-6));
  // What llama.cpp assumes and the converter therefore omits; written only where this config
  // differs, so that such files still load right (llama.cpp reads these keys too).
  if (c.pooling_kernel != 3) w.set_u32("clip.vision.projector.scale_factor", (uint32_t)c.pooling_kernel);
  if (c.head_dim * c.n_heads != c.hidden) w.set_u32("clip.vision.attention.head_dim", (uint32_t)c.head_dim);
  if (c.n_kv_heads != c.n_heads) w.set_u32("clip.vision.attention.head_count_kv", (uint32_t)c.n_kv_heads);
  if (std::fabs(c.rope_theta - 100.0) > 1e-9)
    std::fprintf(stderr, "mmproj: warning: llama.cpp fixes the vision RoPE theta at 100 (this config: %g)\n",
                 c.rope_theta);
}

// Adds one tensor: `v` (row-major floats of `shape`) converted to `to` row by row.
void add_tensor(gguf::Writer& w, ThreadPool& pool, const std::string& name, DType to, const std::vector<int64_t>& shape,
                const std::vector<float>& v) {
  const int64_t cols = shape.back();
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
  EV_CHECK((int64_t)v.size() == rows * cols, "mmproj: ", name, " has ", v.size(), " values, expected ", rows * cols);
  const size_t rb = row_bytes(to, cols);
  std::vector<uint8_t> bytes(rb * rows);
  pool.parallel_for(rows, 16, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) quantize_row(to, v.data() + r * cols, bytes.data() + r * rb, cols);
  });
  w.add_tensor(name, to, shape, std::move(bytes));
}

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// `values(t, out)` fills the HF-layout floats of table entry t.
template <typename Entry>
using Values = std::function<void(const Entry&, std::vector<float>&)>;

// Writes every tensor of the vision table.
void write_vision_tensors(gguf::Writer& w, ThreadPool& pool, const Gemma4VisionConfig& c, int64_t text_hidden,
                          DType dtype, const Values<Gemma4VisionTensor>& values) {
  for (const Gemma4VisionTensor& t : gemma4_vision_tensors(c, text_hidden)) {
    std::vector<float> v;
    values(t, v);
    std::vector<int64_t> shape = t.shape;
    if (t.kind == VisionTensorKind::Clip) shape = {1};
    if (t.kind == VisionTensorKind::PatchEmbedding) {
      // [D, (py, px, c)] -> the conv kernel [D, c, py, px] (the converter's reshape + permute).
      const int64_t p = c.patch_size, D = shape[0];
      std::vector<float> conv(v.size());
      for (int64_t o = 0; o < D; ++o)
        for (int64_t y = 0; y < p; ++y)
          for (int64_t x = 0; x < p; ++x)
            for (int64_t ch = 0; ch < 3; ++ch)
              conv[o * 3 * p * p + (ch * p + y) * p + x] = v[o * 3 * p * p + (y * p + x) * 3 + ch];
      v = std::move(conv);
      shape = {D, 3, p, p};
    }
    add_tensor(w, pool, t.gguf, mmproj_type(t, dtype, shape.back()), shape, v);
  }
}

// The audio table likewise (conversion/gemma.py Gemma4VisionAudioModel.modify_tensors: scalars
// become [1], the depthwise kernel loses its unit axis, per_dim_scale is stored as softplus).
void write_audio_tensors(gguf::Writer& w, ThreadPool& pool, const Gemma4AudioConfig& c, int64_t text_hidden,
                         DType dtype, const Values<Gemma4AudioTensor>& values) {
  for (const Gemma4AudioTensor& t : gemma4_audio_tensors(c, text_hidden)) {
    std::vector<float> v;
    values(t, v);
    if (t.kind == AudioTensorKind::PerDimScale)
      for (float& x : v) x = gemma4_audio_softplus(x);
    add_tensor(w, pool, t.gguf, mmproj_type(t, dtype, t.gguf_shape.back()), t.gguf_shape, v);
  }
}

const char* hf_activation_name(ops::Activation a) {
  switch (a) {
    case ops::Activation::Silu: return "silu";
    case ops::Activation::GeluTanh: return "gelu_pytorch_tanh";
    case ops::Activation::Gelu: return "gelu";
  }
  return "silu";
}

// The audio keys (conversion/base.py MmprojModel.set_gguf_parameters and Gemma4VisionAudioModel's:
// clip.has_audio_encoder, clip.audio.*, projector type gemma4a). num_mel_bins is the tower's
// (subsampling_conv_channels[0]; the converter writes input_feat_size, absent from Gemma 4
// configs, i.e. its default 128, which is what the released towers take) and the epsilon the
// config's rms_norm_eps (the converter looks up layer_norm_eps, absent too, and writes 1e-6, the
// released value). Settings llama.cpp fixes are written only where the tower differs.
void write_audio_metadata(gguf::Writer& w, const Gemma4AudioConfig& c, int64_t text_hidden) {
  w.set_bool("clip.has_audio_encoder", true);
  w.set_u32("clip.audio.projection_dim", (uint32_t)text_hidden);
  w.set_u32("clip.audio.embedding_length", (uint32_t)c.hidden);
  w.set_u32("clip.audio.feed_forward_length", (uint32_t)(4 * c.hidden));
  w.set_u32("clip.audio.block_count", (uint32_t)c.n_layers);
  w.set_u32("clip.audio.attention.head_count", (uint32_t)c.n_heads);
  w.set_string("clip.audio.projector_type", "gemma4a");
  w.set_u32("clip.audio.num_mel_bins", (uint32_t)c.n_mel);
  w.set_f32("clip.audio.attention.layer_norm_epsilon", c.rms_eps);
  for (const Gemma4AudioMmprojSetting& s : gemma4_audio_mmproj_settings()) {
    const double v = s.get(c);
    if (v == s.llamacpp || (!s.integer && (float)v == (float)s.llamacpp)) continue;
    if (s.integer)
      w.set_u32(s.key, (uint32_t)v);
    else
      w.set_f32(s.key, (float)v);
    std::fprintf(stderr, "mmproj: warning: llama.cpp fixes the audio setting %s at %g (this tower: %g)\n", s.key,
                 s.llamacpp, v);
  }
  if (c.act != ops::Activation::Silu) {
    w.set_string("edgevl.audio.hidden_act", hf_activation_name(c.act));
    std::fprintf(stderr, "mmproj: warning: llama.cpp's audio tower uses silu (this tower: %s)\n",
                 hf_activation_name(c.act));
  }
  if (c.conv_kernel != 5)
    std::fprintf(stderr, "mmproj: warning: llama.cpp pads the audio depthwise conv for kernel 5 (this tower: %lld)\n",
                 (long long)c.conv_kernel);
  if (std::fabs(c.rms_eps - 1e-6f) > 1e-12f)
    std::fprintf(stderr, "mmproj: warning: llama.cpp fixes the audio RMSNorm epsilon at 1e-6 (this tower: %g)\n",
                 (double)c.rms_eps);
}

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
double uniform(uint64_t& s) { return ((splitmix64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

uint64_t name_seed(const std::string& name, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char ch : name) h = (h ^ ch) * 1099511628211ull;
  return h;
}

// v ~ N(mean, sd), from the stream `s`.
void fill_normal(std::vector<float>& v, float mean, float sd, uint64_t& s) {
  const int64_t n = (int64_t)v.size();
  for (int64_t i = 0; i < n; i += 2) {
    const double u1 = uniform(s), u2 = uniform(s), r = std::sqrt(-2.0 * std::log(u1));
    v[i] = mean + sd * (float)(r * std::cos(2 * M_PI * u2));
    if (i + 1 < n) v[i + 1] = mean + sd * (float)(r * std::sin(2 * M_PI * u2));
  }
}

// A clip bound that clamps the tails only: |x| beyond 3..6 (inputs are RMS-normed, ~1).
float random_clip_bound(const std::string& name, uint64_t& s) {
  const double m = 3.0 + 3.0 * uniform(s);
  return (float)(name.ends_with("_min") ? -m : m);
}

// The towers a Gemma4ForConditionalGeneration config.json has, read for the writer.
struct Towers {
  HfConfig vision_hf, audio_hf;
  Gemma4VisionConfig vision;
  Gemma4AudioConfig audio;
  bool has_audio = false;
  int64_t text_hidden = 0;
};
Towers read_towers(const HfConfig& hf) {
  EV_CHECK(hf.get_string("model_type", "gemma4") == "gemma4" && hf.has("vision_config") && hf.has("text_config"),
           hf.path(), ": an mmproj needs a Gemma4ForConditionalGeneration config (vision_config and text_config)");
  Towers t;
  t.vision_hf = hf.sub("vision_config");
  t.vision = gemma4_vision_config_from_hf(t.vision_hf);
  t.has_audio = hf.has("audio_config");
  if (t.has_audio) {
    t.audio_hf = hf.sub("audio_config");
    t.audio = gemma4_audio_config_from_hf(t.audio_hf);
  }
  t.text_hidden = hf.sub("text_config").get_int("hidden_size", 0);
  EV_CHECK(t.text_hidden > 0, hf.path(), ": text_config has no hidden_size");
  return t;
}

// The file: keys, then tensors, the audio tower's when the config has one (readers look tensors up
// by name, so their order is free).
void write_mmproj(const Towers& t, const std::string& dir, DType dtype, int threads, const std::string& out,
                  const Values<Gemma4VisionTensor>& vision_values, const Values<Gemma4AudioTensor>& audio_values) {
  gguf::Writer w;
  write_metadata(w, t.vision, t.vision_hf, t.text_hidden, dtype, dir);
  if (t.has_audio) write_audio_metadata(w, t.audio, t.text_hidden);
  ThreadPool pool(threads > 0 ? threads : default_thread_count());
  write_vision_tensors(w, pool, t.vision, t.text_hidden, dtype, vision_values);
  if (t.has_audio) write_audio_tensors(w, pool, t.audio, t.text_hidden, dtype, audio_values);
  w.write(out);
}

}  // namespace

void convert_gemma4_mmproj(const std::string& hf_dir, const std::string& out, DType dtype, int threads) {
  auto src = ModelSource::open(hf_dir);
  EV_CHECK(!src->is_gguf(), hf_dir, ": already a GGUF file");
  const Towers t = read_towers(src->hf());
  auto read = [&](const std::string& name, const std::vector<int64_t>& shape, std::vector<float>& v) {
    const TensorRef* r = src->find(name);
    EV_CHECK(r, hf_dir, ": missing ", name);
    const int64_t n = numel(shape);
    EV_CHECK(r->numel() == n, hf_dir, ": ", name, " has ", r->numel(), " values, expected ", n);
    v.resize(n);
    dequantize_row(r->dtype, r->data, v.data(), n);
  };
  write_mmproj(
      t, hf_dir, dtype, threads, out,
      [&](const Gemma4VisionTensor& x, std::vector<float>& v) { read(x.hf, x.shape, v); },
      [&](const Gemma4AudioTensor& x, std::vector<float>& v) { read(x.hf, x.shape, v); });
}

void init_gemma4_mmproj(const HfConfig& hf, const std::string& out, DType dtype, uint64_t seed, int threads) {
  const Towers t = read_towers(hf);
  const float vision_sd = (float)t.vision_hf.get_float("initializer_range", 0.02);
  const float audio_sd = (float)t.audio_hf.get_float("initializer_range", 0.02);
  // q/k norms carry attention's 1/sqrt(d) (scale 1): start them at d^-1/4 each so random scores
  // look like a standard transformer's instead of saturating every softmax.
  const float qk_norm = (float)std::pow((double)t.vision.head_dim, -0.25);
  write_mmproj(
      t, std::filesystem::path(hf.path()).parent_path().string(), dtype, threads, out,
      [&](const Gemma4VisionTensor& x, std::vector<float>& v) {
        v.resize(numel(x.shape));
        uint64_t s = name_seed(x.hf, seed);
        if (x.kind == VisionTensorKind::Clip) {
          v[0] = random_clip_bound(x.hf, s);
          return;
        }
        float mean = 0;
        if (x.kind == VisionTensorKind::Vector) {
          mean = x.hf.ends_with("q_norm.weight") || x.hf.ends_with("k_norm.weight") ? qk_norm : 1.0f;
          if (x.hf.ends_with("std_bias")) mean = 0;
        }
        fill_normal(v, mean, vision_sd, s);
      },
      // Norms near 1; per_dim_scale near HF's 0 (softplus 0.69), the output bias near 0.
      [&](const Gemma4AudioTensor& x, std::vector<float>& v) {
        v.resize(numel(x.shape));
        uint64_t s = name_seed(x.hf, seed);
        if (x.kind == AudioTensorKind::Clip) {
          v[0] = random_clip_bound(x.hf, s);
          return;
        }
        const bool norm = x.kind == AudioTensorKind::Vector && !x.hf.ends_with(".bias");
        fill_normal(v, norm ? 1.0f : 0.0f, audio_sd, s);
      });
}

}  // namespace edgevl
