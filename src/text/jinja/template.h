// Chat templates: a Jinja2 interpreter for the subset Hugging Face chat templates use, rendering
// as transformers does (jinja2 ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks and
// loopcontrols; its `tojson`, `raise_exception` and `strftime_now`; default Undefined).
//
//   auto t = edgevl::text::jinja::Template::parse(source);   // edgevl::Error on syntax errors
//   std::string s = t.render(context);                        // edgevl::Error where Jinja2 raises
//
// Pass contexts as nlohmann::ordered_json to keep the key order of the caller's objects (it shows in
// `tojson` and in dict iteration, as with Python dicts); plain nlohmann::json sorts keys.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace edgevl::text::jinja {

struct Stmt;

// Bounds that keep hostile templates from hanging or exhausting memory; exceeding one is an Error.
struct RenderLimits {
  size_t max_output = 64u << 20;           // bytes of output, and of any one string
  int64_t max_loop_iterations = 1000000;   // over all loops of one render
  int max_depth = 1000;                    // nested evaluation (expressions, blocks, macro calls)
  size_t max_heap_items = 4000000;         // list / dict elements created in one render
  uint64_t max_work = 2000000000;          // bytes and elements copied, in total
};

class Template {
 public:
  static Template parse(std::string_view source);
  std::string render(const nlohmann::ordered_json& context, const RenderLimits& limits = {}) const;
  std::string render(const nlohmann::json& context, const RenderLimits& limits = {}) const;

 private:
  struct Program;
  std::shared_ptr<const Program> program_;
};

}  // namespace edgevl::text::jinja

namespace edgevl::text {

// Renders a chat template as transformers' apply_chat_template does: variables `messages`,
// `add_generation_prompt`, `bos_token`, `eos_token`, then everything in `extra` (e.g. `tools`,
// `enable_thinking`; `extra` wins on clashes). An empty bos/eos token is still defined as "".
std::string render_chat_template(std::string_view tmpl, const nlohmann::ordered_json& messages,
                                 bool add_generation_prompt, const nlohmann::ordered_json& extra,
                                 const std::string& bos_token, const std::string& eos_token);
std::string render_chat_template(std::string_view tmpl, const nlohmann::json& messages, bool add_generation_prompt,
                                 const nlohmann::json& extra, const std::string& bos_token,
                                 const std::string& eos_token);

}  // namespace edgevl::text
