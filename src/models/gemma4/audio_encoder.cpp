// Gemma 4 audio tower. Mirrors HF transformers modeling_gemma4.py (Gemma4AudioModel and the
// modules it is built from, named at each step below) and Gemma4MultimodalEmbedder; spec
// ../shared/specs/gemma4.md §4. Activations are [frames, width] row-major throughout; the
// subsampler keeps its feature maps channels-last, [T, F, C], which is both what its LayerNorm
// over channels wants and the (freq-major, channel-minor) order its projection reads.
#include "models/gemma4/audio_encoder.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "kernels/quants.h"

namespace edgevl {

namespace {

// The checks every reader applies (the sizes the encoder relies on, finite settings).
void check_audio_config(const Gemma4AudioConfig& c, const std::string& where) {
  auto bad = [&](const char* what, auto v) { fail(where, ": gemma4 audio: invalid ", what, " ", v); };
  if (c.hidden <= 0 || c.hidden % 2 != 0) bad("hidden_size (must be positive and even)", c.hidden);
  if (c.n_layers <= 0) bad("num_hidden_layers", c.n_layers);
  if (c.n_heads <= 0 || c.hidden % c.n_heads != 0) bad("num_attention_heads (must divide hidden_size)", c.n_heads);
  // HF sizes input_proj_linear as (channels0 / 4) * channels1, i.e. for channels0 mel bins, which
  // two ceil(n / 2) convolutions only reduce to channels0 / 4 when channels0 is a multiple of 4.
  if (c.conv_channels0 <= 0 || c.conv_channels0 % 4 != 0)
    bad("subsampling_conv_channels[0] (must be a positive multiple of 4)", c.conv_channels0);
  if (c.conv_channels1 <= 0) bad("subsampling_conv_channels[1]", c.conv_channels1);
  if (c.conv_kernel <= 0) bad("conv_kernel_size", c.conv_kernel);
  if (c.chunk <= 0) bad("attention_chunk_size", c.chunk);
  if (c.context_left < 1) bad("attention_context_left (must be >= 1)", c.context_left);
  if (c.context_right < 0) bad("attention_context_right", c.context_right);
  if (!(c.logit_cap > 0) || !std::isfinite(c.logit_cap)) bad("attention_logit_cap", c.logit_cap);
  if (!std::isfinite(c.invalid_logit)) bad("attention_invalid_logits_value", c.invalid_logit);
  if (!std::isfinite(c.residual_weight)) bad("residual_weight", c.residual_weight);
  if (!(c.rms_eps > 0)) bad("rms_norm_eps", c.rms_eps);
  if (!(c.gradient_clipping > 0)) bad("gradient_clipping", c.gradient_clipping);
  if (c.output_dims <= 0) bad("output_proj_dims", c.output_dims);
}

}  // namespace

Gemma4AudioConfig gemma4_audio_config_from_hf(const HfConfig& hf) {
  Gemma4AudioConfig c;
  c.hidden = hf.get_int("hidden_size", c.hidden);
  c.n_layers = hf.get_int("num_hidden_layers", c.n_layers);
  c.n_heads = hf.get_int("num_attention_heads", c.n_heads);
  const std::vector<int64_t> ch = hf.get_int_array("subsampling_conv_channels", {c.conv_channels0, c.conv_channels1});
  EV_CHECK(ch.size() == 2, "gemma4 audio: subsampling_conv_channels has ", ch.size(), " entries, expected 2");
  c.conv_channels0 = ch[0];
  c.conv_channels1 = ch[1];
  c.n_mel = c.conv_channels0;
  c.conv_kernel = hf.get_int("conv_kernel_size", c.conv_kernel);
  c.chunk = hf.get_int("attention_chunk_size", c.chunk);
  c.context_left = hf.get_int("attention_context_left", c.context_left);
  c.context_right = hf.get_int("attention_context_right", c.context_right);
  c.logit_cap = (float)hf.get_float("attention_logit_cap", c.logit_cap);
  c.invalid_logit = (float)hf.get_float("attention_invalid_logits_value", c.invalid_logit);
  c.residual_weight = (float)hf.get_float("residual_weight", c.residual_weight);
  c.rms_eps = (float)hf.get_float("rms_norm_eps", c.rms_eps);
  // HF clamps to min(gradient_clipping, the weight dtype's max); float32 here.
  c.gradient_clipping =
      (float)std::min(hf.get_float("gradient_clipping", c.gradient_clipping), (double)std::numeric_limits<float>::max());
  c.clipped_linears = hf.get_bool("use_clipped_linears", c.clipped_linears);
  c.act = ops::activation_from_name(hf.get_string("hidden_act", "silu").c_str());
  c.output_dims = hf.get_int("output_proj_dims", c.output_dims);

  check_audio_config(c, hf.path());
  return c;
}

int64_t gemma4_audio_output_frames(int64_t frames) { return frames <= 0 ? 0 : ((frames + 1) / 2 + 1) / 2; }

std::vector<uint8_t> gemma4_audio_output_mask(const uint8_t* mask, int64_t frames) {
  std::vector<uint8_t> out(gemma4_audio_output_frames(frames), 1);
  if (mask)
    for (size_t t = 0; t < out.size(); ++t) out[t] = mask[4 * t] ? 1 : 0;
  return out;
}

namespace {


float activate(ops::Activation a, float v) {
  switch (a) {
    case ops::Activation::Silu:
      return v / (1.0f + std::exp(-v));
    case ops::Activation::GeluTanh:
      return 0.5f * v * (1.0f + std::tanh(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    case ops::Activation::Gelu:
      return 0.5f * v * (1.0f + std::erf(v * 0.7071067811865476f));
  }
  return v;
}

// In place over n values, spread over the pool (the feed-forward's 4D-wide activation is a few
// million exp() per layer at the real size).
void activate(Context& ctx, ops::Activation a, float* x, int64_t n) {
  ctx.pool.parallel_for(n, 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) x[i] = activate(a, x[i]);
  });
}

// torch.clamp(x, lo, hi).
void clamp(float* x, int64_t n, float lo, float hi) {
  for (int64_t i = 0; i < n; ++i) x[i] = std::min(std::max(x[i], lo), hi);
}

// The whole tensor as float32, whatever its dtype (conv kernels are read once at load).
std::vector<float> to_f32(const WeightRef& w) {
  int64_t n = 1;
  for (int64_t d : w.shape) n *= d;
  std::vector<float> out(n);
  dequantize_row(w.dtype, w.data, out.data(), n);
  return out;
}

// A float32 matrix we own, as a WeightRef for ops::linear.
WeightRef f32_matrix(const std::vector<float>& data, int64_t rows, int64_t cols, const std::string& name) {
  WeightRef r;
  r.name = name;
  r.dtype = DType::F32;
  r.shape = {rows, cols};
  r.data = data.data();
  r.row_bytes = cols * sizeof(float);
  return r;
}

std::string tap_name(int64_t i) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "audio.hidden_states.%02lld", (long long)i);
  return buf;
}

