// Gemma 4 audio tower, training forward and backward. The forward is the function of
// models/gemma4/audio_encoder.cpp (which mirrors HF Gemma4AudioModel step by step; see there),
// computed over a batch of clips with every activation the backward reads kept; the backward
// walks them in reverse and accumulates (+=) into the gradients, as train/grad_ops.h does. What
// the tower has that the decoders have not, each a forward/backward pair below:
//  - the subsampler: 3x3 stride-2 convolutions as im2col + matmul, LayerNorm without bias, ReLU;
//  - the chunked local attention with its Transformer-XL relative term (rel-shifted q·rel_k, with
//    relative_k_proj applied to a fixed sinusoid table), logit soft-cap, learned per-dimension
//    query scale through softplus;
//  - the light conv: GLU, a causal depthwise conv over time, SiLU;
//  - gradient_clipping clamps before the norms (torch.clamp: no gradient where clamped).
#include "train/gemma4_audio.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "core/error.h"
#include "kernels/quants.h"
#include "train/grad_ops.h"

namespace edgevl::train {

namespace {

void resize(Tensor& t, int64_t rows, int64_t cols) { t.resize({rows, cols}); }
Tensor zeros(int64_t rows, int64_t cols) {
  Tensor t({rows, cols});
  std::fill(t.vec().begin(), t.vec().end(), 0.0f);
  return t;
}
float* grad(BaseParam* p) { return p ? p->grad.data() : nullptr; }

int64_t numel(const WeightRef& w) {
  int64_t n = 1;
  for (int64_t d : w.shape) n *= d;
  return n;
}

// The whole tensor as float32, whatever its dtype.
void to_f32(const WeightRef& w, std::vector<float>& out) {
  out.resize(numel(w));
  dequantize_row(w.dtype, w.data, out.data(), (int64_t)out.size());
}

TrainLinear linear(std::string module, const WeightRef* w, const WeightRef* bias = nullptr) {
  TrainLinear l;
  l.module = std::move(module);
  l.w = w;
  l.bias = bias;
  return l;
}

// A Gemma4ClippableLinear: PEFT adapts its inner nn.Linear, "<module>.linear".
TrainLinear clipped(const std::string& module, const ClippedLinear& c) {
  TrainLinear l = linear(module + ".linear", &c.w);
  l.set_bounds(c);
  return l;
}

// --- SiLU (the tower's hidden_act) and GLU (nn.functional.glu over the last dim) --------------
// Forwards in float as the inference encoder computes them. SiLU runs on the pool: the
// feed-forward's 4D-wide activation is millions of exp() per layer at the real size.
void silu_forward(Context& ctx, const float* x, float* y, int64_t n) {
  ctx.pool.parallel_for(n, 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = x[i] / (1.0f + std::exp(-x[i]));
  });
}
// d silu(x) = s (1 + x (1 - s)), s = sigmoid(x).
void silu_backward(Context& ctx, const float* x, const float* dy, float* dx, int64_t n) {
  ctx.pool.parallel_for(n, 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const double s = 1.0 / (1.0 + std::exp(-(double)x[i]));
      dx[i] += (float)(dy[i] * s * (1.0 + x[i] * (1.0 - s)));
    }
  });
}
// a [rows, 2n] -> y [rows, n] = a[:, :n] * sigmoid(a[:, n:]).
void glu_forward(const float* a, float* y, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i) y[r * n + i] = a[r * 2 * n + i] * (1.0f / (1.0f + std::exp(-a[r * 2 * n + n + i])));
}
void glu_backward(const float* a, const float* dy, float* da, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i) {
      const float* ar = a + r * 2 * n;
      const double s = 1.0 / (1.0 + std::exp(-(double)ar[n + i])), g = dy[r * n + i];
      da[r * 2 * n + i] += (float)(g * s);
      da[r * 2 * n + n + i] += (float)(g * ar[i] * s * (1.0 - s));
    }
}

// --- F.softplus (beta 1, threshold 20) of per_dim_scale ----------------------------------------
float softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }
double softplus_slope(float x) { return x > 20.0f ? 1.0 : 1.0 / (1.0 + std::exp(-(double)x)); }

// --- 3x3, stride 2, padding 1 convolution as im2col + matmul -----------------------------------
// Columns over a channels-last map in [Tin, Fin, Cin] -> cols [Tout·Fout, 9·Cin], in the
// checkpoint's (ci, kh, kw) order, so the kernel [Cout, Cin, 3, 3] is the matmul's [Cout, 9·Cin]
// weight and its gradient comes out in checkpoint layout. Masked input frames read as zero (HF
// zeroes them before each conv).
void im2col(const float* in, const uint8_t* mask, int64_t Tin, int64_t Fin, int64_t Cin, std::vector<float>& cols) {
  const int64_t Tout = (Tin + 1) / 2, Fout = (Fin + 1) / 2, K = 9 * Cin;
  cols.assign(Tout * Fout * K, 0.0f);
  for (int64_t t = 0; t < Tout; ++t)
    for (int64_t f = 0; f < Fout; ++f) {
      float* row = cols.data() + (t * Fout + f) * K;
      for (int64_t kh = 0; kh < 3; ++kh) {
        const int64_t ti = 2 * t + kh - 1;
        if (ti < 0 || ti >= Tin || (mask && !mask[ti])) continue;
        for (int64_t kw = 0; kw < 3; ++kw) {
          const int64_t fi = 2 * f + kw - 1;
          if (fi < 0 || fi >= Fin) continue;
          const float* x = in + (ti * Fin + fi) * Cin;
          for (int64_t ci = 0; ci < Cin; ++ci) row[ci * 9 + kh * 3 + kw] = x[ci];
        }
      }
    }
}
// din [Tin, Fin, Cin] += the columns' gradient scattered back (im2col's transpose).
void col2im(const float* dcols, const uint8_t* mask, int64_t Tin, int64_t Fin, int64_t Cin, float* din) {
  const int64_t Tout = (Tin + 1) / 2, Fout = (Fin + 1) / 2, K = 9 * Cin;
  for (int64_t t = 0; t < Tout; ++t)
    for (int64_t f = 0; f < Fout; ++f) {
      const float* row = dcols + (t * Fout + f) * K;
      for (int64_t kh = 0; kh < 3; ++kh) {
        const int64_t ti = 2 * t + kh - 1;
        if (ti < 0 || ti >= Tin || (mask && !mask[ti])) continue;
        for (int64_t kw = 0; kw < 3; ++kw) {
          const int64_t fi = 2 * f + kw - 1;
          if (fi < 0 || fi >= Fin) continue;
          float* dx = din + (ti * Fin + fi) * Cin;
          for (int64_t ci = 0; ci < Cin; ++ci) dx[ci] += row[ci * 9 + kh * 3 + kw];
        }
      }
    }
}

