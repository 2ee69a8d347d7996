#include "train/grad_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/quants.h"

namespace edgevl::train {

void embedding_backward(const int32_t* ids, int64_t n, const float* dx, float* dtable, int64_t D,
                        int32_t padding_idx) {
  for (int64_t t = 0; t < n; ++t)
    if (ids[t] != padding_idx) ops::add(dtable + (int64_t)ids[t] * D, dx + t * D, D);
}

void rms_norm_forward(const float* x, const float* w, float* y, float* rstd, int64_t rows, int64_t n, float eps) {
  ops::rms_norm(x, w, y, rows, n, eps);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;  // as ops::rms_norm computes it
    for (int64_t i = 0; i < n; ++i) ss += (double)x[r * n + i] * x[r * n + i];
    rstd[r] = (float)(1.0 / std::sqrt(ss / n + eps));
  }
}

// y_i = x_i r w_i with r = (mean x² + eps)^-1/2, ∂r/∂x_j = -r³ x_j / n:
// dx_j = r w_j dy_j - r³/n x_j Σ_i dy_i w_i x_i;  dw_i = Σ_rows dy_i x_i r.
void rms_norm_backward(const float* dy, const float* x, const float* w, const float* rstd, float* dx, float* dw,
                       int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* dyr = dy + r * n;
    const float* xr = x + r * n;
    const double s = rstd[r];
    double dot = 0;
    for (int64_t i = 0; i < n; ++i) dot += (double)dyr[i] * (w ? w[i] : 1.0f) * xr[i];
    const double c = s * s * s * dot / n;
    float* dxr = dx + r * n;
    for (int64_t i = 0; i < n; ++i) dxr[i] += (float)(s * dyr[i] * (w ? w[i] : 1.0f) - c * xr[i]);
    if (dw)
      for (int64_t i = 0; i < n; ++i) dw[i] += (float)(dyr[i] * xr[i] * s);
  }
}

namespace {

// dx = dy · W is the one product of training whose weight is not transposed, so the inference
// kernels do not compute it. Blocked here: W is dequantized kOBlock rows at a time into tiles of
// kTile columns (zero-padded), and each tile meets the dy rows kRows at a time with the
// accumulators in registers; the compiler vectorises the fixed-size inner loops per ISA.
constexpr int64_t kTile = 64, kRows = 4, kOBlock = 64;

template <int NR>
[[gnu::always_inline]] inline void nn_block(const float* dy, int64_t ldy, const float* tile, int64_t ob, float* dx,
                                            int64_t ldx, int64_t width) {
  float acc[NR][kTile] = {};
  for (int64_t o = 0; o < ob; ++o) {
    const float* wr = tile + o * kTile;
    for (int r = 0; r < NR; ++r) {
      const float g = dy[r * ldy + o];
      for (int64_t i = 0; i < kTile; ++i) acc[r][i] += g * wr[i];
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int64_t i = 0; i < width; ++i) dx[r * ldx + i] += acc[r][i];
}

#if defined(__x86_64__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void nn_tiles(const float* dy, int64_t ldy, const float* tiles, int64_t n_tiles, int64_t ob, int64_t rows, float* dx,
              int64_t I) {
  for (int64_t c = 0; c < n_tiles; ++c) {
    const float* tile = tiles + c * ob * kTile;
    const int64_t width = std::min(kTile, I - c * kTile);
    int64_t t = 0;
    for (; t + kRows <= rows; t += kRows) nn_block<kRows>(dy + t * ldy, ldy, tile, ob, dx + t * I + c * kTile, I, width);
    for (; t < rows; ++t) nn_block<1>(dy + t * ldy, ldy, tile, ob, dx + t * I + c * kTile, I, width);
  }
}

}  // namespace

