// Training data in TRL's dataset formats, one JSON object per line (JSONL), tokenized for a model:
//   SFT        {"messages": [{role, content}...]}           conversational: loss on assistant turns
//              {"prompt": ..., "completion": ...}            loss on the completion
//              {"text": ...}                                 language modelling: loss on every token
//   preference {"prompt": ..., "chosen": ..., "rejected": ...}   (DPO)
//   prompts    {"prompt": ..., <any other fields>}                (GRPO; other fields reach rewards)
// A prompt/completion may be a string or a list of messages (conversational), as in TRL:
// conversational rows go through the model's chat template, plain strings are tokenized with the
// tokenizer's own special tokens and an EOS closes every completion.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "text/chat_template.h"
#include "text/tokenizer.h"
#include "train/steps.h"

namespace edgevl::train {

using Json = nlohmann::ordered_json;

// Every line of a JSONL file (blank lines skipped); errors name the file and line.
std::vector<Json> read_jsonl(const std::string& path);

struct SftExample {
  std::vector<int32_t> ids;
  std::vector<uint8_t> loss;  // 1 = the loss counts this token
};
struct PreferenceExample {
  std::vector<int32_t> prompt, chosen, rejected;
};
struct PromptExample {
  std::vector<int32_t> prompt;
  Json row;  // the whole row, for reward functions
};

struct FormatOptions {
  int64_t max_length = 1024;         // tokens per sequence; longer ones keep their start (TRL)
  bool completion_only_loss = true;  // SFT: loss on completions / assistant turns only
};

class DataFormatter {
 public:
  // `tmpl` may be absent: then conversational rows are an error.
  DataFormatter(const text::Tokenizer& tok, std::optional<text::ChatTemplate> tmpl, FormatOptions o = {});
  SftExample sft(const Json& row) const;
  PreferenceExample preference(const Json& row) const;
  PromptExample prompt(const Json& row) const;
  const text::Tokenizer& tokenizer() const { return tok_; }

 private:
  std::string render(const Json& messages, bool add_generation_prompt) const;
  std::vector<int32_t> encode(const std::string& s, bool add_special) const;
  // Prompt tokens of a row's "prompt" (string or messages) and its text when conversational.
  std::vector<int32_t> prompt_ids(const Json& prompt, std::string* rendered) const;
  // Completion tokens following a prompt: conversational ones are the template's rendering of
  // prompt + completion minus the prompt's rendering; plain strings get EOS appended.
  std::vector<int32_t> completion_ids(const Json& prompt, const std::string& rendered_prompt,
                                      const Json& completion) const;

  const text::Tokenizer& tok_;
  std::optional<text::ChatTemplate> tmpl_;
  FormatOptions o_;
};

// Right-padded batches (attention mask 0 and label -100 on padding).
Batch collate_sft(const std::vector<const SftExample*>& rows);
// Rows [prompt_i + chosen_i ..., prompt_i + rejected_i ...] as DataCollatorForPreference stacks them.
PreferenceBatch collate_preference(const std::vector<const PreferenceExample*>& rows);

}  // namespace edgevl::train