// --- nn.LayerNorm(C, bias=False) then ReLU, per row of C channels ------------------------------
// z = max(0, (y - m)·inv·w) as the inference encoder rounds it (statistics in double); m and inv
// (float) are kept.
void layer_norm_relu_forward(const float* y, const float* w, float eps, int64_t rows, int64_t C, float* mean,
                             float* inv, float* z) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* yr = y + r * C;
    double m = 0, var = 0;
    for (int64_t c = 0; c < C; ++c) m += yr[c];
    m /= C;
    for (int64_t c = 0; c < C; ++c) var += (yr[c] - m) * (yr[c] - m);
    inv[r] = (float)(1.0 / std::sqrt(var / C + eps));
    mean[r] = (float)m;
    for (int64_t c = 0; c < C; ++c) z[r * C + c] = std::max(0.0f, (yr[c] - mean[r]) * inv[r] * w[c]);
  }
}
// g = dz where z > 0; with x̂ = (y - m)·inv: dw += Σ g x̂, dy += inv (g w - mean(g w) - x̂ mean(g w x̂)).
void layer_norm_relu_backward(const float* dz, const float* y, const float* mean, const float* inv, const float* z,
                              const float* w, int64_t rows, int64_t C, float* dy, float* dw) {
  std::vector<double> xh(C), gw(C);
  for (int64_t r = 0; r < rows; ++r) {
    double s1 = 0, s2 = 0;
    for (int64_t c = 0; c < C; ++c) {
      const int64_t i = r * C + c;
      xh[c] = ((double)y[i] - mean[r]) * inv[r];
      const double g = z[i] > 0.0f ? dz[i] : 0.0;
      gw[c] = g * w[c];
      s1 += gw[c];
      s2 += gw[c] * xh[c];
      if (dw) dw[c] += (float)(g * xh[c]);
    }
    s1 /= C;
    s2 /= C;
    for (int64_t c = 0; c < C; ++c) dy[r * C + c] += (float)(inv[r] * (gw[c] - s1 - xh[c] * s2));
  }
}

// --- Gemma4AudioCausalConv1d, depthwise: y[t, ch] = Σ_k w[ch, k] x[t - (K-1) + k, ch] ----------
// w in checkpoint layout [D, K]; rows before the clip's start are the left zero padding.
void depthwise_conv_forward(const float* x, const float* w, int64_t T, int64_t D, int64_t K, float* y) {
  for (int64_t t = 0; t < T; ++t) {
    float* yt = y + t * D;
    std::fill(yt, yt + D, 0.0f);
    for (int64_t k = 0; k < K; ++k) {
      const int64_t ti = t - (K - 1) + k;
      if (ti < 0) continue;
      const float* xt = x + ti * D;
      for (int64_t ch = 0; ch < D; ++ch) yt[ch] += w[ch * K + k] * xt[ch];
    }
  }
}
void depthwise_conv_backward(const float* x, const float* w, const float* dy, int64_t T, int64_t D, int64_t K,
                             float* dx, float* dw) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t k = 0; k < K; ++k) {
      const int64_t ti = t - (K - 1) + k;
      if (ti < 0) continue;
      const float* g = dy + t * D;
      for (int64_t ch = 0; ch < D; ++ch) dx[ti * D + ch] += w[ch * K + k] * g[ch];
      if (dw)
        for (int64_t ch = 0; ch < D; ++ch) dw[ch * K + k] += g[ch] * x[ti * D + ch];
    }
}

// --- Gemma4AudioAttention's core over one clip ------------------------------------------------
// q, k, v, out: the clip's T rows (width D = H·Dh), q and k already scaled; rel_k [Pn, D]. Query
// blocks of W = chunk frames each see a window of C = context_size() keys starting context_left-1
// frames before the block (outside [0, T): zero padding). Logit (i, j) = cap·tanh((q_i·k_j +
// rel)/cap) with rel the rel-shifted q·rel_k (gemma4_audio_rel_shift_index), hidden keys
// (gemma4_audio_key_visible) set to invalid_logit; softmax; ·V. Keeps the capped logits and the
// probabilities, [blocks, H, W, C] (rows past the clip's end unused).
int64_t attention_state_size(const Gemma4AudioConfig& c, int64_t T) {
  return (T + c.chunk - 1) / c.chunk * c.n_heads * c.chunk * c.context_size();
}

