// libFuzzer target for the JSON Schema validator (GRPO's json-schema reward, structured output):
// the input is a schema and a value, split at the first NUL byte; both must parse as JSON.
// Invariants: no crash, hang or unbounded recursion; failures are edgevl::Error only; a schema
// validates a value the same way twice.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/json_schema.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 16 * 1024) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t nul = in.find('\0');
  if (nul == std::string_view::npos) return 0;
  const auto schema = nlohmann::json::parse(in.substr(0, nul), nullptr, false);
  const auto value = nlohmann::json::parse(in.substr(nul + 1), nullptr, false);
  if (schema.is_discarded() || value.is_discarded()) return 0;
  try {
    const std::string a = edgevl::text::json_schema_violation(schema, value);
    const std::string b = edgevl::text::json_schema_violation(schema, value);
    if (a != b) std::abort();
  } catch (const edgevl::Error&) {
  }
  return 0;
}
