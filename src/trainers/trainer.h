// The trainers behind `edgevl train sft|dpo|grpo`: a LoRA adapter over a frozen base (any weight
// dtype: float32, bfloat16/float16 or a GGUF block format, the QLoRA case), AdamW with warmup and
// a linear / cosine / constant schedule, gradient accumulation and clipping, periodic evaluation
// on a held-out split, and checkpoints that `--resume` continues from exactly: the data order,
// learning rate and sampling seeds are functions of the step, and the adapter and optimizer
// state are saved bit for bit (out/checkpoint-N/, written to a temporary folder and renamed).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "train/adamw.h"
#include "train/data.h"
#include "train/losses.h"
#include "train/lora.h"

namespace edgevl::train {

enum class Method { Sft, Dpo, Grpo };

struct TrainOptions {
  Method method = Method::Sft;
  std::string model, data, out;
  std::string eval_data;        // "" = eval_split of data
  double eval_split = 0.0;      // fraction of rows held out (after a seeded shuffle)
  std::string chat_template;    // Jinja file overriding the model's
  FormatOptions format;
  bool packing = false;         // SFT: examples packed into rows of format.max_length (pack_sft)

  int64_t epochs = 1, max_steps = 0;  // max_steps > 0 overrides epochs
  int64_t batch_size = 4;             // rows (SFT), pairs (DPO), prompts x num_generations (GRPO) per micro-batch
  int64_t grad_accum = 1;
  AdamWOptions adamw{1e-4, 0.9, 0.999, 1e-8, 0.0};
  std::string schedule = "linear";    // linear | cosine | constant (transformers' names)
  double warmup_ratio = 0.0;
  int64_t warmup_steps = 0;           // > 0 overrides warmup_ratio
  double max_grad_norm = 1.0;         // 0 = no clipping
  uint64_t seed = 42;

  LoraConfig lora;  // r 8, alpha 16, q/k/v/o/gate/up/down by default (see cmd_train)

  int64_t log_every = 1, eval_every = 0, save_every = 0;  // steps; 0 = end of each epoch / run
  int64_t save_total_limit = 2;
  bool resume = false;
  bool recompute = false;  // activation checkpointing
  int threads = 0;
  bool progress = true;  // the live progress line on stderr

  double dpo_beta = 0.1;
  // GRPO
  int64_t num_generations = 4, max_completion_length = 64;
  float temperature = 1.0f;
  GrpoOptions grpo;
  std::vector<std::string> rewards;  // specs, see train/rewards.h
};

// Runs the whole training; the adapter ends up in opts.out (PEFT layout).
void train(const TrainOptions& opts);

// The learning-rate factor at optimizer step `step` (0-based) of `total`, as transformers'
// get_{linear,cosine,constant}_schedule_with_warmup compute it.
double schedule_factor(const std::string& schedule, int64_t step, int64_t warmup, int64_t total);

}  // namespace edgevl::train
