// JSON Schema validation (the draft 2020-12 keywords structured output uses): type, enum, const,
// properties, required, additionalProperties, items, prefixItems, minItems/maxItems,
// minLength/maxLength, pattern, minimum/maximum/exclusive*, multipleOf, anyOf/oneOf/allOf/not,
// and local $ref ("#/$defs/..."). Unknown keywords are ignored, as the specification says.
// `pattern` runs on PCRE2 (UTF, Unicode classes), bounded by its match limits.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace edgevl::text {

// "" when `value` satisfies `schema`, else the first violation ("$.items[2].name: expected string").
std::string json_schema_violation(const nlohmann::json& schema, const nlohmann::json& value);

}  // namespace edgevl::text
