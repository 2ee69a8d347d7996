// The training-state dump (`edgevl train-dump`): the reference stack's training computations on
// one batch, under the golden files' names (../shared/golden/hf/README.md, train/):
//   sft.loss, sft.logits, sft.grad.<param>             full fine-tuning gradients of the SFT loss
//   lora.logits, lora.sft_loss, lora.grad.<peft name>  with a PEFT adapter over the frozen base
//   lora.adamw.losses_before_step, lora.adamw.final.*  after N AdamW steps on the adapter
// PEFT names carry the adapter name as PEFT holds them in memory ("...lora_A.default.weight").
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "tensor/context.h"
#include "train/adamw.h"
#include "train/model.h"

namespace edgevl::train {

struct NamedTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

struct TrainDumpOptions {
  std::string model;        // HF folder or GGUF
  std::string lora_dir;     // PEFT adapter folder; "" = no LoRA part
  int64_t adamw_steps = 0;  // with lora_dir
  AdamWOptions adamw;
  bool sft = true;          // the full fine-tuning part
};

// The SFT batch of a golden/inputs file: `<prefix>input_ids`, `<prefix>labels` (int64/int32) and
// optional `<prefix>attention_mask` (all ones when absent).
Batch read_batch(const safetensors::File& f, const std::string& prefix = "sft.inputs.");

std::vector<NamedTensor> train_dump(Context& ctx, const TrainDumpOptions& o, const Batch& batch);

}  // namespace edgevl::train