void linear_backward_input(Context& ctx, const WeightRef& w, const float* dy, int64_t rows, float* dx) {
  const int64_t O = w.rows(), I = w.cols(), n_tiles = (I + kTile - 1) / kTile;
  // Rows of dx split across the workers; each walks W once.
  ctx.pool.parallel_for(rows, kRows, [&](int64_t b, int64_t e) {
    std::vector<float> row(I), tiles(n_tiles * kOBlock * kTile, 0.0f);
    for (int64_t o0 = 0; o0 < O; o0 += kOBlock) {
      const int64_t ob = std::min(kOBlock, O - o0);
      for (int64_t o = 0; o < ob; ++o) {
        dequantize_row(w.dtype, static_cast<const uint8_t*>(w.data) + (o0 + o) * w.row_bytes, row.data(), I);
        for (int64_t c = 0; c < n_tiles; ++c)
          std::copy(row.begin() + c * kTile, row.begin() + std::min(I, (c + 1) * kTile),
                    tiles.begin() + (c * ob + o) * kTile);
      }
      nn_tiles(dy + b * O + o0, O, tiles.data(), n_tiles, ob, e - b, dx + b * I, I);
    }
  });
}

void linear_backward_weight(Context& ctx, const float* dy, const float* x, int64_t rows, int64_t O, int64_t I,
                            float* dw) {
  ctx.pool.parallel_for(O, 8, [&](int64_t b, int64_t e) {
    for (int64_t o = b; o < e; ++o)
      for (int64_t t = 0; t < rows; ++t) {
        const float g = dy[t * O + o];
        if (g != 0.0f) ops::add_scaled(dw + o * I, x + t * I, g, I);
      }
  });
}

void linear_bias_backward(const float* dy, int64_t rows, int64_t O, float* db) {
  for (int64_t t = 0; t < rows; ++t) ops::add(db, dy + t * O, O);
}

void rope_forward(const nn::Rope& rope, float* x, int64_t T, int64_t heads, int64_t Dh, int64_t pos0,
                  const int64_t* positions) {
  for (int64_t t = 0; t < T; ++t) rope.apply(x + t * heads * Dh, heads, Dh, positions ? positions[t] : pos0 + t);
}

void rope_backward(const nn::Rope& rope, float* dx, int64_t T, int64_t heads, int64_t Dh, int64_t pos0,
                   const int64_t* positions) {
  // y = s·R(θ)x, so dx = s·R(θ)ᵀdy = s·R(-θ)dy: cos(-θ) = cos θ, sin(-θ) = -sin θ exactly.
  for (int64_t t = 0; t < T; ++t) rope.apply(dx + t * heads * Dh, heads, Dh, -(positions ? positions[t] : pos0 + t));
}

namespace {
// Query i and key j of row b (r0 = b * T): HF's mask functions, (causal AND window) OR same
// group, AND padding AND same sequence.
inline bool key_visible(const nn::AttentionShape& a, const KeyMask& m, int64_t r0, int64_t i, int64_t j) {
  if (m.valid && !m.valid[r0 + j]) return false;
  if (m.sequence && m.sequence[r0 + j] != m.sequence[r0 + i]) return false;
  if (m.group && m.group[r0 + i] >= 0 && m.group[r0 + i] == m.group[r0 + j]) return true;
  if (a.causal && j > i) return false;
  return !(a.sliding_window > 0 && j <= i - a.sliding_window);
}
}  // namespace

