// Gemma 4 vision tower, as HF modeling_gemma4.py computes it:
//  1. patch embedding: input_proj(2·(p − 0.5)) + position_table[0][x] + position_table[1][y]
//     (no position for padding patches);
//  2. encoder layers shaped like the text layers (sandwich norms, q/k norms with weight, v norm
//     without, attention scale 1) but bidirectional over the image's real patches, with 2-D RoPE:
//     the first half of each head rotates by the patch's x, the second half by its y;
//  3. pooling: padding zeroed, k×k patch blocks averaged by position (sum / k²), × sqrt(hidden);
//     blocks with no patch are dropped; optional standardisation;
//  4. projector: RMSNorm without weight, then a linear into the text hidden size.
#include "models/gemma4/vision_encoder.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "kernels/quants.h"
#include "nn/attention.h"
#include "tensor/ops.h"

namespace edgevl {

Gemma4VisionConfig gemma4_vision_config_from_hf(const HfConfig& hf) {
  Gemma4VisionConfig c;
  c.hidden = hf.get_int("hidden_size", 768);
  c.ffn = hf.get_int("intermediate_size", 3072);
  c.n_layers = hf.get_int("num_hidden_layers", 16);
  c.n_heads = hf.get_int("num_attention_heads", 12);
  c.n_kv_heads = hf.get_int("num_key_value_heads", c.n_heads);
  c.head_dim = hf.get_int("head_dim", c.n_heads > 0 ? c.hidden / c.n_heads : 0);
  c.patch_size = hf.get_int("patch_size", 16);
  c.pooling_kernel = hf.get_int("pooling_kernel_size", 3);
  c.position_table = hf.get_int("position_embedding_size", 10240);
  c.default_output_length = hf.get_int("default_output_length", 280);
  c.rms_eps = (float)hf.get_float("rms_norm_eps", 1e-6);
  c.rope_theta = hf.get_float("rope_parameters.rope_theta", hf.get_float("rope_theta", 100.0));
  c.act = ops::activation_from_name(hf.get_string("hidden_activation", "gelu_pytorch_tanh").c_str());
  c.clipped_linears = hf.get_bool("use_clipped_linears", false);
  c.standardize = hf.get_bool("standardize", false);
  EV_CHECK(c.hidden > 0 && c.ffn > 0 && c.n_layers > 0 && c.n_heads > 0 && c.n_kv_heads > 0 &&
               c.n_heads % c.n_kv_heads == 0 && c.head_dim > 0 && c.head_dim % 4 == 0 && c.patch_size > 0 &&
               c.pooling_kernel > 0 && c.position_table > 0,
           hf.path(), ": invalid vision_config sizes");
  return c;
}

namespace {

using Layer = Gemma4VisionLayerWeights;

// The weight table: every tensor once, with its HF and mmproj names ({L}: layer). Linears are
// module prefixes (HF adds .linear.weight, the mmproj .weight; clip bounds hang off both).
constexpr const char* kInputProjHf = "model.vision_tower.patch_embedder.input_proj.weight";
constexpr const char* kInputProjGguf = "v.patch_embd.weight";
constexpr const char* kPositionHf = "model.vision_tower.patch_embedder.position_embedding_table";
constexpr const char* kPositionGguf = "v.position_embd.weight";
constexpr const char* kStdBiasHf = "model.vision_tower.std_bias";
constexpr const char* kStdBiasGguf = "v.std_bias";
constexpr const char* kStdScaleHf = "model.vision_tower.std_scale";
constexpr const char* kStdScaleGguf = "v.std_scale";
constexpr const char* kProjectionHf = "model.embed_vision.embedding_projection.weight";
constexpr const char* kProjectionGguf = "mm.input_projection.weight";

enum Dim { kD, kQ, kKV, kF, kHeadDim };
struct NormSpec {
  WeightRef Layer::*slot;
  const char* hf;
  const char* gguf;
  Dim dim;
};
struct LinearSpec {
  ClippedLinear Layer::*slot;
  const char* hf;
  const char* gguf;
  Dim out, in;
};
const NormSpec kNorms[] = {
    {&Layer::attn_norm, "model.vision_tower.encoder.layers.{L}.input_layernorm.weight", "v.blk.{L}.ln1.weight", kD},
    {&Layer::post_attn_norm, "model.vision_tower.encoder.layers.{L}.post_attention_layernorm.weight",
     "v.blk.{L}.attn_post_norm.weight", kD},
    {&Layer::ffn_norm, "model.vision_tower.encoder.layers.{L}.pre_feedforward_layernorm.weight", "v.blk.{L}.ln2.weight",
     kD},
    {&Layer::post_ffn_norm, "model.vision_tower.encoder.layers.{L}.post_feedforward_layernorm.weight",
     "v.blk.{L}.ffn_post_norm.weight", kD},
    {&Layer::q_norm, "model.vision_tower.encoder.layers.{L}.self_attn.q_norm.weight", "v.blk.{L}.attn_q_norm.weight",
     kHeadDim},
    {&Layer::k_norm, "model.vision_tower.encoder.layers.{L}.self_attn.k_norm.weight", "v.blk.{L}.attn_k_norm.weight",
     kHeadDim},
};
const LinearSpec kLinears[] = {
    {&Layer::q, "model.vision_tower.encoder.layers.{L}.self_attn.q_proj", "v.blk.{L}.attn_q", kQ, kD},
    {&Layer::k, "model.vision_tower.encoder.layers.{L}.self_attn.k_proj", "v.blk.{L}.attn_k", kKV, kD},
    {&Layer::v, "model.vision_tower.encoder.layers.{L}.self_attn.v_proj", "v.blk.{L}.attn_v", kKV, kD},
    {&Layer::o, "model.vision_tower.encoder.layers.{L}.self_attn.o_proj", "v.blk.{L}.attn_out", kD, kQ},
    {&Layer::gate, "model.vision_tower.encoder.layers.{L}.mlp.gate_proj", "v.blk.{L}.ffn_gate", kF, kD},
    {&Layer::up, "model.vision_tower.encoder.layers.{L}.mlp.up_proj", "v.blk.{L}.ffn_up", kF, kD},
    {&Layer::down, "model.vision_tower.encoder.layers.{L}.mlp.down_proj", "v.blk.{L}.ffn_down", kD, kF},
};
constexpr const char* kClipBounds[] = {"input_min", "input_max", "output_min", "output_max"};

int64_t dim_of(const Gemma4VisionConfig& c, Dim d) {
  switch (d) {
    case kD: return c.hidden;
    case kQ: return c.n_heads * c.head_dim;
    case kKV: return c.n_kv_heads * c.head_dim;
    case kF: return c.ffn;
    case kHeadDim: return c.head_dim;
  }
  return 0;
}

}  // namespace

std::vector<Gemma4VisionTensor> gemma4_vision_tensors(const Gemma4VisionConfig& c, int64_t text_hidden) {
  using K = VisionTensorKind;
  const int64_t D = c.hidden;
  std::vector<Gemma4VisionTensor> t;
  t.push_back({kInputProjHf, kInputProjGguf, {D, c.patch_values()}, K::PatchEmbedding});
  t.push_back({kPositionHf, kPositionGguf, {2, c.position_table, D}, K::PositionTable});
  for (int64_t l = 0; l < c.n_layers; ++l) {
    for (const LinearSpec& s : kLinears) {
      const std::string hf = expand_layer_name(s.hf, l), gg = expand_layer_name(s.gguf, l);
      t.push_back({hf + ".linear.weight", gg + ".weight", {dim_of(c, s.out), dim_of(c, s.in)}, K::Matrix});
      if (c.clipped_linears)
        for (const char* b : kClipBounds) t.push_back({hf + "." + b, gg + "." + b, {}, K::Clip});
    }
    for (const NormSpec& s : kNorms)
      t.push_back({expand_layer_name(s.hf, l), expand_layer_name(s.gguf, l), {dim_of(c, s.dim)}, K::Vector});
  }
  if (c.standardize) {
    t.push_back({kStdBiasHf, kStdBiasGguf, {D}, K::Vector});
    t.push_back({kStdScaleHf, kStdScaleGguf, {D}, K::Vector});
  }
  t.push_back({kProjectionHf, kProjectionGguf, {text_hidden, D}, K::Matrix});
  return t;
}

Gemma4VisionConfig gemma4_vision_config_from_mmproj(const gguf::File& f, int64_t* text_hidden) {
  const std::string type = f.get_string("clip.vision.projector_type").value_or(f.get_string("clip.projector_type").value_or(""));
  EV_CHECK(type == "gemma4v", f.path(), ": not a Gemma 4 vision mmproj (clip.vision.projector_type is '", type,
           "', expected 'gemma4v')");
  auto need = [&](const char* key) {
    const auto v = f.get_int(key);
    EV_CHECK(v.has_value(), f.path(), ": mmproj has no ", key);
    return *v;
  };
  Gemma4VisionConfig c;
  c.hidden = need("clip.vision.embedding_length");
  c.ffn = need("clip.vision.feed_forward_length");
  c.n_layers = need("clip.vision.block_count");
  c.n_heads = need("clip.vision.attention.head_count");
  c.n_kv_heads = f.get_int("clip.vision.attention.head_count_kv").value_or(c.n_heads);
  c.head_dim = f.get_int("clip.vision.attention.head_dim").value_or(c.n_heads > 0 ? c.hidden / c.n_heads : 0);
  c.patch_size = need("clip.vision.patch_size");
  // llama.cpp's default pooling (the converter writes no key for it) and fixed RoPE theta.
  c.pooling_kernel = f.get_int("clip.vision.projector.scale_factor").value_or(3);
  c.rms_eps = (float)f.get_float("clip.vision.attention.layer_norm_epsilon").value_or(1e-6);
  c.rope_theta = 100.0;
  c.act = ops::Activation::GeluTanh;
  const TensorRef* pos = f.find_tensor(kPositionGguf);
  EV_CHECK(pos && pos->shape.size() == 3 && pos->shape[0] == 2, f.path(), ": mmproj has no [2, N, hidden] ",
           kPositionGguf);
  c.position_table = pos->shape[1];
  c.clipped_linears = f.find_tensor("v.blk.0.attn_q.input_min") != nullptr;
  c.standardize = f.find_tensor(kStdBiasGguf) != nullptr;
  *text_hidden = need("clip.vision.projection_dim");
  EV_CHECK(c.hidden > 0 && c.ffn > 0 && c.n_layers > 0 && c.n_heads > 0 && c.n_kv_heads > 0 &&
               c.n_heads % c.n_kv_heads == 0 && c.head_dim > 0 && c.head_dim % 4 == 0 && c.patch_size > 0 &&
               c.pooling_kernel > 0 && *text_hidden > 0,
           f.path(), ": invalid clip.vision sizes");
  return c;
}

void load_gemma4_vision_weights(const ModelSource& src, WeightLoader& loader, const Gemma4VisionConfig& c,
                                int64_t text_hidden, Gemma4VisionWeights& w) {
  const int64_t D = c.hidden, p = c.patch_size;
  if (src.is_gguf()) {
    // llama.cpp keeps the patch embedding as a conv kernel [D, 3, p, p]; back to HF's per-patch
    // (py, px, c) order, in float32.
    const WeightRef conv = loader.load(nullptr, kInputProjGguf, {D, 3, p, p}, 0);
    w.patch_f32.resize(D * c.patch_values());
    std::vector<float> row(3 * p * p);
    for (int64_t o = 0; o < D; ++o) {
      dequantize_row(conv.dtype, static_cast<const uint8_t*>(conv.data) + o * row_bytes(conv.dtype, 3 * p * p), row.data(),
                     3 * p * p);
      for (int64_t ch = 0; ch < 3; ++ch)
        for (int64_t y = 0; y < p; ++y)
          for (int64_t x = 0; x < p; ++x) w.patch_f32[o * 3 * p * p + (y * p + x) * 3 + ch] = row[(ch * p + y) * p + x];
    }
    w.input_proj.name = kInputProjGguf;
    w.input_proj.dtype = DType::F32;
    w.input_proj.shape = {D, c.patch_values()};
    w.input_proj.data = w.patch_f32.data();
    w.input_proj.row_bytes = c.patch_values() * sizeof(float);
  } else {
    w.input_proj = loader.load(kInputProjHf, nullptr, {D, c.patch_values()}, 0);
  }
  w.position_table = loader.load(kPositionHf, kPositionGguf, {2, c.position_table, D}, 0);
  EV_CHECK(w.position_table.dtype == DType::F32, src.path(), ": the vision position table must be float32");
  if (c.standardize) {
    w.std_bias = loader.load(kStdBiasHf, kStdBiasGguf, {D}, kVector);
    w.std_scale = loader.load(kStdScaleHf, kStdScaleGguf, {D}, kVector);
  }
  w.projection = loader.load(kProjectionHf, kProjectionGguf, {text_hidden, D}, 0);
  w.layers.resize(c.n_layers);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    Layer& lw = w.layers[l];
    for (const NormSpec& s : kNorms) lw.*(s.slot) = loader.load(s.hf, s.gguf, {dim_of(c, s.dim)}, kVector, l);
    for (const LinearSpec& s : kLinears)
      (lw.*(s.slot)).load(loader, s.hf, s.gguf, dim_of(c, s.out), dim_of(c, s.in), c.clipped_linears, l);
  }
}