void chunked_attention_forward(Context& ctx, const Gemma4AudioConfig& c, const float* q, const float* k,
                               const float* v, const float* rel_k, const uint8_t* key_valid, int64_t T, float* capped,
                               float* probs, float* out) {
  const int64_t D = c.hidden, H = c.n_heads, Dh = c.head_dim();
  const int64_t W = c.chunk, P = c.context_left - 1, C = c.context_size(), Pn = c.rel_positions();
  const float cap = c.logit_cap;
  ctx.pool.run_tasks((T + W - 1) / W * H, [&](int64_t task) {
    const int64_t b = task / H, h = task % H, t0 = b * W;
    std::vector<float> bd(W * Pn, 0.0f);
    for (int64_t i = 0; i < W && t0 + i < T; ++i) {
      const float* qi = q + (t0 + i) * D + h * Dh;
      for (int64_t p = 0; p < Pn; ++p) {
        const float* r = rel_k + p * D + h * Dh;
        float acc = 0;
        for (int64_t d = 0; d < Dh; ++d) acc += qi[d] * r[d];
        bd[i * Pn + p] = acc;
      }
    }
    for (int64_t i = 0; i < W && t0 + i < T; ++i) {
      const int64_t t = t0 + i;
      const float* qi = q + t * D + h * Dh;
      float* y = capped + ((b * H + h) * W + i) * C;
      float* p = probs + ((b * H + h) * W + i) * C;
      for (int64_t j = 0; j < C; ++j) {
        const int64_t kv = t0 - P + j;
        float ac = 0;
        if (kv >= 0 && kv < T) {
          const float* kj = k + kv * D + h * Dh;
          for (int64_t d = 0; d < Dh; ++d) ac += qi[d] * kj[d];
        }
        const int64_t r = gemma4_audio_rel_shift_index(i, j, C, Pn);
        y[j] = cap * std::tanh((ac + (r >= 0 ? bd[r] : 0.0f)) / cap);
        p[j] = gemma4_audio_key_visible(c, t, kv, T, key_valid) ? y[j] : c.invalid_logit;
      }
      ops::softmax(p, C);
      float* o = out + t * D + h * Dh;
      std::fill(o, o + Dh, 0.0f);
      for (int64_t j = 0; j < C; ++j) {
        const int64_t kv = t0 - P + j;
        if (kv < 0 || kv >= T) continue;
        const float* vj = v + kv * D + h * Dh;
        for (int64_t d = 0; d < Dh; ++d) o[d] += p[j] * vj[d];
      }
    }
  });
}

// dV += Pᵀ·dO; dS = P ∘ (dP - Σ P dP) on visible keys only (hidden logits are constants); through
// the cap dZ = dS (1 - (y/cap)²); dZ reaches q·k (dq, dk) and, through the rel-shift, q·rel_k
// (dq, drel_k). One task per head: the heads write disjoint columns of dq, dk, dv, drel_k.
void chunked_attention_backward(Context& ctx, const Gemma4AudioConfig& c, const float* dout, const float* q,
                                const float* k, const float* v, const float* rel_k, const uint8_t* key_valid, int64_t T,
                                const float* capped, const float* probs, float* dq, float* dk, float* dv,
                                float* drel_k) {
  const int64_t D = c.hidden, H = c.n_heads, Dh = c.head_dim();
  const int64_t W = c.chunk, P = c.context_left - 1, C = c.context_size(), Pn = c.rel_positions();
  const double cap = c.logit_cap;
  ctx.pool.run_tasks(H, [&](int64_t h) {
    std::vector<double> dbd(W * Pn), dp(C);
    for (int64_t b = 0, t0 = 0; t0 < T; ++b, t0 += W) {
      std::fill(dbd.begin(), dbd.end(), 0.0);
      for (int64_t i = 0; i < W && t0 + i < T; ++i) {
        const int64_t t = t0 + i;
        const float* y = capped + ((b * H + h) * W + i) * C;
        const float* p = probs + ((b * H + h) * W + i) * C;
        const float* doi = dout + t * D + h * Dh;
        double sum = 0;
        for (int64_t j = 0; j < C; ++j) {
          const int64_t kv = t0 - P + j;
          dp[j] = 0;
          if (kv < 0 || kv >= T) continue;
          const float* vj = v + kv * D + h * Dh;
          double s = 0;
          for (int64_t d = 0; d < Dh; ++d) s += (double)doi[d] * vj[d];
          dp[j] = s;
          sum += p[j] * s;
          if (p[j] != 0.0f) ops::add_scaled(dv + kv * D + h * Dh, doi, p[j], Dh);
        }
        const float* qi = q + t * D + h * Dh;
        float* dqi = dq + t * D + h * Dh;
        for (int64_t j = 0; j < C; ++j) {
          const int64_t kv = t0 - P + j;
          if (!gemma4_audio_key_visible(c, t, kv, T, key_valid)) continue;
          const double yc = y[j] / cap, dz = p[j] * (dp[j] - sum) * (1.0 - yc * yc);
          ops::add_scaled(dqi, k + kv * D + h * Dh, (float)dz, Dh);
          ops::add_scaled(dk + kv * D + h * Dh, qi, (float)dz, Dh);
          const int64_t r = gemma4_audio_rel_shift_index(i, j, C, Pn);
          if (r >= 0) dbd[r] += dz;
        }
      }
      for (int64_t i = 0; i < W && t0 + i < T; ++i)
        for (int64_t p = 0; p < Pn; ++p) {
          const float g = (float)dbd[i * Pn + p];
          if (g == 0.0f) continue;
          ops::add_scaled(dq + (t0 + i) * D + h * Dh, rel_k + p * D + h * Dh, g, Dh);
          ops::add_scaled(drel_k + p * D + h * Dh, q + (t0 + i) * D + h * Dh, g, Dh);
        }
    }
  });
}

}  // namespace

void Gemma4AudioTrain::GradClip::forward(const float* x, float* y, int64_t n, float bound) {
  inside.clear();
  bool clamped = false;
  for (int64_t i = 0; i < n; ++i) {
    y[i] = std::min(std::max(x[i], -bound), bound);
    clamped |= !(x[i] >= -bound && x[i] <= bound);
  }
  if (!clamped) return;
  inside.resize(n);
  for (int64_t i = 0; i < n; ++i) inside[i] = x[i] >= -bound && x[i] <= bound;
}

void Gemma4AudioTrain::GradClip::backward(float* d, int64_t n) const {
  if (inside.empty()) return;
  for (int64_t i = 0; i < n; ++i)
    if (!inside[i]) d[i] = 0.0f;
}