namespace {

// Query head h of row b: its softmax rows and output. Scores and softmax in double (the gradients
// of the deep vision-language goldens amplify their float32 rounding).
void attention_head_forward(const nn::AttentionShape& a, const float* q, const float* k, const float* v,
                            const KeyMask& mask, int64_t b, int64_t h, int64_t T, float* probs, float* out) {
  const int64_t H = a.n_heads, Dh = a.head_dim, kh = h / (H / a.n_kv_heads);
  const int64_t qw = H * Dh, kw = a.n_kv_heads * Dh;
  std::vector<double> e(T);
  for (int64_t i = 0; i < T; ++i) {
    float* p = probs + ((b * H + h) * T + i) * T;
    const float* qi = q + (b * T + i) * qw + h * Dh;
    bool any = false;
    for (int64_t j = 0; j < T; ++j) {
      if (!key_visible(a, mask, b * T, i, j)) {
        p[j] = -INFINITY;
        continue;
      }
      const float* kj = k + (b * T + j) * kw + kh * Dh;
      double s = 0;
      for (int64_t d = 0; d < Dh; ++d) s += (double)qi[d] * kj[d];
      p[j] = (float)(s * a.scale);
      any = true;
    }
    if (any) {
      float mx = -INFINITY;
      for (int64_t j = 0; j < T; ++j) mx = std::max(mx, p[j]);
      double z = 0;
      for (int64_t j = 0; j < T; ++j) z += e[j] = std::exp((double)p[j] - mx);
      for (int64_t j = 0; j < T; ++j) p[j] = (float)(e[j] / z);
    } else {
      std::fill(p, p + T, 1.0f / T);
    }
    float* o = out + (b * T + i) * qw + h * Dh;
    std::fill(o, o + Dh, 0.0f);
    for (int64_t j = 0; j < T; ++j)
      if (p[j] != 0.0f) ops::add_scaled(o, v + (b * T + j) * kw + kh * Dh, p[j], Dh);
  }
}

// KV head kh of row b with the query heads of its group: it alone accumulates into that head's
// dK / dV slices.
void attention_kv_head_backward(const nn::AttentionShape& a, const float* dout, const float* q, const float* k,
                                const float* v, const float* probs, const KeyMask& mask, int64_t b, int64_t kh,
                                int64_t T, float* dq, float* dk, float* dv) {
  const int64_t H = a.n_heads, Dh = a.head_dim, group = H / a.n_kv_heads;
  const int64_t qw = H * Dh, kw = a.n_kv_heads * Dh;
  std::vector<double> dp(T);
  for (int64_t h = kh * group; h < (kh + 1) * group; ++h)
    for (int64_t i = 0; i < T; ++i) {
      const float* p = probs + ((b * H + h) * T + i) * T;
      bool any = false;
      for (int64_t j = 0; j < T && !any; ++j) any = key_visible(a, mask, b * T, i, j);
      const float* doi = dout + (b * T + i) * qw + h * Dh;
      double sum = 0;
      for (int64_t j = 0; j < T; ++j) {
        if (p[j] == 0.0f) continue;  // a hidden key: no share of dV, and dS is 0
        const float* vj = v + (b * T + j) * kw + kh * Dh;
        double s = 0;
        for (int64_t d = 0; d < Dh; ++d) s += (double)doi[d] * vj[d];
        dp[j] = s;
        sum += (double)p[j] * s;
        ops::add_scaled(dv + (b * T + j) * kw + kh * Dh, doi, p[j], Dh);
      }
      if (!any) continue;  // constant scores: no gradient to q, k
      const float* qi = q + (b * T + i) * qw + h * Dh;
      float* dqi = dq + (b * T + i) * qw + h * Dh;
      for (int64_t j = 0; j < T; ++j) {
        if (p[j] == 0.0f) continue;
        const float ds = (float)(p[j] * (dp[j] - sum)) * a.scale;
        ops::add_scaled(dqi, k + (b * T + j) * kw + kh * Dh, ds, Dh);
        ops::add_scaled(dk + (b * T + j) * kw + kh * Dh, qi, ds, Dh);
      }
    }
}

}  // namespace

void attention_forward(const nn::AttentionShape& a, const float* q, const float* k, const float* v,
                       const KeyMask& mask, int64_t B, int64_t T, float* probs, float* out, ThreadPool* pool) {
  EV_CHECK(a.softcap == 0.0f, "train: attention soft-capping has no backward yet");
  const int64_t H = a.n_heads;
  auto head = [&](int64_t task) { attention_head_forward(a, q, k, v, mask, task / H, task % H, T, probs, out); };
  if (pool) pool->run_tasks(B * H, head);
  else
    for (int64_t task = 0; task < B * H; ++task) head(task);
}

// P = softmax(S), O = P·V: dV += Pᵀ·dO, dP = dO·Vᵀ, dS = P ∘ (dP - Σ_j P dP), dQ += scale·dS·K,
// dK += scale·dSᵀ·Q (summed over the query heads of a KV group). A row that sees no key is a
// constant average: it passes gradient to v only (torch's autograd would also send its softmax
// gradient through the dtype-min scores; such rows are padding queries, whose loss is ignored).
void attention_backward(const nn::AttentionShape& a, const float* dout, const float* q, const float* k,
                        const float* v, const float* probs, const KeyMask& mask, int64_t B, int64_t T, float* dq,
                        float* dk, float* dv, ThreadPool* pool) {
  const int64_t Hkv = a.n_kv_heads;
  auto kv_head = [&](int64_t task) {
    attention_kv_head_backward(a, dout, q, k, v, probs, mask, task / Hkv, task % Hkv, T, dq, dk, dv);
  };
  if (pool) pool->run_tasks(B * Hkv, kv_head);
  else
    for (int64_t task = 0; task < B * Hkv; ++task) kv_head(task);
}

