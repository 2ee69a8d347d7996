#include "train/gemma4_moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "train/grad_ops.h"

namespace edgevl::train {

// HF Gemma4TextRouter + Gemma4TextExperts (spec 2.7) on the post-attention residual x_mid, as the
// inference forward computes them (models/gemma4/gemma4_text.cpp, experts()), then
// sum12 = post_ffn_norm_1(m) + post_ffn_norm_2(Σ_k weight_k · expert_k(pre_ffn_norm_2(x_mid))).
// The router sees RMSNorm(x_mid) * scale / sqrt(D), softmaxes over all experts (the exact exp, which
// the backward differentiates), keeps the top k (ties to the lower index, as inference), renormalises
// them and multiplies by the per-expert scale.
void gemma4_moe_forward(Context& ctx, const Gemma4TextConfig& c, const Gemma4LayerWeights& w, TrainLinear& router,
                        const Tensor& x_mid, const Tensor& m, int64_t N, MoeActs& a) {
  const int64_t D = c.hidden, E = c.n_experts, K = c.top_k, I = c.moe_ffn;

  // Router.
  a.rs.resize({N, D});
  a.rstd_r.resize(N);
  rms_norm_forward(x_mid.data(), nullptr, a.rs.data(), a.rstd_r.data(), N, D, c.rms_eps);
  const float root = (float)(1.0 / std::sqrt((double)D));
  const float* scale = w.router_scale.f32();
  for (int64_t t = 0; t < N; ++t)
    for (int64_t i = 0; i < D; ++i) a.rs.row(t)[i] *= scale[i] * root;
  a.probs.resize({N, E});
  router.forward(ctx, a.rs.data(), N, a.probs.data());
  a.chosen.resize(N * K);
  a.sum.resize(N);
  a.weight.resize(N * K);
  std::vector<int64_t> order(E), count(E, 0);
  for (int64_t t = 0; t < N; ++t) {
    float* p = a.probs.row(t);
    float mx = p[0], z = 0;
    for (int64_t e = 1; e < E; ++e) mx = std::max(mx, p[e]);
    for (int64_t e = 0; e < E; ++e) {
      p[e] = std::exp(p[e] - mx);
      z += p[e];
    }
    for (int64_t e = 0; e < E; ++e) p[e] /= z;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + K, order.end(),
                      [&](int64_t x, int64_t y) { return p[x] > p[y] || (p[x] == p[y] && x < y); });
    float sum = 0;
    for (int64_t k = 0; k < K; ++k) sum += p[order[k]];
    a.sum[t] = sum;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t e = order[k];
      a.chosen[t * K + k] = (int32_t)e;
      a.weight[t * K + k] = p[e] / sum * w.expert_scale.f32()[e];
      ++count[e];
    }
  }
  // Group the slots by expert, tokens ascending.
  a.first.assign(E + 1, 0);
  for (int64_t e = 0; e < E; ++e) a.first[e + 1] = a.first[e] + count[e];
  std::vector<int64_t> next(a.first.begin(), a.first.end() - 1);
  a.slot.resize(N * K);
  for (int64_t j = 0; j < N * K; ++j) a.slot[next[a.chosen[j]]++] = j;

  // Experts: down(act(gate(xe)) * up(xe)) on each expert's rows, weighted into y.
  a.xe.resize({N, D});
  a.rstd_e.resize(N);
  rms_norm_forward(x_mid.data(), w.pre_ffn_norm_2.f32(), a.xe.data(), a.rstd_e.data(), N, D, c.rms_eps);
  a.gate.resize({N * K, I});
  a.up.resize({N * K, I});
  a.act.resize({N * K, I});
  a.out.resize({N * K, D});
  a.y.resize({N, D});
  a.y.fill(0.0f);
  Tensor xin;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t j0 = a.first[e], n = a.first[e + 1] - j0;
    if (n == 0) continue;
    xin.resize({n, D});
    for (int64_t i = 0; i < n; ++i) std::memcpy(xin.row(i), a.xe.row(a.slot[j0 + i] / K), D * sizeof(float));
    ops::linear(ctx, w.experts_gate_up.rows_slice(e * 2 * I, I), xin.data(), n, a.gate.row(j0));
    ops::linear(ctx, w.experts_gate_up.rows_slice(e * 2 * I + I, I), xin.data(), n, a.up.row(j0));
    gated_act_forward(c.act, a.gate.row(j0), a.up.row(j0), a.act.row(j0), n * I);
    ops::linear(ctx, w.experts_down.rows_slice(e * D, D), a.act.row(j0), n, a.out.row(j0));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t j = a.slot[j0 + i];
      ops::add_scaled(a.y.row(j / K), a.out.row(j0 + i), a.weight[j], D);
    }
  }

  // The two branches, each post-normed, summed.
  Tensor y2({N, D});
  a.sum12.resize({N, D});
  a.rstd_1.resize(N);
  a.rstd_2.resize(N);
  rms_norm_forward(m.data(), w.post_ffn_norm_1.f32(), a.sum12.data(), a.rstd_1.data(), N, D, c.rms_eps);
  rms_norm_forward(a.y.data(), w.post_ffn_norm_2.f32(), y2.data(), a.rstd_2.data(), N, D, c.rms_eps);
  ops::add(a.sum12.data(), y2.data(), N * D);
}