using Enc = Gemma4AudioEncoder;
using Kind = AudioTensorKind;

// The weight table: every tensor once, with its HF name and the name llama.cpp's converter gives it
// in the mmproj ({L}: layer). Checked against the converter's own mapping (gguf-py
// tensor_mapping.py on the names conversion/gemma.py makes: "model.audio_tower." -> "conformer.",
// ".linear." dropped, ".weight" added to per_dim_scale) and against what clip.cpp loads for
// PROJECTOR_TYPE_GEMMA4A. Clippable linears are module prefixes (HF adds .linear.weight, the
// mmproj .weight; the bounds hang off both).
enum Dim { kOne, kThree, kD, kD2, kD4, kHeadDim, kKernel, kC0, kC1, kSubIn, kOut, kText };

template <typename Slots>
struct TensorSpec {
  WeightRef Slots::*slot;
  const char* hf;
  const char* gguf;
  std::vector<Dim> shape;  // HF's
  Kind kind;
};
struct ClippedSpec {
  ClippedLinear Enc::LayerWeights::*slot;
  const char* hf;
  const char* gguf;
  Dim out, in;
};

#define EV_AT "model.audio_tower."
#define EV_AL "model.audio_tower.layers.{L}."
using W = Enc::Weights;
using L = Enc::LayerWeights;
const TensorSpec<W> kTower[] = {
    {&W::conv0, EV_AT "subsample_conv_projection.layer0.conv.weight", "a.conv1d.0.weight", {kC0, kOne, kThree, kThree},
     Kind::F32Matrix},
    {&W::norm0, EV_AT "subsample_conv_projection.layer0.norm.weight", "a.conv1d.0.norm.weight", {kC0}, Kind::Vector},
    {&W::conv1, EV_AT "subsample_conv_projection.layer1.conv.weight", "a.conv1d.1.weight", {kC1, kC0, kThree, kThree},
     Kind::F32Matrix},
    {&W::norm1, EV_AT "subsample_conv_projection.layer1.norm.weight", "a.conv1d.1.norm.weight", {kC1}, Kind::Vector},
    // F32 too: the converter's conv rule (".conv" or "_conv" in the HF name) catches it.
    {&W::input_proj, EV_AT "subsample_conv_projection.input_proj_linear.weight", "a.input_projection.weight",
     {kD, kSubIn}, Kind::F32Matrix},
    {&W::output_proj, EV_AT "output_proj.weight", "a.pre_encode.out.weight", {kOut, kD}, Kind::Matrix},
    {&W::output_bias, EV_AT "output_proj.bias", "a.pre_encode.out.bias", {kOut}, Kind::Vector},
    {&W::embed_proj, "model.embed_audio.embedding_projection.weight", "mm.a.input_projection.weight", {kText, kOut},
     Kind::Matrix},
};
const TensorSpec<L> kLayer[] = {
    {&L::ff1_pre_norm, EV_AL "feed_forward1.pre_layer_norm.weight", "a.blk.{L}.ffn_norm.weight", {kD}, Kind::Vector},
    {&L::ff1_post_norm, EV_AL "feed_forward1.post_layer_norm.weight", "a.blk.{L}.ffn_post_norm.weight", {kD},
     Kind::Vector},
    {&L::ff2_pre_norm, EV_AL "feed_forward2.pre_layer_norm.weight", "a.blk.{L}.ffn_norm_1.weight", {kD}, Kind::Vector},
    {&L::ff2_post_norm, EV_AL "feed_forward2.post_layer_norm.weight", "a.blk.{L}.ffn_post_norm_1.weight", {kD},
     Kind::Vector},
    {&L::norm_pre_attn, EV_AL "norm_pre_attn.weight", "a.blk.{L}.attn_pre_norm.weight", {kD}, Kind::Vector},
    {&L::norm_post_attn, EV_AL "norm_post_attn.weight", "a.blk.{L}.attn_post_norm.weight", {kD}, Kind::Vector},
    {&L::norm_out, EV_AL "norm_out.weight", "a.blk.{L}.ln2.weight", {kD}, Kind::Vector},
    // The light conv's two norms cross over: tensor_mapping.py files the pre-norm under conv_norm and
    // the post-conv norm under norm_conv (clip.cpp loads them the other way round to match).
    {&L::lconv_pre_norm, EV_AL "lconv1d.pre_layer_norm.weight", "a.blk.{L}.conv_norm.weight", {kD}, Kind::Vector},
    {&L::lconv_conv_norm, EV_AL "lconv1d.conv_norm.weight", "a.blk.{L}.norm_conv.weight", {kD}, Kind::Vector},
    {&L::rel_k, EV_AL "self_attn.relative_k_proj.weight", "a.blk.{L}.attn_k_rel.weight", {kD, kD}, Kind::Matrix},
    {&L::per_dim_scale, EV_AL "self_attn.per_dim_scale", "a.blk.{L}.per_dim_scale.weight", {kHeadDim},
     Kind::PerDimScale},
    {&L::dw_conv, EV_AL "lconv1d.depthwise_conv1d.weight", "a.blk.{L}.conv_dw.weight", {kD, kOne, kKernel},
     Kind::Depthwise},
};
const ClippedSpec kClipped[] = {
    {&L::ff1_up, EV_AL "feed_forward1.ffw_layer_1", "a.blk.{L}.ffn_up", kD4, kD},
    {&L::ff1_down, EV_AL "feed_forward1.ffw_layer_2", "a.blk.{L}.ffn_down", kD, kD4},
    {&L::ff2_up, EV_AL "feed_forward2.ffw_layer_1", "a.blk.{L}.ffn_up_1", kD4, kD},
    {&L::ff2_down, EV_AL "feed_forward2.ffw_layer_2", "a.blk.{L}.ffn_down_1", kD, kD4},
    {&L::q, EV_AL "self_attn.q_proj", "a.blk.{L}.attn_q", kD, kD},
    {&L::k, EV_AL "self_attn.k_proj", "a.blk.{L}.attn_k", kD, kD},
    {&L::v, EV_AL "self_attn.v_proj", "a.blk.{L}.attn_v", kD, kD},
    {&L::post, EV_AL "self_attn.post", "a.blk.{L}.attn_out", kD, kD},
    {&L::lconv_start, EV_AL "lconv1d.linear_start", "a.blk.{L}.conv_pw1", kD2, kD},
    {&L::lconv_end, EV_AL "lconv1d.linear_end", "a.blk.{L}.conv_pw2", kD, kD},
};
#undef EV_AT
#undef EV_AL
constexpr const char* kClipBounds[] = {"input_min", "input_max", "output_min", "output_max"};