std::vector<std::pair<std::string, ClippedLinear*>> gemma4_vision_layer_linears(Gemma4VisionLayerWeights& w,
                                                                                int64_t layer) {
  std::vector<std::pair<std::string, ClippedLinear*>> r;
  for (const LinearSpec& s : kLinears) r.emplace_back(expand_layer_name(s.hf, layer), &(w.*(s.slot)));
  return r;
}

nn::Rope make_gemma4_vision_rope(const Gemma4VisionConfig& c) {
  nn::RopeConfig rc;
  rc.theta = c.rope_theta;
  return nn::Rope(rc, c.head_dim / 2);
}

void apply_gemma4_vision_rope(const nn::Rope& rope, float* x, int64_t heads, int64_t Dh, int64_t px, int64_t py) {
  const int64_t half = Dh / 2;
  for (int64_t h = 0; h < heads; ++h) {
    rope.apply(x + h * Dh, 1, half, px);
    rope.apply(x + h * Dh + half, 1, half, py);
  }
}

nn::AttentionShape gemma4_vision_attention_shape(const Gemma4VisionConfig& c) {
  nn::AttentionShape a;
  a.n_heads = c.n_heads;
  a.n_kv_heads = c.n_kv_heads;
  a.head_dim = c.head_dim;
  a.scale = 1.0f;
  a.causal = false;
  return a;
}

