// The training-state dump (`edgevl train-dump`): the reference stack's training computations on
// golden inputs, under the golden files' names (../shared/golden/hf/README.md, train/):
//   sft.loss, sft.logits, sft.grad.<param>             full fine-tuning gradients of the SFT loss
//   lora.logits, lora.sft_loss, lora.grad.<peft name>  with a PEFT adapter over the frozen base
//   lora.adamw.losses_before_step, lora.adamw.final.*  after N AdamW steps on the adapter
//   dpo.* (from dpo.inputs.*), grpo.* (from grpo.inputs.*)  the adapter's DPO / GRPO gradients
// PEFT names carry the adapter name as PEFT holds them in memory ("...lora_A.default.weight").
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "tensor/context.h"
#include "train/adamw.h"
#include "train/losses.h"
#include "train/model.h"

namespace edgevl::train {

struct NamedTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

struct TrainDumpOptions {
  std::string model;        // HF folder or GGUF
  std::string lora_dir;     // PEFT adapter folder; "" = no LoRA, DPO or GRPO part
  std::string sft_prefix = "sft.inputs.";
  int64_t adamw_steps = 0;  // with lora_dir
  AdamWOptions adamw;
  bool sft = true;          // the full fine-tuning part
  double dpo_beta = 0.1;    // DPOConfig default
  GrpoOptions grpo;         // GRPOConfig defaults
  int64_t num_generations = 0;  // GRPO group size for grpo.advantages; 0 = all rows one group
};

// The SFT batch of a golden/inputs file: `<prefix>input_ids`, `<prefix>labels` (int64/int32),
// optional `<prefix>attention_mask` (all ones when absent) and, for a vision-language model, the
// processors' outputs: `<prefix>pixel_values` [images, patches, 3·p²] with
// `<prefix>image_position_ids` [images, patches, 2], `<prefix>input_features` [clips, frames, mel]
// with optional `<prefix>input_features_mask` [clips, frames].
Batch read_batch(const safetensors::File& f, const std::string& prefix = "sft.inputs.");

// The model runs with HF's eager-attention numerics (TrainableLM::match_hf_eager_attention), as the
// goldens were made. The parts whose inputs `inputs` holds: SFT when it has <sft_prefix>input_ids, DPO when it has
// dpo.inputs.*, GRPO when it has grpo.inputs.* (the last two need lora_dir).
std::vector<NamedTensor> train_dump(Context& ctx, const TrainDumpOptions& o, const safetensors::File& inputs);

}  // namespace edgevl::train