int64_t dim_of(const Gemma4AudioConfig& c, int64_t text_hidden, Dim d) {
  switch (d) {
    case kOne: return 1;
    case kThree: return 3;
    case kD: return c.hidden;
    case kD2: return 2 * c.hidden;
    case kD4: return 4 * c.hidden;
    case kHeadDim: return c.head_dim();
    case kKernel: return c.conv_kernel;
    case kC0: return c.conv_channels0;
    case kC1: return c.conv_channels1;
    case kSubIn: return (c.conv_channels0 / 4) * c.conv_channels1;
    case kOut: return c.output_dims;
    case kText: return text_hidden;
  }
  return 0;
}

std::vector<int64_t> shape_of(const Gemma4AudioConfig& c, int64_t text_hidden, const std::vector<Dim>& dims) {
  std::vector<int64_t> s;
  for (Dim d : dims) s.push_back(dim_of(c, text_hidden, d));
  return s;
}

// The mmproj's shape for an HF shape: the depthwise kernel without its unit axis, bounds as [1].
std::vector<int64_t> mmproj_shape(Kind kind, const std::vector<int64_t>& hf) {
  if (kind == Kind::Depthwise) return {hf[0], hf[2]};
  if (kind == Kind::Clip) return {1};
  return hf;
}

// One table entry into its slot, in HF's layout, listed under its HF name.
template <typename Slots>
void load_spec(WeightLoader& loader, bool gguf, Slots& slots, const TensorSpec<Slots>& s, const Gemma4AudioConfig& c,
               int64_t text_hidden, int64_t layer) {
  const std::vector<int64_t> shape = shape_of(c, text_hidden, s.shape);
  const bool vector = s.kind == Kind::Vector || s.kind == Kind::PerDimScale;
  WeightRef& w = slots.*(s.slot);
  w = loader.load(s.hf, s.gguf, gguf ? mmproj_shape(s.kind, shape) : shape, vector ? kVector : kRequired, layer);
  w.shape = shape;  // the depthwise kernel's [D, K] rows are its [D, 1, K] rows
  loader.remember(s.hf, layer, &w);
}


// Scratch for one encode() call.
struct Scratch {
  Tensor x, xn, h, wide, q, k, v, attn, rel_k, clip_in;
};