bool Gemma4VisionPatchMap::all_valid() const { return std::find(valid.begin(), valid.end(), 0) == valid.end(); }

Gemma4VisionPatchMap gemma4_vision_patch_map(const Gemma4VisionConfig& c, const int64_t* positions,
                                             int64_t n_patches, bool keep_padding) {
  const int64_t k = c.pooling_kernel, kk = k * k;
  EV_CHECK(n_patches > 0 && n_patches % kk == 0, "vision: ", n_patches, " patches is not a multiple of ", kk,
           " (pooling_kernel_size squared)");
  const int64_t out_len = n_patches / kk;

  // Real patches must fall inside the position table.
  int64_t max_x = 0, n_real = 0;
  for (int64_t t = 0; t < n_patches; ++t) {
    const int64_t x = positions[2 * t], y = positions[2 * t + 1];
    if (x == -1 && y == -1) continue;
    EV_CHECK(x >= 0 && y >= 0 && x < c.position_table && y < c.position_table, "vision: patch ", t,
             " has position (", x, ", ", y, ") outside the ", c.position_table, "-entry position table");
    max_x = std::max(max_x, x);
    ++n_real;
  }
  const bool keep_all = keep_padding || n_real == 0;  // nothing real: keep HF's all-masked behaviour
  Gemma4VisionPatchMap m;
  for (int64_t t = 0; t < n_patches; ++t) {
    const int64_t x = positions[2 * t], y = positions[2 * t + 1];
    const bool real = !(x == -1 && y == -1);
    if (!real && !keep_all) continue;
    m.rows.push_back(t);
    m.xs.push_back(x);
    m.ys.push_back(y);
    m.valid.push_back(real);
  }
  const int64_t n = (int64_t)m.rows.size();
  m.token.assign(n, -1);
  if (kk == 1) {
    // Every patch is already its own soft token: HF skips the pooling and strips the padding.
    for (int64_t i = 0; i < n; ++i)
      if (m.valid[i]) m.token[i] = m.n_tokens++;
    return m;
  }
  // Gemma4VisionPooler._avg_pool_by_positions: bucket = x/k + grid_w·(y/k) with positions clamped
  // to 0, so padding patches (zero hidden states) land in bucket 0; a bucket any patch lands in
  // is a soft token, in bucket order.
  const int64_t grid_w = (max_x + 1) / k;
  std::vector<int64_t> bucket(n), index(out_len, -1);
  std::vector<uint8_t> used(out_len, 0);
  if (n_real < n_patches) used[0] = 1;  // padding patches, computed or not
  for (int64_t i = 0; i < n; ++i) {
    bucket[i] = std::max<int64_t>(m.xs[i], 0) / k + grid_w * (std::max<int64_t>(m.ys[i], 0) / k);
    EV_CHECK(bucket[i] < out_len, "vision: patch ", m.rows[i], " pools into soft token ", bucket[i], " of ", out_len,
             " (positions do not fit the patch count)");
    used[bucket[i]] = 1;
  }
  for (int64_t b = 0; b < out_len; ++b)
    if (used[b]) index[b] = m.n_tokens++;
  for (int64_t i = 0; i < n; ++i)
    if (m.valid[i]) m.token[i] = index[bucket[i]];
  return m;
}

