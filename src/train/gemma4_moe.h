// Gemma 4's mixture-of-experts block in training (HF Gemma4TextRouter + Gemma4TextExperts, beside the
// dense MLP of the 26B-A4B layers): the forward as the inference forward computes it
// (models/gemma4/gemma4_text.cpp, experts()), keeping what the backward needs, and the backward into
// the layer's input through the experts and the router. Used by the decoder in train/gemma4_text.cpp.
#pragma once
#include <cstdint>
#include <vector>

#include "models/gemma4/gemma4_config.h"
#include "models/gemma4/gemma4_tables.h"
#include "tensor/context.h"
#include "tensor/tensor.h"
#include "train/model.h"

namespace edgevl::train {

// The mixture of experts' saved activations (gemma4_moe_forward). A token's k-th choice is
// its slot t*K + k; the experts' rows are grouped by expert, tokens ascending within each.
struct MoeActs {
  Tensor rs;                // router input [N, D]: RMSNorm(x_mid) * scale / sqrt(D)
  Tensor probs;             // softmax over all experts [N, E]
  std::vector<int32_t> chosen;  // [N*K] each token's top-k experts, best first
  std::vector<float> sum;       // [N] the top-k probabilities' sum (the renormalisation)
  std::vector<float> weight;    // [N*K] renormalised and scaled: what multiplies the expert's output
  Tensor xe;                    // experts' input [N, D]: pre_feedforward_layernorm_2(x_mid)
  std::vector<int64_t> first;   // [E+1] expert e's rows are [first[e], first[e+1])
  std::vector<int64_t> slot;    // [N*K] each row's slot
  Tensor gate, up, act, out;    // per row: [N*K, I] three times, [N*K, D]
  Tensor y;                     // Σ weight · out [N, D], before post_feedforward_layernorm_2
  Tensor sum12;                 // the normed dense + expert outputs, before post_feedforward_layernorm
  std::vector<float> rstd_r, rstd_e, rstd_1, rstd_2;
  void clear() { *this = MoeActs(); }
};

// Gradient slots of the block's weights (null: frozen).
struct Gemma4MoeGrads {
  float *router_scale, *expert_scale, *experts_gate_up, *experts_down, *pre_ffn_norm_2, *post_ffn_norm_1,
      *post_ffn_norm_2;
};

// x_mid [N, D]: the post-attention residual (the router's and the experts' input); m [N, D]: the
// dense MLP's output. Leaves a.sum12 = post_ffn_norm_1(m) + post_ffn_norm_2(experts(x_mid)).
void gemma4_moe_forward(Context& ctx, const Gemma4TextConfig& c, const Gemma4LayerWeights& w, TrainLinear& router,
                        const Tensor& x_mid, const Tensor& m, int64_t N, MoeActs& a);
// dsum = d loss / d a.sum12; dm += d loss / d m; dx += d loss / d x_mid (experts and router).
void gemma4_moe_backward(Context& ctx, const Gemma4TextConfig& c, const Gemma4LayerWeights& w, TrainLinear& router,
                         const Tensor& x_mid, const Tensor& m, int64_t N, const MoeActs& a, const Gemma4MoeGrads& g,
                         const float* dsum, float* dm, Tensor& dx);

}  // namespace edgevl::train