// Gemma4AudioSubSampleConvProjectionLayer on channels-last maps: zero the masked input frames,
// Conv2d(3x3, stride 2, padding 1, no bias) as im2col + matmul, LayerNorm over channels (weight,
// no bias), ReLU. in [Tin, Fin, Cin] -> out [Tout, Fout, Cout]. `kernel` is [Cout, 3*3*Cin] with
// columns ordered (kh, kw, ci).
void subsample_layer(Context& ctx, const float* in, const uint8_t* mask, int64_t Tin, int64_t Fin, int64_t Cin,
                     const WeightRef& kernel, const float* norm_w, float eps, Tensor& out) {
  const int64_t Tout = (Tin + 1) / 2, Fout = (Fin + 1) / 2, Cout = kernel.rows(), K = 9 * Cin;
  out.resize({Tout, Fout, Cout});
  // Output time rows per im2col block: keeps the column buffer near 4 MB for the real tower.
  const int64_t rows_per_t = Fout, block_t = std::max<int64_t>(1, (1 << 20) / (rows_per_t * K));
  std::vector<float> cols;
  for (int64_t t0 = 0; t0 < Tout; t0 += block_t) {
    const int64_t nt = std::min(block_t, Tout - t0);
    cols.assign(nt * rows_per_t * K, 0.0f);
    for (int64_t t = 0; t < nt; ++t)
      for (int64_t f = 0; f < Fout; ++f) {
        float* row = cols.data() + (t * Fout + f) * K;
        for (int64_t kh = 0; kh < 3; ++kh) {
          const int64_t ti = 2 * (t0 + t) + kh - 1;
          if (ti < 0 || ti >= Tin || (mask && !mask[ti])) continue;
          for (int64_t kw = 0; kw < 3; ++kw) {
            const int64_t fi = 2 * f + kw - 1;
            if (fi < 0 || fi >= Fin) continue;
            std::memcpy(row + (kh * 3 + kw) * Cin, in + (ti * Fin + fi) * Cin, Cin * sizeof(float));
          }
        }
      }
    ops::linear(ctx, kernel, cols.data(), nt * rows_per_t, out.data() + t0 * rows_per_t * Cout);
  }
  // nn.LayerNorm(Cout, bias=False) then ReLU, per (t, f) position.
  for (int64_t r = 0; r < Tout * Fout; ++r) {
    float* y = out.data() + r * Cout;
    double mean = 0, var = 0;
    for (int64_t c = 0; c < Cout; ++c) mean += y[c];
    mean /= Cout;
    for (int64_t c = 0; c < Cout; ++c) var += (y[c] - mean) * (y[c] - mean);
    const float inv = (float)(1.0 / std::sqrt(var / Cout + eps)), m = (float)mean;
    for (int64_t c = 0; c < Cout; ++c) y[c] = std::max(0.0f, (y[c] - m) * inv * norm_w[c]);
  }
}

}  // namespace

void load_gemma4_audio_weights(WeightLoader& loader, const Gemma4AudioConfig& c, int64_t text_hidden,
                               Gemma4AudioEncoder::Weights& w, bool gguf) {
  for (const auto& s : kTower) load_spec(loader, gguf, w, s, c, text_hidden, -1);
  w.layers.resize(c.n_layers);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    Enc::LayerWeights& lw = w.layers[l];
    for (const auto& s : kLayer) load_spec(loader, gguf, lw, s, c, text_hidden, l);
    for (const ClippedSpec& s : kClipped) {
      const int64_t out = dim_of(c, text_hidden, s.out), in = dim_of(c, text_hidden, s.in);
      (lw.*(s.slot)).load(loader, s.hf, s.gguf, out, in, c.clipped_linears, l);
    }
  }
  w.per_dim_scale_softplus = gguf;
}

std::vector<Gemma4AudioTensor> gemma4_audio_tensors(const Gemma4AudioConfig& c, int64_t text_hidden) {
  std::vector<Gemma4AudioTensor> t;
  auto add = [&](const char* hf, const char* gg, std::vector<int64_t> shape, Kind kind, int64_t layer) {
    std::vector<int64_t> mm = mmproj_shape(kind, shape);
    t.push_back({expand_layer_name(hf, layer), expand_layer_name(gg, layer), std::move(shape), std::move(mm), kind});
  };
  for (const auto& s : kTower) add(s.hf, s.gguf, shape_of(c, text_hidden, s.shape), s.kind, -1);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    for (const ClippedSpec& s : kClipped) {
      const std::string hf = expand_layer_name(s.hf, l), gg = expand_layer_name(s.gguf, l);
      add((hf + ".linear.weight").c_str(), (gg + ".weight").c_str(),
          {dim_of(c, text_hidden, s.out), dim_of(c, text_hidden, s.in)}, Kind::Matrix, -1);
      if (c.clipped_linears)
        for (const char* b : kClipBounds) add((hf + "." + b).c_str(), (gg + "." + b).c_str(), {}, Kind::Clip, -1);
    }
    for (const auto& s : kLayer) add(s.hf, s.gguf, shape_of(c, text_hidden, s.shape), s.kind, l);
  }
  return t;
}

