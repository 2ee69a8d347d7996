#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "core/mmap.h"
#include "runtime/session.h"
#include "text/chat_template.h"

namespace edgevl::cli {

void add_generate(CLI::App& app) {
  struct Opts {
    std::string model, prompt, ids, messages, system, lora;
    bool chat = false;
    int threads = 0, n = 128;
    int64_t ctx = 4096;
    GenerateOptions gen;
    bool show_stats = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("generate", "Continue a prompt, streaming the text as it is produced");
  cmd->add_option("-m,--model", o->model, "Model folder or .gguf file")->required();
  cmd->add_option("-p,--prompt", o->prompt, "Prompt text");
  cmd->add_option("--lora", o->lora, "A LoRA adapter folder (PEFT layout) applied to the model");
  cmd->add_option("--ids", o->ids, "Prompt as comma-separated token ids (instead of text)");
  cmd->add_flag("--chat", o->chat, "Wrap the prompt as a user turn with the model's chat template");
  cmd->add_option("--system", o->system, "With --chat: a system message first");
  cmd->add_option("--messages", o->messages, "A JSON file of {role, content} messages, rendered with the chat template");
  cmd->add_option("-n,--max-tokens", o->n, "Maximum new tokens")->capture_default_str();
  add_thread_option(cmd, o->threads);
  cmd->add_option("-c,--ctx", o->ctx, "Context length (positions in the KV cache)")->capture_default_str();
  add_sampling_options(cmd, o->gen.sampling);
  cmd->add_option("--stop", o->gen.stop_strings, "Stop before this string (repeatable)");
  cmd->add_flag("--stats", o->show_stats, "Print token counts and speeds to stderr at the end");
  cmd->callback([o] {
    EV_CHECK(!o->prompt.empty() || !o->ids.empty() || !o->messages.empty(),
             "generate: give --prompt, --messages or --ids");
    Engine engine = Engine::load(o->model, o->threads);
    if (!o->lora.empty()) engine.attach_lora(o->lora);
    std::vector<int32_t> prompt;
    if (!o->ids.empty()) {
      prompt = parse_id_list(o->ids);
    } else if (o->chat || !o->messages.empty()) {
      auto tmpl = text::find_chat_template(o->model);
      EV_CHECK(tmpl, o->model, ": no chat template for --chat / --messages");
      nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
      if (!o->messages.empty()) {
        try {
          msgs = nlohmann::ordered_json::parse(read_text_file(o->messages));
        } catch (const nlohmann::json::exception& e) {
          fail(o->messages, ": invalid JSON: ", e.what());
        }
      }
      if (!o->system.empty()) msgs.insert(msgs.begin(), {{"role", "system"}, {"content", o->system}});
      if (!o->prompt.empty()) msgs.push_back({{"role", "user"}, {"content", o->prompt}});
      // The template writes BOS itself (as transformers' apply_chat_template: no extra specials).
      prompt = engine.require_tokenizer().encode(text::apply_chat_template(*tmpl, msgs, true), false, true);
    } else {
      prompt = engine.require_tokenizer().encode(o->prompt, true, true);
    }
    o->gen.max_new_tokens = o->n;
    Session session(engine, o->ctx);
    GenerateResult r = session.generate(prompt, o->gen, [](const std::string& s) {
      std::fwrite(s.data(), 1, s.size(), stdout);
      std::fflush(stdout);
      return true;
    });
    if (!engine.tokenizer) {  // no vocabulary: print ids
      for (size_t i = 0; i < r.tokens.size(); ++i) std::printf("%s%d", i ? " " : "", r.tokens[i]);
    }
    std::printf("\n");
    if (o->show_stats)
      std::fprintf(stderr, "prompt %lld tokens in %.1f ms (%.1f tok/s); %zu new tokens in %.1f ms (%.2f tok/s); stop: %s\n",
                   (long long)r.prompt_tokens, r.prefill_ms, r.prompt_tokens * 1000.0 / std::max(r.prefill_ms, 1e-9),
                   r.tokens.size(), r.decode_ms, r.tokens.size() * 1000.0 / std::max(r.decode_ms, 1e-9),
                   r.stop_reason.c_str());
  });
}

}  // namespace edgevl::cli