void Gemma4AudioTrain::clipped_norm_forward(GradClip& clip, const float* x, Tensor& xc, const WeightRef& w,
                                            std::vector<float>& rstd, float* y) {
  const int64_t N = N_, D = cfg_.hidden;
  resize(xc, N, D);
  rstd.resize(N);
  clip.forward(x, xc.data(), N * D, cfg_.gradient_clipping);
  rms_norm_forward(xc.data(), w.f32(), y, rstd.data(), N, D, cfg_.rms_eps);
}

Tensor Gemma4AudioTrain::clipped_norm_backward(const GradClip& clip, const float* dy, const Tensor& xc,
                                               const WeightRef& w, const std::vector<float>& rstd, BaseParam* gw) {
  const int64_t N = xc.dim(0), D = xc.dim(1);
  Tensor dx = zeros(N, D);
  rms_norm_backward(dy, xc.data(), w.f32(), rstd.data(), dx.data(), grad(gw), N, D);
  clip.backward(dx.data(), N * D);
  return dx;
}

Gemma4AudioTrain::Gemma4AudioTrain(const ModelSource& src, Gemma4AudioConfig cfg, int64_t text_hidden)
    : cfg_(std::move(cfg)), text_hidden_(text_hidden), loader_(src) {
  const Gemma4AudioConfig& c = cfg_;
  EV_CHECK(!src.is_gguf(), src.path(), ": gemma4 audio: the audio tower loads from HF checkpoints only");
  EV_CHECK(text_hidden > 0, "gemma4 audio: invalid text hidden size ", text_hidden);
  EV_CHECK(c.act == ops::Activation::Silu, src.path(), ": gemma4 audio: training supports hidden_act silu only");
  load_gemma4_audio_weights(loader_, c, text_hidden, w_);
  rel_pos_ = gemma4_audio_rel_pos_table(c);

  const std::string tower = "model.audio_tower.";
  input_proj_ = linear(tower + "subsample_conv_projection.input_proj_linear", &w_.input_proj);
  output_proj_ = linear(tower + "output_proj", &w_.output_proj, &w_.output_bias);
  embed_proj_ = linear("model.embed_audio.embedding_projection", &w_.embed_proj);
  proj_.resize(c.n_layers);
  dw_f_.resize(c.n_layers);
  q_dim_scale_.resize(c.n_layers);
  slots_.resize(c.n_layers);
  acts_.resize(c.n_layers);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const Gemma4AudioEncoder::LayerWeights& w = w_.layers[l];
    const std::string p = tower + "layers." + std::to_string(l) + ".";
    auto& pr = proj_[l];
    pr[kFf1Up] = clipped(p + "feed_forward1.ffw_layer_1", w.ff1_up);
    pr[kFf1Down] = clipped(p + "feed_forward1.ffw_layer_2", w.ff1_down);
    pr[kFf2Up] = clipped(p + "feed_forward2.ffw_layer_1", w.ff2_up);
    pr[kFf2Down] = clipped(p + "feed_forward2.ffw_layer_2", w.ff2_down);
    pr[kQ] = clipped(p + "self_attn.q_proj", w.q);
    pr[kK] = clipped(p + "self_attn.k_proj", w.k);
    pr[kV] = clipped(p + "self_attn.v_proj", w.v);
    pr[kPost] = clipped(p + "self_attn.post", w.post);
    pr[kRelK] = linear(p + "self_attn.relative_k_proj", &w.rel_k);
    pr[kConvStart] = clipped(p + "lconv1d.linear_start", w.lconv_start);
    pr[kConvEnd] = clipped(p + "lconv1d.linear_end", w.lconv_end);
  }
}

std::vector<TrainLinear*> Gemma4AudioTrain::adaptable_linears() {
  std::vector<TrainLinear*> v = {&input_proj_};
  for (auto& layer : proj_)
    for (TrainLinear& p : layer) v.push_back(&p);
  v.push_back(&output_proj_);
  v.push_back(&embed_proj_);
  return v;
}

std::vector<uint8_t> Gemma4AudioTrain::kink_pattern() const {
  std::vector<uint8_t> p;
  for (const ClipActs& a : clips_)
    for (float z : a.z0) p.push_back(z > 0.0f);
  for (float z : sub_.vec()) p.push_back(z > 0.0f);
  auto clip = [&](const GradClip& c) {
    p.push_back(c.inside.empty());
    p.insert(p.end(), c.inside.begin(), c.inside.end());
  };
  for (const LayerActs& s : acts_)
    for (const GradClip* c : {&s.ff1.clip_in, &s.ff1.clip_out, &s.clip_in, &s.clip_out, &s.clip_conv, &s.ff2.clip_in,
                              &s.ff2.clip_out, &s.clip_out_norm})
      clip(*c);
  auto bounds = [&](const TrainLinear& l) {
    p.insert(p.end(), l.out_inside.begin(), l.out_inside.end());
    for (float x : l.clip_x) p.push_back(x != l.in_min && x != l.in_max);
  };
  for (const auto& layer : proj_)
    for (const TrainLinear& l : layer) bounds(l);
  return p;
}