const std::vector<Gemma4AudioMmprojSetting>& gemma4_audio_mmproj_settings() {
  using C = Gemma4AudioConfig;
  static const std::vector<Gemma4AudioMmprojSetting> settings = {
      {"clip.audio.chunk_size", true, 12, [](const C& c) { return (double)c.chunk; },
       [](C& c, double v) { c.chunk = (int64_t)v; }},
      {"edgevl.audio.attention.context_left", true, 13, [](const C& c) { return (double)c.context_left; },
       [](C& c, double v) { c.context_left = (int64_t)v; }},
      {"edgevl.audio.attention.context_right", true, 0, [](const C& c) { return (double)c.context_right; },
       [](C& c, double v) { c.context_right = (int64_t)v; }},
      {"edgevl.audio.attention.logit_cap", false, 50, [](const C& c) { return (double)c.logit_cap; },
       [](C& c, double v) { c.logit_cap = (float)v; }},
      {"edgevl.audio.attention.invalid_logits_value", false, -1e9, [](const C& c) { return (double)c.invalid_logit; },
       [](C& c, double v) { c.invalid_logit = (float)v; }},
      {"edgevl.audio.residual_weight", false, 0.5, [](const C& c) { return (double)c.residual_weight; },
       [](C& c, double v) { c.residual_weight = (float)v; }},
      // llama.cpp clamps nothing; HF's 1e10 never binds.
      {"edgevl.audio.gradient_clipping", false, 1e10, [](const C& c) { return (double)c.gradient_clipping; },
       [](C& c, double v) { c.gradient_clipping = (float)v; }},
  };
  return settings;
}

Gemma4AudioConfig gemma4_audio_config_from_mmproj(const gguf::File& f, int64_t* text_hidden) {
  EV_CHECK(f.get_bool("clip.has_audio_encoder").value_or(false), f.path(), ": the mmproj has no audio encoder");
  const std::string type =
      f.get_string("clip.audio.projector_type").value_or(f.get_string("clip.projector_type").value_or(""));
  EV_CHECK(type == "gemma4a", f.path(), ": not a Gemma 4 audio mmproj (clip.audio.projector_type is '", type,
           "', expected 'gemma4a')");
  auto need = [&](const char* key) {
    const auto v = f.get_int(key);
    EV_CHECK(v.has_value(), f.path(), ": mmproj has no ", key);
    return *v;
  };
  // The sizes the keys leave out come from the tensors that carry them.
  auto shape = [&](const char* name, size_t rank) {
    const TensorRef* t = f.find_tensor(name);
    EV_CHECK(t, f.path(), ": mmproj has no ", name);
    EV_CHECK(t->shape.size() == rank, f.path(), ": ", name, " has ", t->shape.size(), " dimensions, expected ", rank);
    return t->shape;
  };
  Gemma4AudioConfig c;
  c.hidden = need("clip.audio.embedding_length");
  c.n_layers = need("clip.audio.block_count");
  c.n_heads = need("clip.audio.attention.head_count");
  c.n_mel = need("clip.audio.num_mel_bins");
  c.rms_eps = (float)f.get_float("clip.audio.attention.layer_norm_epsilon").value_or(1e-6);
  c.conv_channels0 = shape("a.conv1d.0.weight", 4)[0];
  c.conv_channels1 = shape("a.conv1d.1.weight", 4)[0];
  c.output_dims = shape("a.pre_encode.out.weight", 2)[0];
  c.conv_kernel = shape("a.blk.0.conv_dw.weight", 2)[1];
  c.clipped_linears = f.find_tensor("a.blk.0.attn_q.input_min") != nullptr;
  const std::string act = f.get_string("edgevl.audio.hidden_act").value_or("silu");
  c.act = ops::activation_from_name(act.c_str());
  for (const Gemma4AudioMmprojSetting& s : gemma4_audio_mmproj_settings())
    s.set(c, s.integer ? (double)f.get_int(s.key).value_or((int64_t)s.llamacpp)
                       : f.get_float(s.key).value_or(s.llamacpp));
  *text_hidden = need("clip.audio.projection_dim");
  const int64_t ffn = need("clip.audio.feed_forward_length");
  EV_CHECK(ffn == 4 * c.hidden, f.path(), ": clip.audio.feed_forward_length is ", ffn, ", the Gemma 4 tower has 4 x ",
           c.hidden);
  // HF sizes the subsampler for subsampling_conv_channels[0] mel bins (Gemma4AudioConfig::n_mel).
  EV_CHECK(c.n_mel == c.conv_channels0, f.path(), ": clip.audio.num_mel_bins is ", c.n_mel,
           ", the subsampler (a.conv1d.0) is sized for ", c.conv_channels0);
  EV_CHECK(*text_hidden > 0, f.path(), ": invalid clip.audio.projection_dim ", *text_hidden);
  check_audio_config(c, f.path());
  return c;
}

std::vector<float> gemma4_audio_rel_pos_table(const Gemma4AudioConfig& c) {
  const int64_t P = c.rel_positions(), half = c.hidden / 2;
  const float step = (float)(-std::log(10000.0) / (double)std::max<int64_t>(half - 1, 1));
  std::vector<float> table(P * c.hidden);
  for (int64_t p = 0; p < P; ++p) {
    const float pos = (float)(c.context_size() / 2 - p);
    for (int64_t i = 0; i < half; ++i) {
      const float t = pos * std::exp((float)i * step);
      table[p * c.hidden + i] = std::sin(t);
      table[p * c.hidden + half + i] = std::cos(t);
    }
  }
  return table;
}

