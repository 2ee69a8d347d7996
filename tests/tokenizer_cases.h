// The tokenizer fixtures' cases.jsonl (../shared/fixtures/tokenizers/<name>/): text with the
// reference tokenizer's ids (without / with special tokens added) and its decode of the ids.
#pragma once
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace edgevl::test {

struct TokenizerCase {
  std::string text;
  std::vector<int32_t> ids, ids_special;
  std::string decoded;
};

inline std::vector<TokenizerCase> load_tokenizer_cases(const std::string& path) {
  std::vector<TokenizerCase> cases;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const nlohmann::json j = nlohmann::json::parse(line);
    cases.push_back({j.at("text"), j.at("ids").get<std::vector<int32_t>>(), j.at("ids_special").get<std::vector<int32_t>>(),
                     j.at("decoded")});
  }
  return cases;
}

}  // namespace edgevl::test