void Gemma4AudioTrain::enable_base_grads(const std::function<BaseParam*(const WeightRef&)>& grad_of) {
  // The slot of `w`, which must hold all of it.
  auto slot = [&](const WeightRef& w) {
    BaseParam* p = grad_of(w);
    EV_CHECK(!p || (int64_t)p->grad.size() == numel(w), "gemma4 audio: the gradient slot of '", w.name, "' has ",
             p ? p->grad.size() : 0, " values for ", numel(w), " weights");
    return p;
  };
  auto bind = [&](TrainLinear& l) {
    l.gw = slot(*l.w);
    l.gb = l.bias ? slot(*l.bias) : nullptr;
  };
  // HF's order: Gemma4AudioModel's parameters as registered, then embed_audio.
  conv0_g_ = slot(w_.conv0);
  norm0_g_ = slot(w_.norm0);
  conv1_g_ = slot(w_.conv1);
  norm1_g_ = slot(w_.norm1);
  bind(input_proj_);
  for (int64_t l = 0; l < cfg_.n_layers; ++l) {
    const Gemma4AudioEncoder::LayerWeights& w = w_.layers[l];
    auto& p = proj_[l];
    Slots& s = slots_[l];
    bind(p[kFf1Up]);
    bind(p[kFf1Down]);
    s.ff1_pre = slot(w.ff1_pre_norm);
    s.ff1_post = slot(w.ff1_post_norm);
    bind(p[kFf2Up]);
    bind(p[kFf2Down]);
    s.ff2_pre = slot(w.ff2_pre_norm);
    s.ff2_post = slot(w.ff2_post_norm);
    s.per_dim_scale = slot(w.per_dim_scale);
    for (Proj k : {kQ, kK, kV, kPost, kRelK}) bind(p[k]);
    bind(p[kConvStart]);
    bind(p[kConvEnd]);
    s.dw = slot(w.dw_conv);
    s.lconv_pre = slot(w.lconv_pre_norm);
    s.conv_norm = slot(w.lconv_conv_norm);
    s.norm_pre_attn = slot(w.norm_pre_attn);
    s.norm_post_attn = slot(w.norm_post_attn);
    s.norm_out = slot(w.norm_out);
  }
  bind(output_proj_);
  bind(embed_proj_);
}

// Gemma4AudioSubSampleConvProjection of one clip, up to the input projection: two blocks of conv
// (on the frames the mask keeps, subsampled by 2 for the second), LayerNorm, ReLU. Writes the
// clip's T rows of [F/4 · C1] (freq-major, channel-minor) into `rows`.
void Gemma4AudioTrain::subsample(Context& ctx, ClipActs& a, float* rows) {
  const Gemma4AudioConfig& c = cfg_;
  const int64_t F1 = (c.n_mel + 1) / 2, F2 = (F1 + 1) / 2, C0 = c.conv_channels0, C1 = c.conv_channels1;
  std::vector<float> cols;
  im2col(a.features.data(), a.mask.empty() ? nullptr : a.mask.data(), a.Tf, c.n_mel, 1, cols);
  a.y0.resize(a.T1 * F1 * C0);
  ops::linear(ctx, ops::f32_weight(conv0_f_.data(), C0, 9), cols.data(), a.T1 * F1, a.y0.data());
  a.mean0.resize(a.T1 * F1);
  a.rstd0.resize(a.T1 * F1);
  a.z0.resize(a.y0.size());
  layer_norm_relu_forward(a.y0.data(), w_.norm0.f32(), c.rms_eps, a.T1 * F1, C0, a.mean0.data(), a.rstd0.data(),
                          a.z0.data());
  im2col(a.z0.data(), a.mask0.empty() ? nullptr : a.mask0.data(), a.T1, F1, C0, cols);
  a.y1.resize(a.T * F2 * C1);
  ops::linear(ctx, ops::f32_weight(conv1_f_.data(), C1, 9 * C0), cols.data(), a.T * F2, a.y1.data());
  a.mean1.resize(a.T * F2);
  a.rstd1.resize(a.T * F2);
  layer_norm_relu_forward(a.y1.data(), w_.norm1.f32(), c.rms_eps, a.T * F2, C1, a.mean1.data(), a.rstd1.data(), rows);
}

// drows: d loss / d (the clip's rows of the subsampler output).
void Gemma4AudioTrain::subsample_backward(Context& ctx, ClipActs& a, const float* drows) {
  const Gemma4AudioConfig& c = cfg_;
  const int64_t F1 = (c.n_mel + 1) / 2, F2 = (F1 + 1) / 2, C0 = c.conv_channels0, C1 = c.conv_channels1;
  const int64_t n1 = a.T * F2, n0 = a.T1 * F1;
  std::vector<float> dy1(n1 * C1, 0.0f), cols;
  layer_norm_relu_backward(drows, a.y1.data(), a.mean1.data(), a.rstd1.data(), sub_.row(a.row0), w_.norm1.f32(), n1,
                           C1, dy1.data(), grad(norm1_g_));
  if (conv1_g_) {
    im2col(a.z0.data(), a.mask0.empty() ? nullptr : a.mask0.data(), a.T1, F1, C0, cols);
    linear_backward_weight(ctx, dy1.data(), cols.data(), n1, C1, 9 * C0, conv1_g_->grad.data());
  }
  if (!conv0_g_ && !norm0_g_) return;
  std::vector<float> dcols(n1 * 9 * C0, 0.0f), dz0(n0 * C0, 0.0f), dy0(n0 * C0, 0.0f);
  linear_backward_input(ctx, ops::f32_weight(conv1_f_.data(), C1, 9 * C0), dy1.data(), n1, dcols.data());
  col2im(dcols.data(), a.mask0.empty() ? nullptr : a.mask0.data(), a.T1, F1, C0, dz0.data());
  layer_norm_relu_backward(dz0.data(), a.y0.data(), a.mean0.data(), a.rstd0.data(), a.z0.data(), w_.norm0.f32(), n0,
                           C0, dy0.data(), grad(norm0_g_));
  if (conv0_g_) {
    im2col(a.features.data(), a.mask.empty() ? nullptr : a.mask.data(), a.Tf, c.n_mel, 1, cols);
    linear_backward_weight(ctx, dy0.data(), cols.data(), n0, C0, 9, conv0_g_->grad.data());
  }
}