Gemma4AudioEncoder::Gemma4AudioEncoder(const ModelSource& src, Gemma4AudioConfig cfg, int64_t text_hidden)
    : cfg_(std::move(cfg)), text_hidden_(text_hidden), loader_(src) {
  const Gemma4AudioConfig& c = cfg_;
  EV_CHECK(text_hidden > 0, "gemma4 audio: invalid text hidden size ", text_hidden);
  load_gemma4_audio_weights(loader_, c, text_hidden, w_, src.is_gguf());
  q_dim_scale_.resize(c.n_layers);
  dw_taps_.resize(c.n_layers);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& lw = w_.layers[l];
    // F.softplus (beta 1, threshold 20) of the learned per-dimension query scale (an mmproj stores it applied).
    const float* pds = lw.per_dim_scale.f32();
    std::vector<float>& qs = q_dim_scale_[l];
    qs.resize(c.head_dim());
    for (int64_t d = 0; d < c.head_dim(); ++d)
      qs[d] = w_.per_dim_scale_softplus ? pds[d] : gemma4_audio_softplus(pds[d]);
    const std::vector<float> dw = to_f32(lw.dw_conv);  // [D, 1, K]
    std::vector<float>& taps = dw_taps_[l];
    taps.resize(c.conv_kernel * c.hidden);
    for (int64_t ch = 0; ch < c.hidden; ++ch)
      for (int64_t k = 0; k < c.conv_kernel; ++k) taps[k * c.hidden + ch] = dw[ch * c.conv_kernel + k];
  }

  // Conv kernels [Cout, Cin, 3, 3] -> [Cout, 3, 3, Cin].
  auto reorder = [](const WeightRef& w, std::vector<float>& dst) {
    const int64_t Cout = w.shape[0], Cin = w.shape[1];
    const std::vector<float> src = to_f32(w);
    dst.resize(Cout * 9 * Cin);
    for (int64_t o = 0; o < Cout; ++o)
      for (int64_t i = 0; i < Cin; ++i)
        for (int64_t k = 0; k < 9; ++k) dst[(o * 9 + k) * Cin + i] = src[(o * Cin + i) * 9 + k];
  };
  reorder(w_.conv0, conv0_k_);
  reorder(w_.conv1, conv1_k_);
  conv0_mat_ = f32_matrix(conv0_k_, c.conv_channels0, 9, w_.conv0.name);
  conv1_mat_ = f32_matrix(conv1_k_, c.conv_channels1, 9 * c.conv_channels0, w_.conv1.name);
  rel_pos_ = gemma4_audio_rel_pos_table(c);
}

