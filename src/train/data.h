// Training data in TRL's dataset formats, one JSON object per line (JSONL), tokenized for a model:
//   SFT        {"messages": [{role, content}...]}           conversational: loss on assistant turns
//              {"prompt": ..., "completion": ...}            loss on the completion
//              {"text": ...}                                 language modelling: loss on every token
//   preference {"prompt": ..., "chosen": ..., "rejected": ...}   (DPO)
//   prompts    {"prompt": ..., <any other fields>}                (GRPO; other fields reach rewards)
// A prompt/completion may be a string or a list of messages (conversational), as in TRL:
// conversational rows go through the model's chat template, plain strings are tokenized with the
// tokenizer's own special tokens and an EOS closes every completion.
// Vision-language models take images and audio in conversational rows, as content parts:
//   {"type": "image", "image": "photo.jpg"}   (also "path"; a bare {"type": "image"} takes the next
//                                               entry of the row's "images" list, TRL's layout)
//   {"type": "audio", "audio": "clip.wav"}    (also "path", or the row's "audios" list)
// Relative paths are relative to the JSONL file's folder. The chat template writes one
// placeholder per part, which expands into begin + one slot per soft token + end, as the model's
// processor does; the files are preprocessed when their batch is collated (GRPO: also when the
// prompt is sampled from).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/model.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"
#include "train/steps.h"

namespace edgevl::train {

using Json = nlohmann::ordered_json;

// Every line of a JSONL file (blank lines skipped); errors name the file and line.
std::vector<Json> read_jsonl(const std::string& path);

// A media file of a row, in the order of its placeholder in the row's tokens.
struct MediaRef {
  enum class Kind { Image, Audio };
  Kind kind = Kind::Image;
  std::string path;
};

// A model's media processors as the data pipeline needs them (trainers/ implements it over the
// runtime's MediaProcessor): placeholder ids, the soft tokens a file becomes, and the file's
// preprocessed tower input appended to a batch.
class MediaLoader {
 public:
  virtual ~MediaLoader() = default;
  virtual MediaTokens tokens() const = 0;
  virtual int64_t soft_tokens(const MediaRef& m) const = 0;
  virtual void append(const MediaRef& m, Batch& b) const = 0;
};

struct SftExample {
  std::vector<int32_t> ids;
  std::vector<uint8_t> loss;    // 1 = the loss counts this token
  std::vector<MediaRef> media;  // in placeholder order
  std::vector<int32_t> sequence;  // packed: each token's example within the row (empty: one example)
};
struct PreferenceExample {
  std::vector<int32_t> prompt, chosen, rejected;
  std::vector<MediaRef> media;  // the prompt's, shared by both completions
};
struct PromptExample {
  std::vector<int32_t> prompt;
  Json row;                     // the whole row, for reward functions
  std::vector<MediaRef> media;  // the prompt's, in placeholder order
};

struct FormatOptions {
  int64_t max_length = 1024;         // tokens per sequence; longer ones keep their start (TRL)
  bool completion_only_loss = true;  // SFT: loss on completions / assistant turns only
};

class DataFormatter {
 public:
  // `tmpl` may be absent: then conversational rows are an error.
  DataFormatter(const text::Tokenizer& tok, std::optional<text::ChatTemplate> tmpl, FormatOptions o = {});
  // Media parts need the model's processors (null: rows with media are an error); relative paths
  // resolve against `base_dir`. The loader must outlive the formatter.
  void set_media(const MediaLoader* media, std::string base_dir) {
    media_ = media;
    base_dir_ = std::move(base_dir);
  }
  SftExample sft(const Json& row) const;
  PreferenceExample preference(const Json& row) const;
  PromptExample prompt(const Json& row) const;
  const text::Tokenizer& tokenizer() const { return tok_; }

 private:
  std::string render(const Json& messages, bool add_generation_prompt) const;
  std::vector<int32_t> encode(const std::string& s, bool add_special) const;
  // The media parts of messages, in order (errors when the model takes none of them).
  std::vector<MediaRef> media_of(const Json& row, const Json& messages) const;
  // Tokens of a rendered conversation with its first placeholders expanded for `media` (a
  // conversation prefix may hold fewer placeholders than the whole row has files).
  std::vector<int32_t> encode_with_media(const std::string& s, const std::vector<MediaRef>& media,
                                         bool every_file) const;
  // Prompt tokens of a row's "prompt" (string or messages), its text and media when conversational.
  std::vector<int32_t> prompt_ids(const Json& row, const Json& prompt, std::string* rendered,
                                  std::vector<MediaRef>* media) const;
  // Completion tokens following a prompt: conversational ones are the template's rendering of
  // prompt + completion minus the prompt's rendering; plain strings get EOS appended.
  std::vector<int32_t> completion_ids(const Json& prompt, const std::string& rendered_prompt,
                                      const Json& completion) const;

  const text::Tokenizer& tok_;
  std::optional<text::ChatTemplate> tmpl_;
  FormatOptions o_;
  const MediaLoader* media_ = nullptr;
  std::string base_dir_;
};

// TRL's packing (SFTConfig packing=True, the default "bfd" strategy): whole examples placed into
// rows of at most max_length tokens, best fit decreasing (longest first, each into the row it
// fills most closely). In a packed row each example sees only itself, its positions restart at 0
// and its first token is no target (TRL's padding-free collation). Rows keep their examples' media.
std::vector<SftExample> pack_sft(const std::vector<SftExample>& examples, int64_t max_length);

// Right-padded batches (attention mask 0 and label -100 on padding). Rows with media need the
// loader that formatted them.
Batch collate_sft(const std::vector<const SftExample*>& rows, const MediaLoader* media = nullptr);
// Rows [prompt_i + chosen_i ..., prompt_i + rejected_i ...] as DataCollatorForPreference stacks them.
PreferenceBatch collate_preference(const std::vector<const PreferenceExample*>& rows,
                                   const MediaLoader* media = nullptr);

}  // namespace edgevl::train
