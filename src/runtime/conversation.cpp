#include "runtime/conversation.h"

#include <algorithm>

#include "core/error.h"

namespace edgevl {

Conversation::Conversation(Engine& engine, const MediaProcessor& media, text::ChatTemplate tmpl,
                           int64_t context_length, nlohmann::ordered_json extra)
    : engine_(engine),
      media_(media),
      tmpl_(std::move(tmpl)),
      extra_(std::move(extra)),
      session_(engine, context_length) {
  engine_.require_tokenizer();
}

void Conversation::set_system(const std::string& text) {
  system_ = text;
  reset();
}

void Conversation::reset() {
  messages_ = nlohmann::ordered_json::array();
  if (!system_.empty()) messages_.push_back({{"role", "system"}, {"content", system_}});
  media_items_.clear();
  session_.reset();
}

MediaPrompt Conversation::build_prompt(const std::vector<MediaItem>& all_media, MediaStats* stats) {
  const std::string rendered = text::apply_chat_template(tmpl_, messages_, true, extra_);
  // The template writes BOS and the turn markers itself: no extra specials, specials parsed.
  const std::vector<int32_t> tokens = engine_.require_tokenizer().encode(rendered, false, true);
  return expand_media(engine_, media_, tokens, all_media, stats, &encoded_);
}

GenerateResult Conversation::reply(const std::string& text, const std::vector<MediaItem>& media,
                                   const GenerateOptions& opt, const std::function<bool(const std::string&)>& on_text,
                                   MediaStats* stats) {
  nlohmann::ordered_json user = {{"role", "user"}};
  if (media.empty()) {
    user["content"] = text;
  } else {
    nlohmann::ordered_json parts = nlohmann::ordered_json::array();
    for (const MediaItem& m : media) parts.push_back({{"type", m.kind == MediaItem::Kind::Image ? "image" : "audio"}});
    if (!text.empty()) parts.push_back({{"type", "text"}, {"text", text}});
    user["content"] = parts;
  }
  messages_.push_back(user);
  std::vector<MediaItem> all = media_items_;
  all.insert(all.end(), media.begin(), media.end());
  MediaPrompt full;
  try {
    full = build_prompt(all, stats);
  } catch (...) {
    messages_.erase(messages_.size() - 1);  // a turn that cannot be rendered is not kept
    throw;
  }
  media_items_ = std::move(all);

  // Keep the cached prefix the new prompt shares with what was fed before; feed the rest.
  const std::vector<int32_t>& seen = session_.history();
  size_t keep = 0;
  while (keep < seen.size() && keep + 1 < full.tokens.size() && seen[keep] == full.tokens[keep]) ++keep;
  session_.rewind((int64_t)keep);
  MediaPrompt rest;
  rest.tokens.assign(full.tokens.begin() + keep, full.tokens.end());
  const int64_t D = engine_.model->info().hidden;
  for (size_t i = 0; i < full.embed_positions.size(); ++i) {
    if (full.embed_positions[i] < (int32_t)keep) continue;
    rest.embed_positions.push_back(full.embed_positions[i] - (int32_t)keep);
    rest.embeds.insert(rest.embeds.end(), full.embeds.begin() + i * D, full.embeds.begin() + (i + 1) * D);
  }
  GenerateResult r;
  try {
    r = session_.generate(rest, opt, on_text);
  } catch (...) {
    // E.g. the context is full: drop the turn; the cache may hold part of it, so start it over.
    messages_.erase(messages_.size() - 1);
    media_items_.resize(media_items_.size() - media.size());
    session_.reset();
    throw;
  }
  r.prompt_tokens = (int64_t)full.tokens.size();
  messages_.push_back({{"role", "assistant"}, {"content", r.text}});
  return r;
}

}  // namespace edgevl