// Gemma4AudioFeedForward: x += residual_weight · post_norm(clip(W2(silu(W1(pre_norm(clip(x))))))).
void Gemma4AudioTrain::feed_forward(Context& ctx, int64_t l, bool second, Tensor& x) {
  const Gemma4AudioConfig& c = cfg_;
  const Gemma4AudioEncoder::LayerWeights& w = w_.layers[l];
  FfActs& s = second ? acts_[l].ff2 : acts_[l].ff1;
  TrainLinear& up = proj_[l][second ? kFf2Up : kFf1Up];
  TrainLinear& down = proj_[l][second ? kFf2Down : kFf1Down];
  const int64_t N = N_, D = c.hidden, F = up.out();
  resize(s.xn, N, D);
  resize(s.up, N, F);
  resize(s.act, N, F);
  clipped_norm_forward(s.clip_in, x.data(), s.xc, second ? w.ff2_pre_norm : w.ff1_pre_norm, s.rstd_pre, s.xn.data());
  up.forward(ctx, s.xn.data(), N, s.up.data());
  silu_forward(ctx, s.up.data(), s.act.data(), N * F);
  Tensor h({N, D});
  down.forward(ctx, s.act.data(), N, h.data());
  clipped_norm_forward(s.clip_out, h.data(), s.hc, second ? w.ff2_post_norm : w.ff1_post_norm, s.rstd_post, h.data());
  ops::scale(h.data(), c.residual_weight, N * D);
  ops::add(x.data(), h.data(), N * D);
}

void Gemma4AudioTrain::feed_forward_backward(Context& ctx, int64_t l, bool second, Tensor& dx) {
  const Gemma4AudioConfig& c = cfg_;
  const Gemma4AudioEncoder::LayerWeights& w = w_.layers[l];
  const FfActs& s = second ? acts_[l].ff2 : acts_[l].ff1;
  const Slots& g = slots_[l];
  TrainLinear& up = proj_[l][second ? kFf2Up : kFf1Up];
  TrainLinear& down = proj_[l][second ? kFf2Down : kFf1Down];
  const int64_t N = N_, D = c.hidden, F = up.out();
  Tensor dh = dx, dact = zeros(N, F), dup = zeros(N, F), dxn = zeros(N, D);
  ops::scale(dh.data(), c.residual_weight, N * D);
  const Tensor dhc = clipped_norm_backward(s.clip_out, dh.data(), s.hc, second ? w.ff2_post_norm : w.ff1_post_norm,
                                           s.rstd_post, second ? g.ff2_post : g.ff1_post);
  down.backward(ctx, s.act.data(), dhc.data(), N, dact.data());
  silu_backward(ctx, s.up.data(), dact.data(), dup.data(), N * F);
  up.backward(ctx, s.xn.data(), dup.data(), N, dxn.data());
  const Tensor dxc = clipped_norm_backward(s.clip_in, dxn.data(), s.xc, second ? w.ff2_pre_norm : w.ff1_pre_norm,
                                           s.rstd_pre, second ? g.ff2_pre : g.ff1_pre);
  ops::add(dx.data(), dxc.data(), N * D);
}

// x += norm_post_attn(clip(post(attention(q, k, v)))), q/k/v projected from norm_pre_attn(clip(x)),
// q scaled by q_scale·softplus(per_dim_scale) per head dimension, k by k_scale.
void Gemma4AudioTrain::attention_block(Context& ctx, int64_t l, Tensor& x) {
  const Gemma4AudioConfig& c = cfg_;
  const Gemma4AudioEncoder::LayerWeights& w = w_.layers[l];
  LayerActs& s = acts_[l];
  auto& p = proj_[l];
  const int64_t N = N_, D = c.hidden, H = c.n_heads, Dh = c.head_dim(), Pn = c.rel_positions();
  for (Tensor* t : {&s.xn, &s.q_raw, &s.q, &s.k, &s.v, &s.att}) resize(*t, N, D);
  resize(s.rel_k, Pn, D);
  clipped_norm_forward(s.clip_in, x.data(), s.xc, w.norm_pre_attn, s.rstd_pre, s.xn.data());
  p[kQ].forward(ctx, s.xn.data(), N, s.q_raw.data());
  p[kK].forward(ctx, s.xn.data(), N, s.k.data());
  p[kV].forward(ctx, s.xn.data(), N, s.v.data());
  const float q_scale = c.q_scale();
  const std::vector<float>& qs = q_dim_scale_[l];
  for (int64_t t = 0; t < N; ++t)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t d = 0; d < Dh; ++d) {
        const int64_t i = t * D + h * Dh + d;
        s.q.data()[i] = s.q_raw.data()[i] * q_scale * qs[d];
      }
  ops::scale(s.k.data(), c.k_scale(), N * D);
  p[kRelK].forward(ctx, rel_pos_.data(), Pn, s.rel_k.data());

  s.capped.resize(clips_.back().att0 + attention_state_size(c, clips_.back().T));
  s.probs.resize(s.capped.size());
  for (const ClipActs& a : clips_) {
    const int64_t o = a.row0 * D;
    chunked_attention_forward(ctx, c, s.q.data() + o, s.k.data() + o, s.v.data() + o, s.rel_k.data(),
                              a.mask.empty() ? nullptr : a.out_mask.data(), a.T, s.capped.data() + a.att0,
                              s.probs.data() + a.att0, s.att.data() + o);
  }
  Tensor h({N, D});
  p[kPost].forward(ctx, s.att.data(), N, h.data());
  clipped_norm_forward(s.clip_out, h.data(), s.hc, w.norm_post_attn, s.rstd_post, h.data());
  ops::add(x.data(), h.data(), N * D);
}

