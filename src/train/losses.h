// The trainers' objectives on top of a model's logits, as transformers and TRL v1.9 compute them
// (../shared/golden/hf/train/*/golden.json quotes the reference lines). Each returns the loss and
// the gradient with respect to what it was given (logits or per-token log-probabilities), so a
// trainer chains: model forward -> logps -> loss -> dlogps -> dlogits -> model backward.
#pragma once
#include <cstdint>
#include <vector>

#include "tensor/tensor.h"
#include "train/model.h"

namespace edgevl::train {

// transformers' ForCausalLMLoss: labels shifted left by one, -Σ log p(label) over labels != -100,
// divided by `num_items` (num_items_in_batch) or, when 0, by the number of counted labels.
// dlogits (optional, [B*T, V]) += ∂loss/∂logits. `pool` (optional) splits the rows.
float causal_lm_loss(const Tensor& logits, const Batch& b, Tensor* dlogits, int64_t num_items = 0,
                     ThreadPool* pool = nullptr);

// Next-token targets under a mask: targets[b, t] = ids[b, t+1] where mask[b, t+1] != 0, else
// kIgnoreIndex (and at t = T-1). TRL's `input_ids[:, 1:]` with `completion_mask[:, 1:]`.
std::vector<int64_t> next_token_targets(const std::vector<int32_t>& ids, const std::vector<uint8_t>& mask, int64_t B,
                                        int64_t T);

// log p(target) per row of logits [N, V] (0 on ignored rows); entropies optional.
std::vector<float> token_logps(const Tensor& logits, const std::vector<int64_t>& targets,
                               std::vector<float>* entropies = nullptr, ThreadPool* pool = nullptr);

// --- DPO (DPOTrainer, loss_type sigmoid, reverse KL, no label smoothing) -------------------------
// Sequence log-probabilities are sums over completion tokens; rows are [chosen 0..n-1, rejected
// 0..n-1] as DataCollatorForPreference stacks them.
struct DpoResult {
  float loss = 0;  // mean over pairs of -logsigmoid(β((π_c - ref_c) - (π_r - ref_r)))
  std::vector<float> chosen_rewards, rejected_rewards;  // β(π - ref) per pair
  std::vector<float> dpolicy;                           // ∂loss/∂π per row
};
DpoResult dpo_sigmoid_loss(const std::vector<float>& policy_logps, const std::vector<float>& ref_logps, double beta);

// --- GRPO (GRPOTrainer) -----------------------------------------------------------------------
// TRL's scale_rewards "group": (r - group mean) / (unbiased group std + 1e-4); rows are groups of
// `group_size` consecutive completions of one prompt.
std::vector<float> group_advantages(const std::vector<float>& rewards, int64_t group_size);

struct GrpoOptions {
  double epsilon_low = 0.2, epsilon_high = 0.2;  // the clip range of the importance ratio
  double beta = 0.0;                             // KL coefficient (TRL v1 default 0: no reference)
};
struct GrpoResult {
  float loss = 0;
  std::vector<float> per_token_loss, coef_1;  // [G*C], unmasked
  std::vector<float> dlogps;                  // ∂loss/∂logp per token [G*C]
};
// loss_type "dapo": Σ mask·per_token_loss / num_items, per_token_loss = -min(ρA, clip(ρ)A) + β·KL
// with ρ = exp(logp - old_logp); `old_logps` empty = the current policy detached (ρ = 1), as with
// num_iterations 1. `ref_logps` is read only when β > 0 (KL = e^(ref-logp) - (ref-logp) - 1).
GrpoResult grpo_loss(const std::vector<float>& logps, const std::vector<float>& old_logps,
                     const std::vector<float>& ref_logps, const std::vector<float>& advantages,
                     const std::vector<uint8_t>& mask, int64_t C, double num_items, const GrpoOptions& o);

}  // namespace edgevl::train
