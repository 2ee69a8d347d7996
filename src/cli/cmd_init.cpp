#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include <filesystem>

#include "models/gemma4/gemma4_mmproj.h"
#include "models/layout.h"

namespace edgevl::cli {

void add_init(CLI::App& app) {
  struct Opts {
    std::string config, out, mmproj, type = "F32";
    uint64_t seed = 0;
    int threads = 0;
    bool gguf = false, mmproj_weights = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("init", "Write a random-initialised model from a config.json (HF folder or GGUF)");
  cmd->add_option("config", o->config, "config.json (or a folder holding one)")->required();
  cmd->add_option("out,-o,--out", o->out, "Output: a folder (HF layout) or a file ending in .gguf");
  cmd->add_option("--mmproj", o->mmproj,
                  "Also (or only) write the vision tower, and the audio tower where the config has one, as a "
                  "llama.cpp mmproj .gguf (Gemma 4 multimodal configs)");
  cmd->add_flag("--mmproj-from-weights", o->mmproj_weights,
                "--mmproj converts the towers' weights from the config's folder instead of random ones");
  cmd->add_flag("--gguf", o->gguf, "Write a GGUF file whatever the output's name");
  cmd->add_option("--type,--dtype", o->type, "Weight type: F32, F16, BF16; for GGUF also Q8_0, Q4_0, Q4_K, ...")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "Random seed")->capture_default_str();
  add_thread_option(cmd, o->threads);
  cmd->footer("Weights ~ N(0, initializer_range); GGUF files get a synthetic byte-fallback vocabulary so that\n"
              "llama.cpp and edgevl can load and run them.");
  cmd->callback([o] {
    auto t = dtype_from_name(o->type);
    EV_CHECK(t, "init: unknown type '", o->type, "'");
    InitOptions opt;
    opt.gguf = o->gguf || (o->out.size() > 5 && o->out.substr(o->out.size() - 5) == ".gguf");
    opt.dtype = *t;
    opt.seed = o->seed;
    opt.threads = o->threads;
    EV_CHECK(!o->out.empty() || !o->mmproj.empty(), "init: give an output and/or --mmproj FILE");
    if (!o->out.empty()) init_random_model(o->config, o->out, opt);
    if (!o->mmproj.empty()) {
      if (o->mmproj_weights) {
        const std::string dir = std::filesystem::is_directory(o->config)
                                    ? o->config
                                    : std::filesystem::path(o->config).parent_path().string();
        convert_gemma4_mmproj(dir, o->mmproj, *t, o->threads);
      } else {
        init_gemma4_mmproj(load_hf_config(o->config), o->mmproj, *t, o->seed, o->threads);
      }
    }
  });
}

}  // namespace edgevl::cli