void Gemma4AudioTrain::attention_block_backward(Context& ctx, int64_t l, Tensor& dx) {
  const Gemma4AudioConfig& c = cfg_;
  const Gemma4AudioEncoder::LayerWeights& w = w_.layers[l];
  const LayerActs& s = acts_[l];
  const Slots& g = slots_[l];
  auto& p = proj_[l];
  const int64_t N = N_, D = c.hidden, H = c.n_heads, Dh = c.head_dim(), Pn = c.rel_positions();
  Tensor datt = zeros(N, D), dq = zeros(N, D), dk = zeros(N, D), dv = zeros(N, D), drel = zeros(Pn, D);
  Tensor dxn = zeros(N, D);
  const Tensor dhc =
      clipped_norm_backward(s.clip_out, dx.data(), s.hc, w.norm_post_attn, s.rstd_post, g.norm_post_attn);
  p[kPost].backward(ctx, s.att.data(), dhc.data(), N, datt.data());
  for (const ClipActs& a : clips_) {
    const int64_t o = a.row0 * D;
    chunked_attention_backward(ctx, c, datt.data() + o, s.q.data() + o, s.k.data() + o, s.v.data() + o,
                               s.rel_k.data(), a.mask.empty() ? nullptr : a.out_mask.data(), a.T,
                               s.capped.data() + a.att0, s.probs.data() + a.att0, dq.data() + o, dk.data() + o,
                               dv.data() + o, drel.data());
  }
  // q = q_raw · q_scale · softplus(per_dim_scale[d]): dq_raw in place of dq, and the scale's gradient.
  const float q_scale = c.q_scale();
  const std::vector<float>& qs = q_dim_scale_[l];
  std::vector<double> dsp(Dh, 0.0);
  for (int64_t t = 0; t < N; ++t)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t d = 0; d < Dh; ++d) {
        float& gq = dq.data()[t * D + h * Dh + d];
        dsp[d] += (double)gq * s.q_raw.data()[t * D + h * Dh + d] * q_scale;
        gq *= q_scale * qs[d];
      }
  if (float* gp = grad(g.per_dim_scale)) {
    const float* pds = w.per_dim_scale.f32();
    for (int64_t d = 0; d < Dh; ++d) gp[d] += (float)(dsp[d] * softplus_slope(pds[d]));
  }
  ops::scale(dk.data(), c.k_scale(), N * D);
  p[kQ].backward(ctx, s.xn.data(), dq.data(), N, dxn.data());
  p[kK].backward(ctx, s.xn.data(), dk.data(), N, dxn.data());
  p[kV].backward(ctx, s.xn.data(), dv.data(), N, dxn.data());
  p[kRelK].backward(ctx, rel_pos_.data(), drel.data(), Pn, nullptr);
  const Tensor dxc = clipped_norm_backward(s.clip_in, dxn.data(), s.xc, w.norm_pre_attn, s.rstd_pre, g.norm_pre_attn);
  ops::add(dx.data(), dxc.data(), N * D);
}

// Gemma4AudioLightConv1d: x += W_end(silu(conv_norm(clip(causal_depthwise_conv(glu(W_start(pre_norm(x)))))))).
void Gemma4AudioTrain::light_conv(Context& ctx, int64_t l, Tensor& x) {
  const Gemma4AudioConfig& c = cfg_;
  const Gemma4AudioEncoder::LayerWeights& w = w_.layers[l];
  LayerActs& s = acts_[l];
  auto& p = proj_[l];
  const int64_t N = N_, D = c.hidden;
  s.x_lc = x;
  for (Tensor* t : {&s.xn_lc, &s.g, &s.cn, &s.s}) resize(*t, N, D);
  resize(s.a, N, 2 * D);
  s.rstd_lc.resize(N);
  rms_norm_forward(x.data(), w.lconv_pre_norm.f32(), s.xn_lc.data(), s.rstd_lc.data(), N, D, c.rms_eps);
  p[kConvStart].forward(ctx, s.xn_lc.data(), N, s.a.data());
  glu_forward(s.a.data(), s.g.data(), N, D);
  Tensor h({N, D});
  for (const ClipActs& a : clips_)
    depthwise_conv_forward(s.g.row(a.row0), dw_f_[l].data(), a.T, D, c.conv_kernel, h.row(a.row0));
  clipped_norm_forward(s.clip_conv, h.data(), s.cc, w.lconv_conv_norm, s.rstd_cn, s.cn.data());
  silu_forward(ctx, s.cn.data(), s.s.data(), N * D);
  p[kConvEnd].forward(ctx, s.s.data(), N, h.data());
  ops::add(x.data(), h.data(), N * D);
}

void Gemma4AudioTrain::light_conv_backward(Context& ctx, int64_t l, Tensor& dx) {
  const Gemma4AudioConfig& c = cfg_;
  const Gemma4AudioEncoder::LayerWeights& w = w_.layers[l];
  const LayerActs& s = acts_[l];
  const Slots& g = slots_[l];
  auto& p = proj_[l];
  const int64_t N = N_, D = c.hidden;
  Tensor ds = zeros(N, D), dcn = zeros(N, D), dg = zeros(N, D), da = zeros(N, 2 * D), dxn = zeros(N, D);
  p[kConvEnd].backward(ctx, s.s.data(), dx.data(), N, ds.data());
  silu_backward(ctx, s.cn.data(), ds.data(), dcn.data(), N * D);
  const Tensor dcc = clipped_norm_backward(s.clip_conv, dcn.data(), s.cc, w.lconv_conv_norm, s.rstd_cn, g.conv_norm);
  for (const ClipActs& a : clips_)
    depthwise_conv_backward(s.g.row(a.row0), dw_f_[l].data(), dcc.row(a.row0), a.T, D, c.conv_kernel, dg.row(a.row0),
                            grad(g.dw));
  glu_backward(s.a.data(), dg.data(), da.data(), N, D);
  p[kConvStart].backward(ctx, s.xn_lc.data(), da.data(), N, dxn.data());
  rms_norm_backward(dxn.data(), s.x_lc.data(), w.lconv_pre_norm.f32(), s.rstd_lc.data(), dx.data(), grad(g.lconv_pre),
                    N, D);
}