namespace {

// Gemma4AudioFeedForward: x += residual_weight * post_norm(W2(act(W1(pre_norm(clip(x)))))), with the
// gradient clamp before each norm.
void feed_forward(Context& ctx, const Gemma4AudioConfig& c, const ClippedLinear& up, const ClippedLinear& down,
                  const WeightRef& pre, const WeightRef& post, int64_t T, Scratch& s) {
  const int64_t D = c.hidden;
  std::memcpy(s.xn.data(), s.x.data(), T * D * sizeof(float));
  clamp(s.xn.data(), T * D, -c.gradient_clipping, c.gradient_clipping);
  ops::rms_norm(s.xn.data(), pre.f32(), s.xn.data(), T, D, c.rms_eps);
  s.wide.resize({T, 4 * D});
  up.apply(ctx, s.xn.data(), T, s.wide.data(), s.clip_in);
  activate(ctx, c.act, s.wide.data(), T * 4 * D);
  down.apply(ctx, s.wide.data(), T, s.h.data(), s.clip_in);
  clamp(s.h.data(), T * D, -c.gradient_clipping, c.gradient_clipping);
  ops::rms_norm(s.h.data(), post.f32(), s.h.data(), T, D, c.rms_eps);
  ops::scale(s.h.data(), c.residual_weight, T * D);
  ops::add(s.x.data(), s.h.data(), T * D);
}

// Gemma4AudioAttention on s.xn [T, D] into s.attn [T, D] (before `post`). Queries are cut into
// blocks of `chunk` frames; each block attends to a window of context_size() keys starting
// context_left - 1 frames before it. Logits = q·k + the Transformer-XL relative term
// (q · relative_k_proj(pos_emb), rel-shifted), soft-capped; keys gemma4_audio_key_visible hides
// get attention_invalid_logits_value, as HF's blocked 5-D mask does.
void attention(Context& ctx, const Gemma4AudioConfig& c, const Enc::LayerWeights& w, const float* q_dim_scale,
               const std::vector<float>& rel_pos, const uint8_t* key_valid, int64_t T, Scratch& s) {
  const int64_t D = c.hidden, H = c.n_heads, Dh = c.head_dim();
  const int64_t W = c.chunk, P = c.context_left - 1, C = c.context_size(), Pn = c.rel_positions();
  s.q.resize({T, D});
  s.k.resize({T, D});
  s.v.resize({T, D});
  s.attn.resize({T, D});
  w.q.apply(ctx, s.xn.data(), T, s.q.data(), s.clip_in);
  w.k.apply(ctx, s.xn.data(), T, s.k.data(), s.clip_in);
  w.v.apply(ctx, s.xn.data(), T, s.v.data(), s.clip_in);
  const float q_scale = c.q_scale();
  for (int64_t t = 0; t < T; ++t) {
    float* q = s.q.row(t);
    for (int64_t h = 0; h < H; ++h)
      for (int64_t d = 0; d < Dh; ++d) q[h * Dh + d] = q[h * Dh + d] * q_scale * q_dim_scale[d];
  }
  ops::scale(s.k.data(), c.k_scale(), T * D);
  s.rel_k.resize({Pn, D});
  ops::linear(ctx, w.rel_k, rel_pos.data(), Pn, s.rel_k.data());

  const int64_t n_blocks = (T + W - 1) / W;
  const float cap = c.logit_cap, invalid = c.invalid_logit;
  ctx.pool.run_tasks(n_blocks * H, [&](int64_t task) {
    const int64_t b = task / H, h = task % H, t0 = b * W;
    std::vector<float> bd(W * Pn, 0.0f), logits(C);
    // bd[i][p] = q_i · rel_k[p] for this block's queries (zero rows past the end, as HF pads).
    for (int64_t i = 0; i < W && t0 + i < T; ++i) {
      const float* q = s.q.row(t0 + i) + h * Dh;
      for (int64_t p = 0; p < Pn; ++p) {
        const float* r = s.rel_k.row(p) + h * Dh;
        float acc = 0;
        for (int64_t d = 0; d < Dh; ++d) acc += q[d] * r[d];
        bd[i * Pn + p] = acc;
      }
    }
    for (int64_t i = 0; i < W && t0 + i < T; ++i) {
      const int64_t t = t0 + i;
      const float* q = s.q.row(t) + h * Dh;
      for (int64_t j = 0; j < C; ++j) {
        const int64_t kv = t0 - P + j;
        const bool in_range = kv >= 0 && kv < T;
        float ac = 0;
        if (in_range) {
          const float* k = s.k.row(kv) + h * Dh;
          for (int64_t d = 0; d < Dh; ++d) ac += q[d] * k[d];
        }
        const int64_t r = gemma4_audio_rel_shift_index(i, j, C, Pn);
        const float rel = r >= 0 ? bd[r] : 0.0f;
        const float logit = cap * std::tanh((ac + rel) / cap);
        logits[j] = gemma4_audio_key_visible(c, t, kv, T, key_valid) ? logit : invalid;
      }
      ops::softmax(logits.data(), C);
      float* o = s.attn.row(t) + h * Dh;
      std::fill(o, o + Dh, 0.0f);
      for (int64_t j = 0; j < C; ++j) {
        const int64_t kv = t0 - P + j;
        if (kv < 0 || kv >= T) continue;  // zero-padded values
        const float* v = s.v.row(kv) + h * Dh;
        for (int64_t d = 0; d < Dh; ++d) o[d] += logits[j] * v[d];
      }
    }
  });
}

// Gemma4AudioLightConv1d: x += W_end(act(conv_norm(clip(causal_depthwise_conv(glu(W_start(pre_norm(x)))))))).
void light_conv(Context& ctx, const Gemma4AudioConfig& c, const Enc::LayerWeights& w, const float* dw_taps, int64_t T,
                Scratch& s) {
  const int64_t D = c.hidden, K = c.conv_kernel;
  ops::rms_norm(s.x.data(), w.lconv_pre_norm.f32(), s.xn.data(), T, D, c.rms_eps);
  s.wide.resize({T, 2 * D});
  w.lconv_start.apply(ctx, s.xn.data(), T, s.wide.data(), s.clip_in);
  // nn.functional.glu over the last dim: first half * sigmoid(second half), into s.xn.
  for (int64_t t = 0; t < T; ++t) {
    const float* a = s.wide.row(t);
    float* y = s.xn.row(t);
    for (int64_t i = 0; i < D; ++i) y[i] = a[i] * (1.0f / (1.0f + std::exp(-a[D + i])));
  }
  // Depthwise Conv1d over time, left-padded by K - 1 (Gemma4AudioCausalConv1d), into s.h.
  for (int64_t t = 0; t < T; ++t) {
    float* y = s.h.row(t);
    std::fill(y, y + D, 0.0f);
    for (int64_t k = 0; k < K; ++k) {
      const int64_t ti = t - (K - 1) + k;
      if (ti < 0) continue;
      const float* x = s.xn.row(ti);
      const float* tap = dw_taps + k * D;
      for (int64_t i = 0; i < D; ++i) y[i] += tap[i] * x[i];
    }
  }
  clamp(s.h.data(), T * D, -c.gradient_clipping, c.gradient_clipping);
  ops::rms_norm(s.h.data(), w.lconv_conv_norm.f32(), s.h.data(), T, D, c.rms_eps);
  activate(ctx, c.act, s.h.data(), T * D);
  w.lconv_end.apply(ctx, s.h.data(), T, s.xn.data(), s.clip_in);
  ops::add(s.x.data(), s.xn.data(), T * D);
}

}  // namespace