void gemma4_vision_centered_pixels(const Gemma4VisionConfig& c, const Gemma4VisionPatchMap& m,
                                   const float* pixel_values, float* centered) {
  const int64_t PV = c.patch_values();
  for (size_t i = 0; i < m.rows.size(); ++i) {
    const float* src = pixel_values + m.rows[i] * PV;
    float* dst = centered + i * PV;
    for (int64_t j = 0; j < PV; ++j) dst[j] = 2.0f * (src[j] - 0.5f);
  }
}

void add_gemma4_vision_positions(const Gemma4VisionConfig& c, const WeightRef& table, const Gemma4VisionPatchMap& m,
                                 float* x) {
  const int64_t D = c.hidden;
  const float* t = table.f32();
  for (size_t i = 0; i < m.rows.size(); ++i) {
    if (!m.valid[i]) continue;
    ops::add(x + i * D, t + m.xs[i] * D, D);
    ops::add(x + i * D, t + (c.position_table + m.ys[i]) * D, D);
  }
}

void gemma4_vision_pool(const Gemma4VisionConfig& c, const Gemma4VisionPatchMap& m, const float* x, float* pooled) {
  const int64_t D = c.hidden, kk = c.pooling_kernel * c.pooling_kernel;
  std::fill(pooled, pooled + m.n_tokens * D, 0.0f);
  for (size_t i = 0; i < m.rows.size(); ++i)
    if (m.token[i] >= 0) ops::add_scaled(pooled + m.token[i] * D, x + i * D, 1.0f / (float)kk, D);
  ops::scale(pooled, (float)std::sqrt((double)D), m.n_tokens * D);
}