std::vector<int64_t> Gemma4AudioTrain::forward(Context& ctx, const std::vector<AudioClip>& clips, Tensor& out) {
  const Gemma4AudioConfig& c = cfg_;
  const int64_t D = c.hidden, Do = c.output_dims, Dt = text_hidden_;
  const int64_t Dsub = ((c.n_mel + 1) / 2 + 1) / 2 * c.conv_channels1;
  // The weights the forward reads outside the matmuls, as they are now.
  to_f32(w_.conv0, conv0_f_);
  to_f32(w_.conv1, conv1_f_);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    to_f32(w_.layers[l].dw_conv, dw_f_[l]);
    const float* pds = w_.layers[l].per_dim_scale.f32();
    q_dim_scale_[l].resize(c.head_dim());
    for (int64_t d = 0; d < c.head_dim(); ++d) q_dim_scale_[l][d] = softplus(pds[d]);
  }

  clips_.assign(clips.size(), ClipActs());
  N_ = 0;
  int64_t att = 0;
  std::vector<int64_t> counts(clips.size(), 0);
  for (size_t i = 0; i < clips.size(); ++i) {
    const AudioClip& in = clips[i];
    EV_CHECK(in.features && in.frames > 0, "gemma4 audio: clip ", i, " has no feature frames");
    ClipActs& a = clips_[i];
    a.Tf = in.frames;
    a.T1 = (a.Tf + 1) / 2;
    a.T = gemma4_audio_output_frames(a.Tf);
    a.row0 = N_;
    a.att0 = att;
    N_ += a.T;
    att += attention_state_size(c, a.T);
    a.features.assign(in.features, in.features + a.Tf * c.n_mel);
    if (in.mask) {
      a.mask.assign(in.mask, in.mask + a.Tf);
      a.mask0.resize(a.T1);
      for (int64_t t = 0; t < a.T1; ++t) a.mask0[t] = in.mask[2 * t];
    }
    a.out_mask = gemma4_audio_output_mask(in.mask, a.Tf);
    for (uint8_t m : a.out_mask) counts[i] += m ? 1 : 0;
  }
  int64_t n_out = 0;
  for (int64_t n : counts) n_out += n;
  out.resize({n_out, Dt});
  if (N_ == 0) return counts;

  const int64_t N = N_;
  resize(sub_, N, Dsub);
  for (ClipActs& a : clips_) subsample(ctx, a, sub_.row(a.row0));
  Tensor x({N, D});
  input_proj_.forward(ctx, sub_.data(), N, x.data());
  for (int64_t l = 0; l < c.n_layers; ++l) {
    LayerActs& s = acts_[l];
    feed_forward(ctx, l, false, x);
    attention_block(ctx, l, x);
    light_conv(ctx, l, x);
    feed_forward(ctx, l, true, x);
    clipped_norm_forward(s.clip_out_norm, x.data(), s.xc_out, w_.layers[l].norm_out, s.rstd_out, x.data());
  }
  x_final_ = x;
  // output_proj (with bias), then Gemma4MultimodalEmbedder: RMSNorm without weight, Linear.
  resize(proj_out_, N, Do);
  resize(pn_, N, Do);
  rstd_pn_.resize(N);
  output_proj_.forward(ctx, x.data(), N, proj_out_.data());
  rms_norm_forward(proj_out_.data(), nullptr, pn_.data(), rstd_pn_.data(), N, Do, c.rms_eps);
  Tensor feats({N, Dt});
  embed_proj_.forward(ctx, pn_.data(), N, feats.data());
  int64_t r = 0;
  for (const ClipActs& a : clips_)
    for (int64_t t = 0; t < a.T; ++t)
      if (a.out_mask[t]) std::memcpy(out.row(r++), feats.row(a.row0 + t), Dt * sizeof(float));
  return counts;
}

void Gemma4AudioTrain::backward(Context& ctx, const Tensor& dout) {
  const Gemma4AudioConfig& c = cfg_;
  const int64_t N = N_, D = c.hidden, Do = c.output_dims, Dt = text_hidden_;
  int64_t n_out = 0;
  for (const ClipActs& a : clips_)
    for (uint8_t m : a.out_mask) n_out += m ? 1 : 0;
  EV_CHECK(dout.numel() == n_out * Dt, "gemma4 audio: backward got ", dout.numel(), " values for ", n_out,
           " soft tokens of width ", Dt);
  if (N == 0) return;

  Tensor dfeats = zeros(N, Dt), dpn = zeros(N, Do), dproj = zeros(N, Do), dx = zeros(N, D);
  int64_t r = 0;
  for (const ClipActs& a : clips_)
    for (int64_t t = 0; t < a.T; ++t)
      if (a.out_mask[t]) std::memcpy(dfeats.row(a.row0 + t), dout.data() + (r++) * Dt, Dt * sizeof(float));
  embed_proj_.backward(ctx, pn_.data(), dfeats.data(), N, dpn.data());
  rms_norm_backward(dpn.data(), proj_out_.data(), nullptr, rstd_pn_.data(), dproj.data(), nullptr, N, Do);
  output_proj_.backward(ctx, x_final_.data(), dproj.data(), N, dx.data());

  for (int64_t l = c.n_layers - 1; l >= 0; --l) {
    const LayerActs& s = acts_[l];
    dx = clipped_norm_backward(s.clip_out_norm, dx.data(), s.xc_out, w_.layers[l].norm_out, s.rstd_out,
                               slots_[l].norm_out);
    feed_forward_backward(ctx, l, true, dx);
    light_conv_backward(ctx, l, dx);
    attention_block_backward(ctx, l, dx);
    feed_forward_backward(ctx, l, false, dx);
  }

  if (!trains_subsampler()) {
    input_proj_.backward(ctx, sub_.data(), dx.data(), N, nullptr);
    return;
  }
  Tensor dsub = zeros(N, sub_.dim(1));
  input_proj_.backward(ctx, sub_.data(), dx.data(), N, dsub.data());
  for (ClipActs& a : clips_) subsample_backward(ctx, a, dsub.row(a.row0));
}

}  // namespace edgevl::train
