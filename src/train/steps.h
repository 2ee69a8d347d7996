// One training computation on one batch — forward, objective, backward into the gradients — as
// both the trainers (train/trainer.h) and `edgevl train-dump` run it. Gradients ACCUMULATE, so
// a trainer sums micro-batches by calling these repeatedly before an optimizer step; `scale`
// multiplies the loss (1 / accumulation steps where the objective is a mean per micro-batch).
#pragma once
#include <cstdint>
#include <vector>

#include "tensor/context.h"
#include "train/lora.h"
#include "train/losses.h"
#include "train/model.h"

namespace edgevl::train {

// Causal-LM cross-entropy on the batch's labels (see causal_lm_loss for num_items).
float sft_step(Context& ctx, TrainableLM& m, const Batch& b, int64_t num_items = 0, float scale = 1.0f);

// A preference batch as DataCollatorForPreference stacks it: rows [prompt_i + chosen_i ...,
// prompt_i + rejected_i ...]; completion_mask marks the chosen/rejected tokens.
struct PreferenceBatch {
  Batch rows;
  std::vector<uint8_t> completion_mask;  // [B*T]
};
struct DpoStepResult {
  DpoResult dpo;
  std::vector<float> policy_token_logps, ref_token_logps;  // [B*T], next-token rows (0 off-completion)
  std::vector<float> policy_logps, ref_logps;              // [B], sums over completion tokens
};
// The reference is the base with the adapter detached (PEFT's disable_adapter): no extra model.
// backward = false: the loss and log-probabilities only (evaluation).
DpoStepResult dpo_step(Context& ctx, TrainableLM& m, LoraSet& lora, const PreferenceBatch& b, double beta,
                       float scale = 1.0f, bool backward = true);

// A GRPO batch as GRPOTrainer._compute_loss takes it: left-padded prompts, right-padded
// completions, one advantage per completion.
struct GrpoBatch {
  int64_t G = 0, P = 0, C = 0;
  std::vector<int32_t> prompt_ids, completion_ids;      // [G*P], [G*C]
  std::vector<uint8_t> prompt_mask, completion_mask;    // [G*P], [G*C]
  std::vector<float> advantages;                        // [G]
  double num_items = 0;  // completion tokens the loss is normalised by (dapo); 0 = this batch's
  std::vector<BatchImage> images;  // a vision-language model's media, as in Batch
  std::vector<BatchAudio> audio;
};
struct GrpoStepResult {
  GrpoResult grpo;
  std::vector<float> logps, entropies;  // [G*C]
};
GrpoStepResult grpo_step(Context& ctx, TrainableLM& m, LoraSet& lora, const GrpoBatch& b, const GrpoOptions& o);

}  // namespace edgevl::train
