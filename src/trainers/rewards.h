// GRPO reward functions: each scores one completion of one prompt row. Specs (repeatable
// `--reward`; their scores are summed, TRL's multi_objective_aggregation "sum_then_normalize"):
//   exact[:FIELD]        1 if the completion, trimmed, equals row[FIELD] (default "answer"), else 0
//   contains[:FIELD]     1 if the completion contains row[FIELD]
//   regex:PATTERN        1 if the PCRE2 regex (UTF, Unicode classes) matches somewhere in the completion
//   json                 1 if the completion (trimmed, an optional ``` fence removed) is JSON
//   json-schema:FILE     1 if it is JSON valid against the schema in FILE
//   length:N             -|characters - N| / N (shorter or longer than N costs proportionally)
//   cmd:COMMAND          runs COMMAND (sh -c) with {"prompt_row", "completion"} as JSON on stdin;
//                        its stdout must be one number
#pragma once
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace edgevl::train {

class Reward {
 public:
  virtual ~Reward() = default;
  virtual double score(const nlohmann::ordered_json& row, const std::string& completion) const = 0;
};

// Error for an unknown or malformed spec (bad regex, unreadable schema).
std::unique_ptr<Reward> make_reward(const std::string& spec);

}  // namespace edgevl::train
