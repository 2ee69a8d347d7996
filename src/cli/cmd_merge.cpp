// edgevl merge: fold a LoRA adapter into its base model, written in the base's format.
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "train/merge.h"

namespace edgevl::cli {

void add_merge(CLI::App& app) {
  struct Opts {
    std::string model, lora, out;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("merge", "Fold a LoRA adapter into its base model (W + scaling * B A)");
  cmd->add_option("-m,--model", o->model, "Base model: HF folder or .gguf")->required();
  cmd->add_option("--lora", o->lora, "Adapter folder (PEFT layout: adapter_config.json + adapter_model.safetensors)")
      ->required();
  cmd->add_option("--out", o->out, "Output: a folder for an HF base, a .gguf file for a GGUF base")->required();
  cmd->footer(
      "Merged weights keep the base's dtype; block formats (Q4_0, Q8_0, K-quants) are re-quantized, which rounds\n"
      "once more. To keep the base untouched, apply the adapter at run time instead: edgevl run --lora DIR.");
  cmd->callback([o] {
    const train::MergeReport r = train::merge_lora(o->model, o->lora, o->out);
    std::fprintf(stderr, "merged %lld weights, copied %lld tensors -> %s\n", (long long)r.merged, (long long)r.copied,
                 o->out.c_str());
  });
}

}  // namespace edgevl::cli
