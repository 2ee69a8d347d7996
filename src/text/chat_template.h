// Where a model keeps its chat template, and applying it. Sources, first found wins:
// chat_template.jinja, chat_template.json ({"chat_template": ...}), tokenizer_config.json
// ("chat_template": a string, or a list of {"name", "template"} from which "default" is taken),
// and GGUF `tokenizer.chat_template`. bos/eos token strings come from tokenizer_config.json (a
// string or an AddedToken object with "content"), or from the GGUF vocabulary.
#pragma once
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace edgevl::text {

struct ChatTemplate {
  std::string source;      // the Jinja text
  std::string bos_token, eos_token;
  std::string origin;      // file it came from (for messages)
};

// `model` is a model folder or a .gguf file; nullopt when it has no chat template.
std::optional<ChatTemplate> find_chat_template(const std::string& model);

// Renders messages as apply_chat_template(messages, add_generation_prompt, **extra) does.
// Errors (the template raised, or bad input) are edgevl::Error naming the template's origin.
std::string apply_chat_template(const ChatTemplate& t, const nlohmann::ordered_json& messages,
                                bool add_generation_prompt, const nlohmann::ordered_json& extra = {});

}  // namespace edgevl::text