// dsum = d loss / d sum12; dm += d loss / d (the dense MLP's output m); dx += d loss / d x_mid through
// the experts and the router.
void gemma4_moe_backward(Context& ctx, const Gemma4TextConfig& c, const Gemma4LayerWeights& w, TrainLinear& router,
                         const Tensor& x_mid, const Tensor& m, int64_t N, const MoeActs& a, const Gemma4MoeGrads& g,
                         const float* dsum, float* dm, Tensor& dx) {
  const int64_t D = c.hidden, E = c.n_experts, K = c.top_k, I = c.moe_ffn;

  rms_norm_backward(dsum, m.data(), w.post_ffn_norm_1.f32(), a.rstd_1.data(), dm, g.post_ffn_norm_1, N, D);
  Tensor dy({N, D}), dxe({N, D});
  dy.fill(0.0f);
  dxe.fill(0.0f);
  rms_norm_backward(dsum, a.y.data(), w.post_ffn_norm_2.f32(), a.rstd_2.data(), dy.data(), g.post_ffn_norm_2, N,
                    D);

  // Experts: y[t] = Σ_k weight[t, k] · out[t, k]. dweight feeds the router below.
  std::vector<float> dweight(N * K, 0.0f);
  float* g_gate_up = g.experts_gate_up;
  float* g_down = g.experts_down;
  Tensor xin, dout, dact, dgate, dup, dxin;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t j0 = a.first[e], n = a.first[e + 1] - j0;
    if (n == 0) continue;
    xin.resize({n, D});
    dout.resize({n, D});
    for (Tensor* t : {&dact, &dgate, &dup}) t->resize({n, I});
    dxin.resize({n, D});
    for (Tensor* t : {&dact, &dgate, &dup, &dxin}) t->fill(0.0f);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t j = a.slot[j0 + i], t = j / K;
      const float* g = dy.row(t);
      const float* o = a.out.row(j0 + i);
      float d = 0;
      for (int64_t k = 0; k < D; ++k) d += g[k] * o[k];
      dweight[j] = d;
      for (int64_t k = 0; k < D; ++k) dout.row(i)[k] = a.weight[j] * g[k];
      std::memcpy(xin.row(i), a.xe.row(t), D * sizeof(float));
    }
    const WeightRef gate = w.experts_gate_up.rows_slice(e * 2 * I, I);
    const WeightRef up = w.experts_gate_up.rows_slice(e * 2 * I + I, I);
    linear_backward_input(ctx, w.experts_down.rows_slice(e * D, D), dout.data(), n, dact.data());
    if (g_down) linear_backward_weight(ctx, dout.data(), a.act.row(j0), n, D, I, g_down + e * D * I);
    gated_act_backward(c.act, a.gate.row(j0), a.up.row(j0), dact.data(), dgate.data(), dup.data(), n * I);
    linear_backward_input(ctx, gate, dgate.data(), n, dxin.data());
    linear_backward_input(ctx, up, dup.data(), n, dxin.data());
    if (g_gate_up) {
      linear_backward_weight(ctx, dgate.data(), xin.data(), n, I, D, g_gate_up + e * 2 * I * D);
      linear_backward_weight(ctx, dup.data(), xin.data(), n, I, D, g_gate_up + (e * 2 * I + I) * D);
    }
    for (int64_t i = 0; i < n; ++i) ops::add(dxe.row(a.slot[j0 + i] / K), dxin.row(i), D);
  }
  rms_norm_backward(dxe.data(), x_mid.data(), w.pre_ffn_norm_2.f32(), a.rstd_e.data(), dx.data(),
                    g.pre_ffn_norm_2, N, D);

  // Router: weight_k = r_k · es[e_k] with r_k = p[e_k] / S, S = Σ_top-k p. Through the
  // renormalisation dL/dp[e_k] = (g_k - Σ_j g_j r_j) / S with g_k = dweight_k · es[e_k] (0 for the
  // unselected), then the softmax: dlogit_i = p_i (dp_i - Σ_j p_j dp_j).
  const float* es = w.expert_scale.f32();
  float* g_es = g.expert_scale;
  Tensor dlogits({N, E});
  dlogits.fill(0.0f);
  std::vector<float> dp(K);
  for (int64_t t = 0; t < N; ++t) {
    const float* p = a.probs.row(t);
    const float S = a.sum[t];
    float gr = 0;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t e = a.chosen[t * K + k];
      const float r = p[e] / S;
      gr += dweight[t * K + k] * es[e] * r;
      if (g_es) g_es[e] += dweight[t * K + k] * r;
    }
    float pd = 0;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t e = a.chosen[t * K + k];
      dp[k] = (dweight[t * K + k] * es[e] - gr) / S;
      pd += p[e] * dp[k];
    }
    float* dl = dlogits.row(t);
    for (int64_t e = 0; e < E; ++e) dl[e] = -p[e] * pd;
    for (int64_t k = 0; k < K; ++k) dl[a.chosen[t * K + k]] += p[a.chosen[t * K + k]] * dp[k];
  }
  // rs = RMSNorm(x_mid) * scale / sqrt(D), the proj's input.
  Tensor drs({N, D});
  drs.fill(0.0f);
  router.backward(ctx, a.rs.data(), dlogits.data(), N, drs.data());
  const float root = (float)(1.0 / std::sqrt((double)D));
  const float* scale = w.router_scale.f32();
  float* g_scale = g.router_scale;
  for (int64_t t = 0; t < N; ++t) {
    float* d = drs.row(t);
    const float* x = x_mid.row(t);
    for (int64_t i = 0; i < D; ++i) {
      if (g_scale) g_scale[i] += d[i] * x[i] * a.rstd_r[t] * root;
      d[i] *= scale[i] * root;
    }
  }
  rms_norm_backward(drs.data(), x_mid.data(), nullptr, a.rstd_r.data(), dx.data(), nullptr, N, D);
}

}  // namespace edgevl::train
