// edgevl template: render a model's chat template, for one conversation or a JSONL dataset.
#include <cstdio>
#include <fstream>

#include "cli/commands.h"
#include "core/error.h"
#include "core/mmap.h"
#include "text/chat_template.h"

namespace edgevl::cli {

namespace {
using ojson = nlohmann::ordered_json;

ojson parse_json(const std::string& text, const std::string& where) {
  try {
    return ojson::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(where, ": invalid JSON: ", e.what());
  }
}
}  // namespace

void add_template(CLI::App& app) {
  struct Opts {
    std::string model, messages, jsonl, out;
    bool add_generation_prompt = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("template", "Render a model's chat template for messages (or a JSONL file of them)");
  cmd->add_option("model", o->model, "Model folder or .gguf file holding the chat template")->required();
  cmd->add_option("--messages", o->messages, "JSON file: a list of {role, content} messages");
  cmd->add_flag("--add-generation-prompt", o->add_generation_prompt, "End with the assistant turn's opening");
  cmd->add_option("--jsonl", o->jsonl, "Batch: JSONL with messages, add_generation_prompt and optional extra");
  cmd->add_option("--out", o->out, "Batch output JSONL: each input object plus 'rendered' or 'error'");
  cmd->footer("Batch mode never stops on a template error: the line gets an \"error\" field instead.");
  cmd->callback([o] {
    auto t = text::find_chat_template(o->model);
    EV_CHECK(t, o->model, ": no chat template (looked for chat_template.jinja, chat_template.json, "
                          "tokenizer_config.json and GGUF tokenizer.chat_template)");
    if (o->jsonl.empty()) {
      EV_CHECK(!o->messages.empty(), "template: give --messages FILE.json or --jsonl IN --out OUT");
      ojson msgs = parse_json(read_text_file(o->messages), o->messages);
      std::string s = text::apply_chat_template(*t, msgs, o->add_generation_prompt);
      std::fwrite(s.data(), 1, s.size(), stdout);
      return;
    }
    EV_CHECK(!o->out.empty(), "template: --jsonl needs --out");
    std::ifstream in(o->jsonl);
    EV_CHECK(in, o->jsonl, ": cannot open");
    std::string out, line;
    int64_t n = 0, errors = 0;
    while (std::getline(in, line)) {
      ++n;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      ojson obj = parse_json(line, o->jsonl + ":" + std::to_string(n));
      EV_CHECK(obj.is_object() && obj.contains("messages"), o->jsonl, ":", n, ": expected an object with messages");
      try {
        obj["rendered"] = text::apply_chat_template(*t, obj["messages"], obj.value("add_generation_prompt", false),
                                                    obj.value("extra", ojson::object()));
      } catch (const Error& e) {
        obj["error"] = e.what();
        ++errors;
      }
      out += obj.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    }
    write_file_atomic(o->out, out.data(), out.size());
    std::fprintf(stderr, "%lld lines, %lld template errors -> %s\n", (long long)n, (long long)errors, o->out.c_str());
  });
}

}  // namespace edgevl::cli
