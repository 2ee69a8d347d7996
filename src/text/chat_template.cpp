#include "text/chat_template.h"

#include <filesystem>

#include "core/error.h"
#include "core/mmap.h"
#include "io/gguf.h"
#include "text/jinja/template.h"

namespace edgevl::text {

namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

ojson read_json(const fs::path& p) {
  try {
    return ojson::parse(read_text_file(p.string()));
  } catch (const nlohmann::json::exception& e) {
    fail(p.string(), ": invalid JSON: ", e.what());
  }
}

std::string token_string(const ojson& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

// tokenizer_config.json's chat_template: a string, or named templates (take "default").
std::optional<std::string> template_from_value(const ojson& v, const std::string& where) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array()) {
    for (const auto& e : v)
      if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e["template"].is_string())
        return e["template"].get<std::string>();
    fail(where, ": chat_template lists named templates but none called 'default'");
  }
  if (!v.is_null()) fail(where, ": chat_template must be a string or a list of named templates");
  return std::nullopt;
}

}  // namespace

std::optional<ChatTemplate> find_chat_template(const std::string& model) {
  ChatTemplate t;
  if (fs::path(model).extension() == ".gguf") {
    auto g = gguf::File::open(model);
    auto src = g->get_string("tokenizer.chat_template");
    if (!src) return std::nullopt;
    t.source = *src;
    t.origin = model;
    auto tokens = g->get_string_array("tokenizer.ggml.tokens");
    auto pick = [&](const char* key) -> std::string {
      auto id = g->get_int(key);
      return tokens && id && *id >= 0 && *id < (int64_t)tokens->size() ? (*tokens)[*id] : "";
    };
    t.bos_token = pick("tokenizer.ggml.bos_token_id");
    t.eos_token = pick("tokenizer.ggml.eos_token_id");
    return t;
  }
  const fs::path dir = model;
  ojson cfg;
  if (fs::exists(dir / "tokenizer_config.json")) {
    cfg = read_json(dir / "tokenizer_config.json");
    if (cfg.contains("bos_token")) t.bos_token = token_string(cfg["bos_token"]);
    if (cfg.contains("eos_token")) t.eos_token = token_string(cfg["eos_token"]);
  }
  if (fs::exists(dir / "chat_template.jinja")) {
    t.source = read_text_file((dir / "chat_template.jinja").string());
    t.origin = (dir / "chat_template.jinja").string();
    return t;
  }
  if (fs::exists(dir / "chat_template.json")) {
    ojson j = read_json(dir / "chat_template.json");
    t.origin = (dir / "chat_template.json").string();
    if (auto s = template_from_value(j.value("chat_template", ojson()), t.origin)) {
      t.source = *s;
      return t;
    }
  }
  if (cfg.contains("chat_template")) {
    t.origin = (dir / "tokenizer_config.json").string();
    if (auto s = template_from_value(cfg["chat_template"], t.origin)) {
      t.source = *s;
      return t;
    }
  }
  return std::nullopt;
}

std::string apply_chat_template(const ChatTemplate& t, const ojson& messages, bool add_generation_prompt,
                                const ojson& extra) {
  EV_CHECK(messages.is_array(), "chat template: messages must be a JSON array");
  try {
    return render_chat_template(t.source, messages, add_generation_prompt, extra.is_null() ? ojson::object() : extra,
                                t.bos_token, t.eos_token);
  } catch (const Error& e) {
    fail(t.origin, ": ", e.what());
  }
}

}  // namespace edgevl::text
