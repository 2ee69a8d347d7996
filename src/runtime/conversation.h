// A chat with a model: messages rendered through the model's chat template, user turns that may
// carry images and audio, answers streamed. Each turn re-renders the whole conversation (as
// transformers' apply_chat_template does) and feeds only what differs from what the KV cache
// already holds, so earlier turns, and their images, are not recomputed.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/media_prompt.h"
#include "runtime/session.h"
#include "text/chat_template.h"

namespace edgevl {

class Conversation {
 public:
  // `extra`: further template variables (e.g. {"enable_thinking": false}).
  Conversation(Engine& engine, const MediaProcessor& media, text::ChatTemplate tmpl, int64_t context_length,
               nlohmann::ordered_json extra = nlohmann::ordered_json::object());

  void set_system(const std::string& text);
  // Adds a user turn (media parts first, then the text, as HF chat examples order them) and
  // generates the model's answer, which becomes the next assistant turn.
  GenerateResult reply(const std::string& text, const std::vector<MediaItem>& media, const GenerateOptions& opt,
                       const std::function<bool(const std::string&)>& on_text = {}, MediaStats* stats = nullptr);
  // Forgets every turn (the system message stays) and the cached state.
  void reset();

  const nlohmann::ordered_json& messages() const { return messages_; }
  int64_t cached_tokens() const { return session_.position(); }

 private:
  // The rendered, tokenized and media-expanded prompt of the whole conversation.
  MediaPrompt build_prompt(const std::vector<MediaItem>& all_media, MediaStats* stats);

  Engine& engine_;
  const MediaProcessor& media_;
  text::ChatTemplate tmpl_;
  nlohmann::ordered_json extra_;
  nlohmann::ordered_json messages_ = nlohmann::ordered_json::array();
  std::string system_;
  std::vector<MediaItem> media_items_;       // every turn's media, in conversation order
  std::map<std::string, Tensor> encoded_;    // soft tokens by file, so a turn never re-encodes
  Session session_;
};

}  // namespace edgevl
