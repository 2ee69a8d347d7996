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
#include <cstring>
#include <string>

#include "core/error.h"
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

Gemma4VisionEncoder::Gemma4VisionEncoder(const ModelSource& src, Gemma4VisionConfig cfg, int64_t text_hidden)
    : cfg_(std::move(cfg)), text_hidden_(text_hidden), loader_(src) {
  const Gemma4VisionConfig& c = cfg_;
  const int64_t D = c.hidden, Q = c.n_heads * c.head_dim, KV = c.n_kv_heads * c.head_dim, F = c.ffn;
  const std::string p = "model.vision_tower.";
  input_proj_ = loader_.load((p + "patch_embedder.input_proj.weight").c_str(), nullptr, {D, c.patch_values()}, 0);
  position_table_ = loader_.load((p + "patch_embedder.position_embedding_table").c_str(), nullptr,
                                 {2, c.position_table, D}, 0);
  EV_CHECK(position_table_.dtype == DType::F32, src.path(), ": the vision position table must be float32");
  if (c.standardize) {
    std_bias_ = loader_.load((p + "std_bias").c_str(), nullptr, {D}, kVector);
    std_scale_ = loader_.load((p + "std_scale").c_str(), nullptr, {D}, kVector);
  }
  projection_ = loader_.load("model.embed_vision.embedding_projection.weight", nullptr, {text_hidden, D}, 0);
  layers_.resize(c.n_layers);
  const std::string lp = p + "encoder.layers.{L}.";
  for (int64_t l = 0; l < c.n_layers; ++l) {
    Layer& w = layers_[l];
    auto norm = [&](const char* name, int64_t n) {
      return loader_.load((lp + name + ".weight").c_str(), nullptr, {n}, kVector, l);
    };
    w.attn_norm = norm("input_layernorm", D);
    w.post_attn_norm = norm("post_attention_layernorm", D);
    w.ffn_norm = norm("pre_feedforward_layernorm", D);
    w.post_ffn_norm = norm("post_feedforward_layernorm", D);
    w.q_norm = norm("self_attn.q_norm", c.head_dim);
    w.k_norm = norm("self_attn.k_norm", c.head_dim);
    w.q.load(loader_, lp + "self_attn.q_proj", Q, D, c.clipped_linears, l);
    w.k.load(loader_, lp + "self_attn.k_proj", KV, D, c.clipped_linears, l);
    w.v.load(loader_, lp + "self_attn.v_proj", KV, D, c.clipped_linears, l);
    w.o.load(loader_, lp + "self_attn.o_proj", D, Q, c.clipped_linears, l);
    w.gate.load(loader_, lp + "mlp.gate_proj", F, D, c.clipped_linears, l);
    w.up.load(loader_, lp + "mlp.up_proj", F, D, c.clipped_linears, l);
    w.down.load(loader_, lp + "mlp.down_proj", D, F, c.clipped_linears, l);
  }
  // Gemma4VisionRotaryEmbedding: frequencies over head_dim / 2 for each spatial axis.
  nn::RopeConfig rc;
  rc.theta = c.rope_theta;
  rope_ = nn::Rope(rc, c.head_dim / 2);
}

void Gemma4VisionEncoder::layer_forward(Context& ctx, const Layer& w, const std::vector<int64_t>& xs,
                                        const std::vector<int64_t>& ys, const std::vector<uint8_t>& valid, int64_t n) {
  const Gemma4VisionConfig& c = cfg_;
  const int64_t D = c.hidden, H = c.n_heads, Hkv = c.n_kv_heads, Dh = c.head_dim, half = Dh / 2;
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
  for (int64_t t = 0; t < n; ++t) {
    // Padding patches keep their (-1, -1) position, as in HF; no real patch attends to them.
    for (int64_t h = 0; h < H; ++h) {
      rope_.apply(q_.row(t) + h * Dh, 1, half, xs[t]);
      rope_.apply(q_.row(t) + h * Dh + half, 1, half, ys[t]);
    }
    for (int64_t h = 0; h < Hkv; ++h) {
      rope_.apply(k_.row(t) + h * Dh, 1, half, xs[t]);
      rope_.apply(k_.row(t) + h * Dh + half, 1, half, ys[t]);
    }
  }
  nn::AttentionShape a;
  a.n_heads = H;
  a.n_kv_heads = Hkv;
  a.head_dim = Dh;
  a.scale = 1.0f;
  a.causal = false;
  nn::attention(ctx, a, q_.data(), n, 0, k_.data(), v_.data(), attn_.data(), valid.data());
  w.o.apply(ctx, attn_.data(), n, h_.data(), clip_);
  ops::rms_norm(h_.data(), w.post_attn_norm.f32(), h_.data(), n, D, c.rms_eps);
  ops::add(x_.data(), h_.data(), n * D);

  ops::rms_norm(x_.data(), w.ffn_norm.f32(), xn_.data(), n, D, c.rms_eps);
  gate_.resize({n, c.ffn});
  up_.resize({n, c.ffn});
  w.gate.apply(ctx, xn_.data(), n, gate_.data(), clip_);
  w.up.apply(ctx, xn_.data(), n, up_.data(), clip_);
  ops::gated_act(c.act, gate_.data(), up_.data(), gate_.data(), n * c.ffn);
  w.down.apply(ctx, gate_.data(), n, h_.data(), clip_);
  ops::rms_norm(h_.data(), w.post_ffn_norm.f32(), h_.data(), n, D, c.rms_eps);
  ops::add(x_.data(), h_.data(), n * D);
}

