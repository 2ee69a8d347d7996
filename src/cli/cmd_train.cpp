// edgevl train sft|dpo|grpo: LoRA post-training on the user's own data (TRL's dataset formats as
// JSONL), with checkpoints, --resume, evaluation on a held-out split and a progress line.
#include <memory>
#include <regex>
#include <string>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "trainers/trainer.h"

namespace edgevl::cli {

namespace {

void add_method(CLI::App& parent, train::Method method, const char* name, const char* about, const char* footer) {
  auto o = std::make_shared<train::TrainOptions>();
  o->method = method;
  o->lora.r = 8;
  o->lora.alpha = 16;
  o->lora.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  if (method == train::Method::Grpo) o->adamw.lr = 1e-5;
  auto targets = std::make_shared<std::string>("q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj");
  auto* cmd = parent.add_subcommand(name, about);
  cmd->add_option("-m,--model", o->model, "Base model: HF folder or .gguf (F32, BF16, F16 or a block format: QLoRA)")
      ->required();
  cmd->add_option("--data", o->data, "Training data, JSONL in TRL's format (see below)")->required();
  cmd->add_option("--out", o->out, "Output folder: the adapter (PEFT layout), checkpoint-N/, log.jsonl")->required();
  cmd->add_flag("--resume", o->resume, "Continue from the newest checkpoint in --out (same options required)");
  cmd->add_flag("--recompute", o->recompute,
                "Activation checkpointing: keep each layer's input only, recompute the rest in the backward");
  cmd->add_option("--eval-data", o->eval_data, "Held-out JSONL (default: --eval-split of --data)");
  cmd->add_option("--eval-split", o->eval_split, "Fraction of --data held out for evaluation")->capture_default_str();
  cmd->add_option("--eval-every", o->eval_every, "Evaluate every N steps (0: at each save)")->capture_default_str();
  cmd->add_option("--save-every", o->save_every, "Checkpoint every N steps (0: once per epoch)")->capture_default_str();
  cmd->add_option("--save-total-limit", o->save_total_limit, "Checkpoints kept")->capture_default_str();
  cmd->add_option("--log-every", o->log_every, "Print a log line every N steps")->capture_default_str();
  cmd->add_option("--epochs", o->epochs, "Passes over the training rows")->capture_default_str();
  cmd->add_option("--max-steps", o->max_steps, "Optimizer steps (overrides --epochs)")->capture_default_str();
  cmd->add_option("-b,--batch-size", o->batch_size,
                  method == train::Method::Grpo ? "Prompts per micro-batch (each sampled --num-generations times)"
                  : method == train::Method::Dpo ? "Preference pairs per micro-batch"
                                                 : "Rows per micro-batch")
      ->capture_default_str();
  cmd->add_option("--grad-accum", o->grad_accum, "Micro-batches per optimizer step")->capture_default_str();
  cmd->add_option("--lr", o->adamw.lr, "Peak learning rate")->capture_default_str();
  cmd->add_option("--weight-decay", o->adamw.weight_decay, "AdamW decoupled weight decay")->capture_default_str();
  cmd->add_option("--schedule", o->schedule, "Learning-rate schedule after warmup")
      ->check(CLI::IsMember({"linear", "cosine", "constant"}))
      ->capture_default_str();
  cmd->add_option("--warmup-ratio", o->warmup_ratio, "Warmup as a fraction of the steps")->capture_default_str();
  cmd->add_option("--warmup-steps", o->warmup_steps, "Warmup steps (overrides --warmup-ratio)")->capture_default_str();
  cmd->add_option("--max-grad-norm", o->max_grad_norm, "Clip the gradient norm (0: off)")->capture_default_str();
  cmd->add_option("--seed", o->seed, "Seed of the adapter init, data order and sampling")->capture_default_str();
  if (method == train::Method::Sft)
    cmd->add_flag("--packing", o->packing,
                  "Pack whole examples into rows of --max-length tokens (best fit decreasing, as TRL); each "
                  "example still attends only to itself");
  cmd->add_option("--max-length", o->format.max_length, "Tokens per sequence (longer ones keep their start)")
      ->capture_default_str();
  cmd->add_option("--chat-template", o->chat_template, "Jinja chat template file instead of the model's");
  cmd->add_option("-r,--lora-r", o->lora.r, "LoRA rank")->capture_default_str();
  cmd->add_option("--lora-alpha", o->lora.alpha, "LoRA alpha (scaling alpha / r)")->capture_default_str();
  cmd->add_option("--lora-dropout", o->lora.dropout, "LoRA dropout on the adapters' input (training only)")
      ->check(CLI::Range(0.0, 0.95))
      ->capture_default_str();
  cmd->add_option("--target-modules", *targets, "Comma-separated module names the adapters go on")->capture_default_str();
  cmd->add_option("--target-regex", o->lora.target_regex,
                  "Instead of --target-modules: a regex the whole module name must match (PEFT's string form), "
                  "e.g. '.*vision_tower.*_proj\\.linear' for the Gemma 4 vision tower's projections");
  cmd->add_flag("--no-progress", [o](int64_t) { o->progress = false; }, "No live progress line");
  add_thread_option(cmd, o->threads);
  if (method == train::Method::Sft)
    cmd->add_flag("!--loss-on-all-tokens", o->format.completion_only_loss,
                  "Train on prompt tokens too (default: completions / assistant turns only)");
  if (method == train::Method::Dpo) cmd->add_option("--beta", o->dpo_beta, "DPO beta")->capture_default_str();
  if (method == train::Method::Grpo) {
    cmd->add_option("--reward", o->rewards,
                    "Reward (repeatable, summed): exact[:FIELD], contains[:FIELD], regex:PATTERN, json, "
                    "json-schema:FILE, length:N, cmd:COMMAND")
        ->required();
    cmd->add_option("--num-generations", o->num_generations, "Completions sampled per prompt (the group)")
        ->capture_default_str();
    cmd->add_option("--max-completion-length", o->max_completion_length, "Tokens per sampled completion")
        ->capture_default_str();
    cmd->add_option("--temperature", o->temperature, "Sampling temperature")->capture_default_str();
    cmd->add_option("--beta", o->grpo.beta, "KL coefficient against the base model (0: none)")->capture_default_str();
    cmd->add_option("--epsilon", o->grpo.epsilon_low, "Clip range below 1")->capture_default_str();
    cmd->add_option("--epsilon-high", o->grpo.epsilon_high, "Clip range above 1")->capture_default_str();
  }
  cmd->footer(footer);
  cmd->callback([o, targets] {
    o->lora.target_modules.clear();
    std::string t = *targets;
    for (size_t a = 0; a <= t.size();) {
      const size_t b = std::min(t.find(',', a), t.size());
      if (b > a) o->lora.target_modules.push_back(t.substr(a, b - a));
      a = b + 1;
    }
    EV_CHECK(!o->lora.target_modules.empty() || !o->lora.target_regex.empty(), "train: --target-modules is empty");
    if (!o->lora.target_regex.empty()) {
      try {
        std::regex check(o->lora.target_regex);
      } catch (const std::regex_error& e) {
        fail("train: --target-regex '", o->lora.target_regex, "' is not a valid regex: ", e.what());
      }
    }
    train::train(*o);
  });
}

}  // namespace

void add_train(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Post-train a LoRA adapter: SFT, DPO or GRPO on your own data");
  cmd->require_subcommand(1);
  add_method(*cmd, train::Method::Sft, "sft", "Supervised fine-tuning",
             "Rows (JSONL): {\"messages\": [{\"role\", \"content\"}...]} (loss on assistant turns), {\"prompt\",\n"
             "\"completion\"} (strings or message lists; loss on the completion) or {\"text\"} (every token).\n"
             "Vision-language models (Gemma 4 HF folders): message parts {\"type\": \"image\", \"image\": PATH} or\n"
             "{\"type\": \"audio\", \"audio\": PATH} (or bare image parts and an \"images\" list), relative to the file.\n"
             "Example: edgevl train sft -m model.gguf --data train.jsonl --out adapter --epochs 3 --eval-split 0.1");
  add_method(*cmd, train::Method::Dpo, "dpo", "Direct preference optimisation (sigmoid loss)",
             "Rows (JSONL): {\"prompt\", \"chosen\", \"rejected\"} (strings or message lists). The reference model is\n"
             "the base with the adapter disabled, so it costs no extra memory.");
  add_method(*cmd, train::Method::Grpo, "grpo", "Group relative policy optimisation with reward functions",
             "Rows (JSONL): {\"prompt\", ...}; other fields reach the rewards (exact/contains compare with\n"
             "\"answer\" by default). Each prompt is answered --num-generations times by the current policy;\n"
             "advantages are the group-normalised rewards; loss as TRL v1's GRPOTrainer (dapo, clip 0.2).\n"
             "cmd:COMMAND gets {\"prompt_row\", \"completion\"} as JSON on stdin and prints a number.");
}

}  // namespace edgevl::cli
