// edgevl train-dump: the training state (losses, logits, gradients, AdamW steps) for golden inputs,
// under the golden files' names (../shared/golden/hf/README.md, train/), for comparison with the
// reference stack (transformers + PEFT + TRL).
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "io/safetensors.h"
#include "train/train_dump.h"

namespace edgevl::cli {

void add_train_dump(CLI::App& app) {
  struct Opts {
    std::string model, lora, inputs, out, prefix = "sft.inputs.";
    int threads = 0;
    int64_t adamw_steps = 0;
    train::AdamWOptions adamw;
    bool no_sft = false;
    double dpo_beta = 0.1;
    train::GrpoOptions grpo;
    int64_t num_generations = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("train-dump", "Write losses and gradients computed for golden training inputs");
  cmd->add_option("-m,--model", o->model, "Model folder or .gguf file")->required();
  cmd->add_option("--lora", o->lora, "PEFT adapter folder (adapter_config.json + adapter_model.safetensors)");
  cmd->add_option("--inputs", o->inputs,
                  "safetensors with sft.inputs.* (input_ids, attention_mask, labels [B,T]), dpo.inputs.*, grpo.inputs.*")
      ->required();
  cmd->add_option("--inputs-prefix", o->prefix, "Name prefix of the input tensors")->capture_default_str();
  cmd->add_option("--out", o->out, "Output safetensors (float32)")->required();
  cmd->add_option("--adamw-steps", o->adamw_steps, "With --lora: AdamW steps on the adapter (lora.adamw.*)")
      ->check(CLI::Range(0, 1000000));
  cmd->add_option("--lr", o->adamw.lr, "AdamW learning rate")->capture_default_str();
  cmd->add_option("--weight-decay", o->adamw.weight_decay, "AdamW decoupled weight decay")->capture_default_str();
  cmd->add_option("--beta1", o->adamw.beta1, "AdamW beta1")->capture_default_str();
  cmd->add_option("--beta2", o->adamw.beta2, "AdamW beta2")->capture_default_str();
  cmd->add_option("--eps", o->adamw.eps, "AdamW epsilon")->capture_default_str();
  cmd->add_flag("--no-sft", o->no_sft, "Skip the full fine-tuning gradients (sft.*)");
  cmd->add_option("--dpo-beta", o->dpo_beta, "DPO beta (sigmoid loss)")->capture_default_str();
  cmd->add_option("--grpo-beta", o->grpo.beta, "GRPO KL coefficient (0: no reference model)")->capture_default_str();
  cmd->add_option("--epsilon", o->grpo.epsilon_low, "GRPO clip range below 1")->capture_default_str();
  cmd->add_option("--epsilon-high", o->grpo.epsilon_high, "GRPO clip range above 1")->capture_default_str();
  cmd->add_option("--num-generations", o->num_generations,
                  "GRPO group size for grpo.advantages from grpo.rewards (0: all rows one group)")
      ->check(CLI::Range(0, 1 << 20));
  add_thread_option(cmd, o->threads);
  cmd->footer(
      "Writes sft.loss, sft.logits and sft.grad.<parameter> (full fine-tuning of float32 weights), and with\n"
      "--lora: lora.logits, lora.sft_loss, lora.grad.<PEFT name> and after --adamw-steps N:\n"
      "lora.adamw.losses_before_step and lora.adamw.final.<PEFT name>. The loss is transformers' causal-LM\n"
      "loss: labels shifted by one, mean cross-entropy over labels != -100. AdamW defaults are torch's.\n"
      "With --lora and dpo.inputs.* (input_ids/attention_mask/completion_mask, rows chosen then rejected):\n"
      "dpo.loss, dpo.*logps, dpo.*_rewards, dpo.grad.* (TRL DPOTrainer, sigmoid loss, reference = adapter\n"
      "disabled). With grpo.inputs.* (prompt/completion ids and masks, advantages, num_items_in_batch):\n"
      "grpo.loss, per_token_logps, entropies, coef_1, per_token_loss, grpo.grad.* (TRL GRPOTrainer, dapo).");
  cmd->callback([o] {
    EV_CHECK(o->adamw_steps == 0 || !o->lora.empty(), "train-dump: --adamw-steps needs --lora");
    Context ctx(o->threads > 0 ? o->threads : default_thread_count());
    auto in = safetensors::File::open(o->inputs);
    train::TrainDumpOptions t;
    t.sft_prefix = o->prefix;
    t.dpo_beta = o->dpo_beta;
    t.grpo = o->grpo;
    t.num_generations = o->num_generations;
    t.model = o->model;
    t.lora_dir = o->lora;
    t.adamw_steps = o->adamw_steps;
    t.adamw = o->adamw;
    t.sft = !o->no_sft;
    safetensors::Writer w;
    for (auto& n : train::train_dump(ctx, t, *in)) w.add_f32(n.name, n.shape, n.data);
    w.write(o->out);
  });
}

}  // namespace edgevl::cli
