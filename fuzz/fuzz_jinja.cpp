// libFuzzer target for the chat-template interpreter: parses arbitrary bytes as a template and
// renders it with a small fixed chat context, under tight limits so each input stays fast.
// Invariants checked: no crash, hang or unbounded memory; failures are edgevl::Error only; the
// output respects the output limit.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/jinja/template.h"

namespace {

const nlohmann::ordered_json& context() {
  static const nlohmann::ordered_json ctx = nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this? \u00e9\u65e5"}]},
      {"role": "assistant", "content": "<think>\nhm\n</think>\n\nA cat.",
       "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1, "y": [1.5, null, true]}}}]},
      {"role": "tool", "content": "{\"ok\": true}"}
    ],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "add_generation_prompt": true,
    "enable_thinking": false,
    "bos_token": "<bos>",
    "eos_token": "<eos>"
  })");
  return ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;
  std::string_view src(reinterpret_cast<const char*>(data), size);
  edgevl::text::jinja::RenderLimits limits;
  limits.max_output = 1 << 20;
  limits.max_loop_iterations = 20000;
  limits.max_heap_items = 200000;
  limits.max_work = 20000000;
  try {
    auto t = edgevl::text::jinja::Template::parse(src);
    std::string out = t.render(context(), limits);
    if (out.size() > limits.max_output) std::abort();
  } catch (const edgevl::Error&) {
  }
  return 0;
}