int64_t Gemma4VisionEncoder::encode(Context& ctx, const float* pixel_values, const int64_t* positions,
                                    int64_t n_patches, Tensor& out, const ActivationTap& tap) {
  const Gemma4VisionConfig& c = cfg_;
  const int64_t D = c.hidden, k = c.pooling_kernel, kk = k * k;
  EV_CHECK(n_patches > 0 && n_patches % kk == 0, "vision: ", n_patches, " patches is not a multiple of ", kk,
           " (pooling_kernel_size squared)");
  const int64_t out_len = n_patches / kk;

  // Positions and the padding mask; real patches must fall inside the position table.
  std::vector<int64_t> xs(n_patches), ys(n_patches);
  std::vector<uint8_t> valid(n_patches);
  int64_t max_x = 0;
  for (int64_t t = 0; t < n_patches; ++t) {
    xs[t] = positions[2 * t];
    ys[t] = positions[2 * t + 1];
    valid[t] = !(xs[t] == -1 && ys[t] == -1);
    if (!valid[t]) continue;
    EV_CHECK(xs[t] >= 0 && ys[t] >= 0 && xs[t] < c.position_table && ys[t] < c.position_table, "vision: patch ", t,
             " has position (", xs[t], ", ", ys[t], ") outside the ", c.position_table, "-entry position table");
    max_x = std::max(max_x, xs[t]);
  }

  // 1. Patch embedding.
  x_.resize({n_patches, D});
  Tensor centered({n_patches, c.patch_values()});
  for (int64_t i = 0; i < n_patches * c.patch_values(); ++i) centered.data()[i] = 2.0f * (pixel_values[i] - 0.5f);
  ops::linear(ctx, input_proj_, centered.data(), n_patches, x_.data());
  const float* table = static_cast<const float*>(position_table_.data);
  for (int64_t t = 0; t < n_patches; ++t) {
    if (!valid[t]) continue;
    ops::add(x_.row(t), table + xs[t] * D, D);
    ops::add(x_.row(t), table + (c.position_table + ys[t]) * D, D);
  }
  if (tap) tap("vision.hidden_states.00", x_.data(), n_patches, D);

  // 2. Encoder.
  for (int64_t l = 0; l < c.n_layers; ++l) {
    layer_forward(ctx, layers_[l], xs, ys, valid, n_patches);
    if (tap && l + 1 < c.n_layers) tap(str_cat("vision.hidden_states.", l + 1 < 10 ? "0" : "", l + 1), x_.data(),
                                       n_patches, D);
  }

  // 3. Pooling by position (Gemma4VisionPooler._avg_pool_by_positions), skipped when every patch
  // is already its own soft token.
  Tensor pooled({out_len, D});
  std::vector<uint8_t> used(out_len, 0);
  std::fill(pooled.data(), pooled.data() + out_len * D, 0.0f);
  const float root = (float)std::sqrt((double)D);
  if (kk == 1) {
    for (int64_t t = 0; t < n_patches; ++t)
      if (valid[t]) std::memcpy(pooled.row(t), x_.row(t), D * sizeof(float));
    std::fill(used.begin(), used.end(), 1);
  } else {
    const int64_t grid_w = (max_x + 1) / k;
    for (int64_t t = 0; t < n_patches; ++t) {
      // Padding patches land in bucket 0 with zero hidden states, as in HF.
      const int64_t bx = std::max<int64_t>(xs[t], 0) / k, by = std::max<int64_t>(ys[t], 0) / k;
      const int64_t bucket = bx + grid_w * by;
      EV_CHECK(bucket < out_len, "vision: patch ", t, " pools into soft token ", bucket, " of ", out_len,
               " (positions do not fit the patch count)");
      used[bucket] = 1;
      if (valid[t]) ops::add_scaled(pooled.row(bucket), x_.row(t), 1.0f / (float)kk, D);
    }
  }
  int64_t n_out = 0;
  for (int64_t b = 0; b < out_len; ++b) {
    if (!used[b]) continue;
    float* dst = pooled.row(n_out++);
    if (dst != pooled.row(b)) std::memmove(dst, pooled.row(b), D * sizeof(float));
    ops::scale(dst, root, D);
    if (c.standardize)
      for (int64_t i = 0; i < D; ++i) dst[i] = (dst[i] - std_bias_.f32()[i]) * std_scale_.f32()[i];
  }
  if (tap) {
    tap(str_cat("vision.hidden_states.", c.n_layers < 10 ? "0" : "", c.n_layers), pooled.data(), n_out, D);
    tap("vision.last_hidden_state", pooled.data(), n_out, D);
  }

  // 4. Projector.
  ops::rms_norm(pooled.data(), nullptr, pooled.data(), n_out, D, c.rms_eps);
  out.resize({n_out, text_hidden_});
  ops::linear(ctx, projection_, pooled.data(), n_out, out.data());
  if (tap) tap("vision.image_features", out.data(), n_out, text_hidden_);
  return n_out;
}

}  // namespace edgevl
