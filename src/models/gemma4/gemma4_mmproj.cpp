// Gemma 4 vision mmproj writer: llama.cpp's converter layout (names, shapes, keys, types), from an
// HF folder's vision tower or from random weights.
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
#include "models/gemma4/vision_encoder.h"
#include "models/source.h"
#include "models/weights.h"

namespace edgevl {

namespace {

// The converter's type for a tensor (conversion/base.py prepare_tensors with the Gemma 4 and
// mmproj tensor_force_quant overrides): 1-D tensors, norms, the position table and clip bounds in
// F32; the patch embedding F16 only for F16 output; matrices in the output type, F16 where rows do
// not fit its blocks (gguf.quants raises and the converter falls back to F16).
DType mmproj_type(const Gemma4VisionTensor& t, DType out, int64_t cols) {
  switch (t.kind) {
    case VisionTensorKind::Vector:
    case VisionTensorKind::Clip:
    case VisionTensorKind::PositionTable: return DType::F32;
    case VisionTensorKind::PatchEmbedding: return out == DType::F16 ? DType::F16 : DType::F32;
    case VisionTensorKind::Matrix: break;
  }
  if (out == DType::F32 || out == DType::F16 || out == DType::BF16) return out;
  const DType fit = type_for_row(out, cols);
  return fit == out ? out : DType::F16;
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

// Writes every tensor of the table; `values(t, out)` fills t's HF-layout floats.
void write_tensors(gguf::Writer& w, const Gemma4VisionConfig& c, int64_t text_hidden, DType dtype, int threads,
                   const std::function<void(const Gemma4VisionTensor&, std::vector<float>&)>& values) {
  ThreadPool pool(threads > 0 ? threads : default_thread_count());
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
    const int64_t cols = shape.back();
    int64_t rows = 1;
    for (size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
    EV_CHECK((int64_t)v.size() == rows * cols, "mmproj: ", t.hf, " has ", v.size(), " values, expected ", rows * cols);
    const DType to = mmproj_type(t, dtype, cols);
    const size_t rb = row_bytes(to, cols);
    std::vector<uint8_t> bytes(rb * rows);
    pool.parallel_for(rows, 16, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) quantize_row(to, v.data() + r * cols, bytes.data() + r * rb, cols);
    });
    w.add_tensor(t.gguf, to, shape, std::move(bytes));
  }
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

}  // namespace

void convert_gemma4_mmproj(const std::string& hf_dir, const std::string& out, DType dtype, int threads) {
  auto src = ModelSource::open(hf_dir);
  EV_CHECK(!src->is_gguf(), hf_dir, ": already a GGUF file");
  const HfConfig& hf = src->hf();
  EV_CHECK(hf.get_string("model_type", "") == "gemma4" && hf.has("vision_config"), hf_dir,
           ": not a Gemma4ForConditionalGeneration folder with a vision_config");
  const HfConfig vision = hf.sub("vision_config");
  const Gemma4VisionConfig c = gemma4_vision_config_from_hf(vision);
  const int64_t text_hidden = hf.sub("text_config").get_int("hidden_size", 0);
  EV_CHECK(text_hidden > 0, hf_dir, ": text_config has no hidden_size");
  gguf::Writer w;
  write_metadata(w, c, vision, text_hidden, dtype, hf_dir);
  write_tensors(w, c, text_hidden, dtype, threads, [&](const Gemma4VisionTensor& t, std::vector<float>& v) {
    const TensorRef* r = src->find(t.hf);
    EV_CHECK(r, hf_dir, ": missing ", t.hf);
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    EV_CHECK(r->numel() == n, hf_dir, ": ", t.hf, " has ", r->numel(), " values, expected ", n);
    v.resize(n);
    dequantize_row(r->dtype, r->data, v.data(), n);
  });
  w.write(out);
}

void init_gemma4_mmproj(const HfConfig& hf, const std::string& out, DType dtype, uint64_t seed, int threads) {
  EV_CHECK(hf.has("vision_config") && hf.has("text_config"), hf.path(),
           ": an mmproj needs a Gemma4ForConditionalGeneration config (vision_config and text_config)");
  const HfConfig vision = hf.sub("vision_config");
  const Gemma4VisionConfig c = gemma4_vision_config_from_hf(vision);
  const int64_t text_hidden = hf.sub("text_config").get_int("hidden_size", 0);
  EV_CHECK(text_hidden > 0, hf.path(), ": text_config has no hidden_size");
  const float std_dev = (float)vision.get_float("initializer_range", 0.02);
  // q/k norms carry attention's 1/sqrt(d) (scale 1): start them at d^-1/4 each so random scores
  // look like a standard transformer's instead of saturating every softmax.
  const float qk_norm = (float)std::pow((double)c.head_dim, -0.25);
  gguf::Writer w;
  write_metadata(w, c, vision, text_hidden, dtype, std::filesystem::path(hf.path()).parent_path().string());
  write_tensors(w, c, text_hidden, dtype, threads, [&](const Gemma4VisionTensor& t, std::vector<float>& v) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    v.resize(n);
    uint64_t s = name_seed(t.hf, seed);
    if (t.kind == VisionTensorKind::Clip) {
      // Bounds that clamp the tails only: |x| beyond 3..6 (inputs are RMS-normed, ~1).
      const double m = 3.0 + 3.0 * uniform(s);
      v[0] = (float)(t.hf.ends_with("_min") ? -m : m);
      return;
    }
    float mean = 0, sd = std_dev;
    if (t.kind == VisionTensorKind::Vector) {
      mean = t.hf.ends_with("q_norm.weight") || t.hf.ends_with("k_norm.weight") ? qk_norm : 1.0f;
      if (t.hf.ends_with("std_bias")) mean = 0;
    }
    for (int64_t i = 0; i < n; i += 2) {
      const double u1 = uniform(s), u2 = uniform(s), r = std::sqrt(-2.0 * std::log(u1));
      v[i] = mean + sd * (float)(r * std::cos(2 * M_PI * u2));
      if (i + 1 < n) v[i + 1] = mean + sd * (float)(r * std::sin(2 * M_PI * u2));
    }
  });
  w.write(out);
}

}  // namespace edgevl