void gemma4_vision_standardize(const Gemma4VisionConfig& c, const Gemma4VisionWeights& w, float* tokens, int64_t n) {
  if (!c.standardize) return;
  const int64_t D = c.hidden;
  const float *bias = w.std_bias.f32(), *scale = w.std_scale.f32();
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < D; ++i) tokens[t * D + i] = (tokens[t * D + i] - bias[i]) * scale[i];
}

Gemma4VisionEncoder::Gemma4VisionEncoder(const ModelSource& src, Gemma4VisionConfig cfg, int64_t text_hidden)
    : cfg_(std::move(cfg)), text_hidden_(text_hidden), loader_(src), rope_(make_gemma4_vision_rope(cfg_)) {
  load_gemma4_vision_weights(src, loader_, cfg_, text_hidden_, w_);
  // Q8_0 attention products by default for block-quantized towers only (F16/BF16 keep float
  // attention); EDGEVL_VISION_ATTENTION=q8_0 or f32 overrides.
  const DType wt = w_.layers.empty() ? DType::F32 : w_.layers[0].q.w.dtype;
  low_precision_attention_ = wt != DType::F32 && wt != DType::F16 && wt != DType::BF16;
  if (const char* env = std::getenv("EDGEVL_VISION_ATTENTION")) {
    const std::string v = env;
    EV_CHECK(v == "q8_0" || v == "f32", "EDGEVL_VISION_ATTENTION='", v, "': use q8_0 or f32");
    low_precision_attention_ = v == "q8_0";
  }
}