namespace {
// act(g) and act'(g), in double.
void act_and_slope(ops::Activation act, double g, double& f, double& df) {
  switch (act) {
    case ops::Activation::Silu: {
      const double s = 1.0 / (1.0 + std::exp(-g));
      f = g * s;
      df = s * (1.0 + g * (1.0 - s));
      return;
    }
    case ops::Activation::GeluTanh: {
      const double k = 0.7978845608028654, c = 0.044715;
      const double th = std::tanh(k * (g + c * g * g * g));
      f = 0.5 * g * (1.0 + th);
      df = 0.5 * (1.0 + th) + 0.5 * g * (1.0 - th * th) * k * (1.0 + 3.0 * c * g * g);
      return;
    }
    case ops::Activation::Gelu: {
      const double cdf = 0.5 * (1.0 + std::erf(g * 0.7071067811865476));
      f = g * cdf;
      df = cdf + g * 0.3989422804014327 * std::exp(-0.5 * g * g);
      return;
    }
    default:
      fail("train: unsupported activation");
  }
}
}  // namespace

void gated_act_forward(ops::Activation act, const float* gate, const float* up, float* out, int64_t n) {
  double f, df;
  for (int64_t i = 0; i < n; ++i) {
    act_and_slope(act, gate[i], f, df);
    out[i] = (float)(f * up[i]);
  }
}

void gated_act_backward(ops::Activation act, const float* gate, const float* up, const float* dout, float* dgate,
                        float* dup, int64_t n) {
  double f, df;
  for (int64_t i = 0; i < n; ++i) {
    act_and_slope(act, gate[i], f, df);
    dgate[i] += (float)(dout[i] * up[i] * df);
    dup[i] += (float)(dout[i] * f);
  }
}

void softcap_forward(float* x, float cap, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = (float)(cap * std::tanh((double)x[i] / cap));
}

// d/dx cap·tanh(x/cap) = 1 - tanh² = 1 - (y/cap)².
void softcap_backward(const float* y, float cap, const float* dy, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double t = (double)y[i] / cap;
    dx[i] += (float)(dy[i] * (1.0 - t * t));
  }
}

namespace {
// Rows [0, N) on the pool's workers, or here.
template <class Fn>
void for_rows(ThreadPool* pool, int64_t N, Fn&& fn) {
  if (pool) pool->parallel_for(N, 1, [&](int64_t b, int64_t e) { fn(b, e); });
  else fn(0, N);
}
}  // namespace

void target_logps_forward(const float* logits, const int64_t* targets, int64_t N, int64_t V, float* logps,
                          float* entropies, ThreadPool* pool) {
  for (int64_t r = 0; r < N; ++r)
    EV_CHECK(targets[r] == kIgnoreIndex || (targets[r] >= 0 && targets[r] < V), "log-probabilities: target ",
             targets[r], " outside the vocabulary (", V, ")");
  for_rows(pool, N, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* row = logits + r * V;
      const bool counted = targets[r] != kIgnoreIndex;
      if (!counted && !entropies) {
        logps[r] = 0.0f;
        continue;
      }
      const float lse = ops::log_sum_exp(row, V);
      logps[r] = counted ? row[targets[r]] - lse : 0.0f;
      if (entropies) {  // H = lse - Σ p x
        double px = 0;
        for (int64_t j = 0; j < V; ++j) px += std::exp((double)row[j] - lse) * row[j];
        entropies[r] = (float)(lse - px);
      }
    }
  });
}

// ∂ log p_t / ∂ x_j = [j = t] - softmax_j.
void target_logps_backward(const float* logits, const int64_t* targets, int64_t N, int64_t V, const float* dlogps,
                           float* dlogits, ThreadPool* pool) {
  for_rows(pool, N, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      if (targets[r] == kIgnoreIndex || dlogps[r] == 0.0f) continue;
      const float* row = logits + r * V;
      float* d = dlogits + r * V;
      ops::add_exp_scaled(d, row, ops::log_sum_exp(row, V), -dlogps[r], V);
      d[targets[r]] += dlogps[r];
    }
  });
}

}  // namespace edgevl::train