int64_t Gemma4AudioEncoder::encode(Context& ctx, const float* features, const uint8_t* mask, int64_t Tf, Tensor& out,
                                   const ActivationTap& tap) const {
  const Gemma4AudioConfig& c = cfg_;
  EV_CHECK(Tf > 0, "gemma4 audio: encode needs at least one feature frame");
  EV_CHECK(features, "gemma4 audio: no features");
  const int64_t D = c.hidden, T = gemma4_audio_output_frames(Tf);

  // Gemma4AudioSubSampleConvProjection: two conv blocks, each on the frames its mask keeps (the
  // mask is subsampled by taking every other frame), then the projection of [F/4 x C1] per frame.
  Tensor m0, m1;
  subsample_layer(ctx, features, mask, Tf, c.n_mel, 1, conv0_mat_, w_.norm0.f32(), c.rms_eps, m0);
  std::vector<uint8_t> mask0;
  if (mask) {
    mask0.resize(m0.dim(0));
    for (int64_t t = 0; t < m0.dim(0); ++t) mask0[t] = mask[2 * t];
  }
  subsample_layer(ctx, m0.data(), mask ? mask0.data() : nullptr, m0.dim(0), m0.dim(1), c.conv_channels0, conv1_mat_,
                  w_.norm1.f32(), c.rms_eps, m1);
  EV_ASSERT(m1.dim(0) == T && m1.dim(1) * m1.dim(2) == w_.input_proj.cols());
  m0 = Tensor();
  const std::vector<uint8_t> out_mask = gemma4_audio_output_mask(mask, Tf);

  Scratch s;
  s.x.resize({T, D});
  s.xn.resize({T, D});
  s.h.resize({T, D});
  ops::linear(ctx, w_.input_proj, m1.data(), T, s.x.data());
  m1 = Tensor();
  if (tap) tap(tap_name(0), s.x.data(), T, D);

  // Gemma4AudioLayer (macaron Conformer block).
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& w = w_.layers[l];
    feed_forward(ctx, c, w.ff1_up, w.ff1_down, w.ff1_pre_norm, w.ff1_post_norm, T, s);
    std::memcpy(s.xn.data(), s.x.data(), T * D * sizeof(float));
    clamp(s.xn.data(), T * D, -c.gradient_clipping, c.gradient_clipping);
    ops::rms_norm(s.xn.data(), w.norm_pre_attn.f32(), s.xn.data(), T, D, c.rms_eps);
    attention(ctx, c, w, q_dim_scale_[l].data(), rel_pos_, mask ? out_mask.data() : nullptr, T, s);
    w.post.apply(ctx, s.attn.data(), T, s.h.data(), s.clip_in);
    clamp(s.h.data(), T * D, -c.gradient_clipping, c.gradient_clipping);
    ops::rms_norm(s.h.data(), w.norm_post_attn.f32(), s.h.data(), T, D, c.rms_eps);
    ops::add(s.x.data(), s.h.data(), T * D);
    light_conv(ctx, c, w, dw_taps_[l].data(), T, s);
    feed_forward(ctx, c, w.ff2_up, w.ff2_down, w.ff2_pre_norm, w.ff2_post_norm, T, s);
    clamp(s.x.data(), T * D, -c.gradient_clipping, c.gradient_clipping);
    ops::rms_norm(s.x.data(), w.norm_out.f32(), s.x.data(), T, D, c.rms_eps);
    if (tap && l + 1 < c.n_layers) tap(tap_name(l + 1), s.x.data(), T, D);
  }

  // output_proj (with bias); HF's output_hidden_states puts this in place of the last layer's output.
  const int64_t Do = c.output_dims, Dt = text_hidden_;
  Tensor proj({T, Do});
  ops::linear(ctx, w_.output_proj, s.x.data(), T, proj.data(), w_.output_bias.f32());
  if (tap) {
    tap(tap_name(c.n_layers), proj.data(), T, Do);
    tap("audio.last_hidden_state", proj.data(), T, Do);
  }

  // Gemma4MultimodalEmbedder: RMSNorm without weight, then Linear(Do -> Dt) without bias.
  ops::rms_norm(proj.data(), nullptr, proj.data(), T, Do, c.rms_eps);
  Tensor feats({T, Dt});
  ops::linear(ctx, w_.embed_proj, proj.data(), T, feats.data());
  if (tap) tap("audio.audio_features", feats.data(), T, Dt);

  int64_t n = 0;
  for (int64_t t = 0; t < T; ++t) n += out_mask[t] ? 1 : 0;
  out.resize({n, Dt});
  for (int64_t t = 0, r = 0; t < T; ++t)
    if (out_mask[t]) std::memcpy(out.row(r++), feats.row(t), Dt * sizeof(float));
  return n;
}

int64_t Gemma4AudioEncoder::encode(Context& ctx, const Tensor& features, const std::vector<uint8_t>& mask, Tensor& out,
                                   const ActivationTap& tap) const {
  EV_CHECK(features.shape().size() == 2 && features.dim(1) == cfg_.n_mel, "gemma4 audio: features must be [frames, ",
           cfg_.n_mel, "], got ", features.shape().size(), "-d with ",
           features.shape().empty() ? 0 : features.dim(-1), " columns");
  const int64_t T = features.dim(0);
  EV_CHECK(mask.empty() || (int64_t)mask.size() == T, "gemma4 audio: the mask has ", mask.size(), " entries for ", T,
           " feature frames");
  return encode(ctx, features.data(), mask.empty() ? nullptr : mask.data(), T, out, tap);
}

}  // namespace edgevl