void Gemma4VisionEncoder::layer_forward(Context& ctx, const Gemma4VisionLayerWeights& w,
                                        const Gemma4VisionPatchMap& m) {
  const Gemma4VisionConfig& c = cfg_;
  const int64_t n = (int64_t)m.rows.size();
  const int64_t D = c.hidden, H = c.n_heads, Hkv = c.n_kv_heads, Dh = c.head_dim;
  xn_.resize({n, D});
  h_.resize({n, D});
  q_.resize({n, H * Dh});
  k_.resize({n, Hkv * Dh});
  v_.resize({n, Hkv * Dh});
  attn_.resize({n, H * Dh});
  ops::rms_norm(x_.data(), w.attn_norm.f32(), xn_.data(), n, D, c.rms_eps);
  w.q.apply(ctx, xn_.data(), n, q_.data(), clip_);
  w.k.apply(ctx, xn_.data(), n, k_.data(), clip_);
  w.v.apply(ctx, xn_.data(), n, v_.data(), clip_);
  ops::rms_norm(q_.data(), w.q_norm.f32(), q_.data(), n * H, Dh, c.rms_eps);
  ops::rms_norm(k_.data(), w.k_norm.f32(), k_.data(), n * Hkv, Dh, c.rms_eps);
  ops::rms_norm(v_.data(), nullptr, v_.data(), n * Hkv, Dh, c.rms_eps);
  // Padding patches keep their (-1, -1) position, as in HF; no real patch attends to them.
  for (int64_t t = 0; t < n; ++t) {
    apply_gemma4_vision_rope(rope_, q_.row(t), H, Dh, m.xs[t], m.ys[t]);
    apply_gemma4_vision_rope(rope_, k_.row(t), Hkv, Dh, m.xs[t], m.ys[t]);
  }
  nn::AttentionShape a = gemma4_vision_attention_shape(c);
  a.low_precision = low_precision_attention_;
  nn::attention(ctx, a, q_.data(), n, 0, k_.data(), v_.data(), attn_.data(), m.all_valid() ? nullptr : m.valid.data());
  w.o.apply(ctx, attn_.data(), n, h_.data(), clip_);
  ops::rms_norm(h_.data(), w.post_attn_norm.f32(), h_.data(), n, D, c.rms_eps);
  ops::add(x_.data(), h_.data(), n * D);

  ops::rms_norm(x_.data(), w.ffn_norm.f32(), xn_.data(), n, D, c.rms_eps);
  gate_.resize({n, c.ffn});
  up_.resize({n, c.ffn});
  w.gate.apply(ctx, xn_.data(), n, gate_.data(), clip_);
  w.up.apply(ctx, xn_.data(), n, up_.data(), clip_);
  if (c.act == ops::Activation::GeluTanh)
    gelu_tanh_mul_f32(ctx.kernels, gate_.data(), up_.data(), gate_.data(), n * c.ffn);  // SIMD, same formula
  else
    ops::gated_act(c.act, gate_.data(), up_.data(), gate_.data(), n * c.ffn);
  w.down.apply(ctx, gate_.data(), n, h_.data(), clip_);
  ops::rms_norm(h_.data(), w.post_ffn_norm.f32(), h_.data(), n, D, c.rms_eps);
  ops::add(x_.data(), h_.data(), n * D);
}

int64_t Gemma4VisionEncoder::encode(Context& ctx, const float* pixel_values, const int64_t* positions,
                                    int64_t n_patches, Tensor& out, const ActivationTap& tap) {
  const Gemma4VisionConfig& c = cfg_;
  const int64_t D = c.hidden;
  const Gemma4VisionPatchMap m = gemma4_vision_patch_map(c, positions, n_patches, (bool)tap);
  const int64_t n = (int64_t)m.rows.size();

  // 1. Patch embedding.
  x_.resize({n, D});
  Tensor centered({n, c.patch_values()});
  gemma4_vision_centered_pixels(c, m, pixel_values, centered.data());
  ops::linear(ctx, w_.input_proj, centered.data(), n, x_.data());
  add_gemma4_vision_positions(c, w_.position_table, m, x_.data());
  if (tap) tap("vision.hidden_states.00", x_.data(), n, D);

  // 2. Encoder.
  for (int64_t l = 0; l < c.n_layers; ++l) {
    layer_forward(ctx, w_.layers[l], m);
    if (tap && l + 1 < c.n_layers) tap(str_cat("vision.hidden_states.", l + 1 < 10 ? "0" : "", l + 1), x_.data(), n,
                                       D);
  }

  // 3. Pooling by position, then the optional standardisation.
  const int64_t n_out = m.n_tokens;
  Tensor pooled({n_out, D});
  gemma4_vision_pool(c, m, x_.data(), pooled.data());
  gemma4_vision_standardize(c, w_, pooled.data(), n_out);
  if (tap) {
    tap(str_cat("vision.hidden_states.", c.n_layers < 10 ? "0" : "", c.n_layers), pooled.data(), n_out, D);
    tap("vision.last_hidden_state", pooled.data(), n_out, D);
  }

  // 4. Projector.
  ops::rms_norm(pooled.data(), nullptr, pooled.data(), n_out, D, c.rms_eps);
  out.resize({n_out, text_hidden_});
  ops::linear(ctx, w_.projection, pooled.data(), n_out, out.data());
  if (tap) tap("vision.image_features", out.data(), n_out, text_hidden_);
  return n_out;
}

}  // namespace edgevl
