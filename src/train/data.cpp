#include "train/data.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "train/grad_ops.h"

namespace edgevl::train {

std::vector<Json> read_jsonl(const std::string& path) {
  std::ifstream f(path);
  EV_CHECK(f, path, ": cannot open");
  std::vector<Json> rows;
  std::string line;
  for (int64_t n = 1; std::getline(f, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    Json j = Json::parse(line, nullptr, false);
    EV_CHECK(!j.is_discarded() && j.is_object(), path, ":", n, ": not a JSON object");
    rows.push_back(std::move(j));
  }
  EV_CHECK(!rows.empty(), path, ": no rows");
  return rows;
}

namespace {

bool conversational(const Json& v) { return v.is_array(); }

void check_messages(const Json& messages) {
  for (const Json& m : messages) {
    EV_CHECK(m.is_object() && m.contains("role") && m.contains("content"),
             "data: a message must be an object with role and content");
    if (m["content"].is_array())
      for (const Json& part : m["content"]) {
        const std::string type = part.is_object() ? part.value("type", "text") : "text";
        EV_CHECK(type == "text" || type == "image" || type == "audio", "data: message parts of type '", type,
                 "' are not supported (text, image, audio)");
      }
  }
}

bool has_media_parts(const Json& messages) {
  for (const Json& m : messages)
    if (m.is_object() && m.contains("content") && m["content"].is_array())
      for (const Json& part : m["content"])
        if (part.is_object() && part.value("type", "text") != "text") return true;
  return false;
}

void truncate(std::vector<int32_t>& v, int64_t n) {
  if ((int64_t)v.size() > n) v.resize(n);
}

// Cuts `ids` to at most n tokens without splitting a media block: a block the cut would split is
// dropped whole (the sequence ends before its begin token), with every later file.
void truncate_with_media(std::vector<int32_t>& ids, std::vector<MediaRef>& media, int64_t n,
                         const MediaLoader* loader) {
  if ((int64_t)ids.size() <= n) return;
  if (media.empty()) return truncate(ids, n);
  const MediaTokens t = loader->tokens();
  size_t kept = 0;
  for (int64_t i = 0; i < (int64_t)ids.size(); ++i) {
    const bool begin = ids[i] == t.begin_image || ids[i] == t.begin_audio;
    if (!begin || kept >= media.size()) continue;
    const int64_t end = i + 1 + loader->soft_tokens(media[kept]);  // the end token's index
    if (end >= n) {
      n = i;
      break;
    }
    ++kept;
  }
  ids.resize(std::min<int64_t>(n, ids.size()));
  media.resize(kept);
}

}  // namespace

DataFormatter::DataFormatter(const text::Tokenizer& tok, std::optional<text::ChatTemplate> tmpl, FormatOptions o)
    : tok_(tok), tmpl_(std::move(tmpl)), o_(o) {
  EV_CHECK(o_.max_length > 1, "data: max_length must be at least 2");
}

std::string DataFormatter::render(const Json& messages, bool add_generation_prompt) const {
  EV_CHECK(tmpl_, "data: conversational rows need the model's chat template (none found; give --chat-template)");
  check_messages(messages);
  return text::apply_chat_template(*tmpl_, messages, add_generation_prompt);
}

std::vector<int32_t> DataFormatter::encode(const std::string& s, bool add_special) const {
  return tok_.encode(s, add_special, /*parse_special=*/true);
}

std::vector<MediaRef> DataFormatter::media_of(const Json& row, const Json& messages) const {
  std::vector<MediaRef> out;
  size_t next[2] = {0, 0};
  for (const Json& m : messages) {
    if (!m.is_object() || !m.contains("content") || !m["content"].is_array()) continue;
    for (const Json& part : m["content"]) {
      const std::string type = part.is_object() ? part.value("type", "text") : "text";
      if (type != "image" && type != "audio") continue;
      const bool image = type == "image";
      EV_CHECK(media_, "data: the row has ", type, " parts but the model takes no ", image ? "images" : "audio",
               " (a vision-language model with its ", image ? "vision" : "audio", " tower is needed)");
      std::string path;
      for (const char* key : {image ? "image" : "audio", "path"})
        if (part.contains(key) && part[key].is_string()) path = part[key].get<std::string>();
      if (path.empty()) {
        // TRL's layout: bare parts take the row's "images" ("audios") entries in order.
        const char* column = image ? "images" : "audios";
        size_t& k = next[image ? 0 : 1];
        EV_CHECK(row.contains(column) && row[column].is_array() && k < row[column].size() && row[column][k].is_string(),
                 "data: an ", type, " part names no file (give \"", type, "\": PATH, or a \"", column, "\" list)");
        path = row[column][k++].get<std::string>();
      }
      const std::filesystem::path p(path);
      out.push_back({image ? MediaRef::Kind::Image : MediaRef::Kind::Audio,
                     p.is_absolute() || base_dir_.empty() ? path : (std::filesystem::path(base_dir_) / p).string()});
    }
  }
  return out;
}

std::vector<int32_t> DataFormatter::encode_with_media(const std::string& s, const std::vector<MediaRef>& media,
                                                      bool every_file) const {
  std::vector<int32_t> ids = encode(s, false);  // the template writes its own BOS
  if (media.empty()) return ids;
  const MediaTokens t = media_->tokens();
  std::vector<int32_t> out;
  size_t k = 0;
  for (int32_t id : ids) {
    const bool image = id == t.image, audio = id == t.audio;
    if (!image && !audio) {
      out.push_back(id);
      continue;
    }
    EV_CHECK(k < media.size() && (media[k].kind == MediaRef::Kind::Image) == image, "data: the chat template wrote ",
             image ? "an image" : "an audio", " placeholder where the row has no such part");
    out.push_back(image ? t.begin_image : t.begin_audio);
    out.insert(out.end(), media_->soft_tokens(media[k++]), id);
    out.push_back(image ? t.end_image : t.end_audio);
  }
  EV_CHECK(!every_file || k == media.size(), "data: the row has ", media.size(), " media parts but the chat template ",
           "wrote ", k, " placeholders (does it render image/audio content parts?)");
  return out;
}

std::vector<int32_t> DataFormatter::prompt_ids(const Json& row, const Json& prompt, std::string* rendered,
                                               std::vector<MediaRef>* media) const {
  if (conversational(prompt)) {
    *rendered = render(prompt, true);
    *media = media_of(row, prompt);
    return encode_with_media(*rendered, *media, true);
  }
  EV_CHECK(prompt.is_string(), "data: \"prompt\" must be a string or a list of messages");
  return encode(prompt.get<std::string>(), true);
}

std::vector<int32_t> DataFormatter::completion_ids(const Json& prompt, const std::string& rendered_prompt,
                                                   const Json& completion) const {
  if (conversational(completion)) {
    EV_CHECK(conversational(prompt), "data: a conversational completion needs a conversational prompt");
    EV_CHECK(!has_media_parts(completion), "data: media parts belong in the prompt, not in a completion");
    Json all = prompt;
    for (const Json& m : completion) all.push_back(m);
    const std::string full = render(all, false);
    EV_CHECK(full.compare(0, rendered_prompt.size(), rendered_prompt) == 0,
             "data: the chat template renders the prompt differently once the completion follows");
    return encode(full.substr(rendered_prompt.size()), false);
  }
  EV_CHECK(completion.is_string(), "data: a completion must be a string or a list of messages");
  std::vector<int32_t> ids = encode(completion.get<std::string>(), false);
  if (tok_.eos_id() >= 0) ids.push_back(tok_.eos_id());
  return ids;
}

SftExample DataFormatter::sft(const Json& row) const {
  SftExample e;
  if (row.contains("messages")) {
    const Json& msgs = row["messages"];
    EV_CHECK(msgs.is_array() && !msgs.empty(), "data: \"messages\" must be a non-empty list");
    e.media = media_of(row, msgs);
    e.ids = encode_with_media(render(msgs, false), e.media, true);
    e.loss.assign(e.ids.size(), o_.completion_only_loss ? 0 : 1);
    if (o_.completion_only_loss) {
      // Each assistant turn: the tokens between the conversation up to it (with the generation
      // prompt) and the conversation including it.
      Json prefix = Json::array();
      for (const Json& m : msgs) {
        if (m.value("role", "") == "assistant") {
          const size_t a = encode_with_media(render(prefix, true), e.media, false).size();
          Json upto = prefix;
          upto.push_back(m);
          const size_t b = std::min(encode_with_media(render(upto, false), e.media, false).size(), e.ids.size());
          for (size_t i = a; i < b; ++i) e.loss[i] = 1;
        }
        prefix.push_back(m);
      }
    }
  } else if (row.contains("prompt") && row.contains("completion")) {
    std::string rendered;
    e.ids = prompt_ids(row, row["prompt"], &rendered, &e.media);
    const auto c = completion_ids(row["prompt"], rendered, row["completion"]);
    e.loss.assign(e.ids.size(), o_.completion_only_loss ? 0 : 1);
    e.ids.insert(e.ids.end(), c.begin(), c.end());
    e.loss.resize(e.ids.size(), 1);
  } else if (row.contains("text")) {
    EV_CHECK(row["text"].is_string(), "data: \"text\" must be a string");
    e.ids = encode(row["text"].get<std::string>(), true);
    if (tok_.eos_id() >= 0) e.ids.push_back(tok_.eos_id());
    e.loss.assign(e.ids.size(), 1);
  } else {
    fail("data: an SFT row needs \"messages\", \"prompt\" + \"completion\", or \"text\"");
  }
  truncate_with_media(e.ids, e.media, o_.max_length, media_);
  e.loss.resize(e.ids.size());
  return e;
}

PreferenceExample DataFormatter::preference(const Json& row) const {
  EV_CHECK(row.contains("prompt") && row.contains("chosen") && row.contains("rejected"),
           "data: a preference row needs \"prompt\", \"chosen\" and \"rejected\"");
  PreferenceExample e;
  std::string rendered;
  e.prompt = prompt_ids(row, row["prompt"], &rendered, &e.media);
  e.chosen = completion_ids(row["prompt"], rendered, row["chosen"]);
  e.rejected = completion_ids(row["prompt"], rendered, row["rejected"]);
  // TRL (truncation_mode keep_start) cuts the whole sequence at max_length.
  truncate_with_media(e.prompt, e.media, o_.max_length - 1, media_);
  truncate(e.chosen, o_.max_length - (int64_t)e.prompt.size());
  truncate(e.rejected, o_.max_length - (int64_t)e.prompt.size());
  return e;
}

PromptExample DataFormatter::prompt(const Json& row) const {
  EV_CHECK(row.contains("prompt"), "data: a GRPO row needs \"prompt\"");
  PromptExample e;
  std::string rendered;
  e.prompt = prompt_ids(row, row["prompt"], &rendered, &e.media);
  EV_CHECK(!e.prompt.empty(), "data: empty prompt");
  truncate_with_media(e.prompt, e.media, o_.max_length - 1, media_);
  e.row = row;
  return e;
}

std::vector<SftExample> pack_sft(const std::vector<SftExample>& examples, int64_t max_length) {
  EV_CHECK(max_length > 1, "data: packing needs max_length of at least 2");
  std::vector<size_t> order(examples.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return examples[a].ids.size() > examples[b].ids.size(); });
  std::vector<SftExample> rows;
  for (size_t i : order) {
    const SftExample& e = examples[i];
    if (e.ids.empty()) continue;
    EV_CHECK((int64_t)e.ids.size() <= max_length, "data: an example of ", e.ids.size(),
             " tokens does not fit a packed row of ", max_length);
    // Best fit: the row with the least room left that still takes the example.
    SftExample* best = nullptr;
    for (SftExample& r : rows) {
      const int64_t room = max_length - (int64_t)r.ids.size();
      if (room >= (int64_t)e.ids.size() && (!best || room < max_length - (int64_t)best->ids.size())) best = &r;
    }
    if (!best) best = &rows.emplace_back();
    const int32_t seq = best->ids.empty() ? 0 : best->sequence.back() + 1;
    best->ids.insert(best->ids.end(), e.ids.begin(), e.ids.end());
    const size_t start = best->loss.size();
    best->loss.insert(best->loss.end(), e.loss.begin(), e.loss.end());
    best->loss[start] = 0;
    best->sequence.insert(best->sequence.end(), e.ids.size(), seq);
    best->media.insert(best->media.end(), e.media.begin(), e.media.end());
  }
  return rows;
}

namespace {
void append_media(const std::vector<MediaRef>& media, const MediaLoader* loader, Batch& b) {
  EV_CHECK(media.empty() || loader, "data: rows with media need the model's media loader");
  for (const MediaRef& m : media) loader->append(m, b);
}
}  // namespace

Batch collate_sft(const std::vector<const SftExample*>& rows, const MediaLoader* media) {
  Batch b;
  b.B = (int64_t)rows.size();
  for (const SftExample* r : rows) b.T = std::max<int64_t>(b.T, (int64_t)r->ids.size());
  b.input_ids.assign(b.B * b.T, 0);
  b.attention_mask.assign(b.B * b.T, 0);
  b.labels.assign(b.B * b.T, kIgnoreIndex);
  for (int64_t i = 0; i < b.B; ++i)
    for (size_t t = 0; t < rows[i]->ids.size(); ++t) {
      b.input_ids[i * b.T + t] = rows[i]->ids[t];
      b.attention_mask[i * b.T + t] = 1;
      if (rows[i]->loss[t]) b.labels[i * b.T + t] = rows[i]->ids[t];
    }
  for (const SftExample* r : rows) append_media(r->media, media, b);
  const bool packed = std::any_of(rows.begin(), rows.end(), [](const SftExample* r) { return !r->sequence.empty(); });
  if (packed) {
    // Padding continues its row's last sequence: masked as keys, and no target.
    b.sequence_ids.assign(b.B * b.T, 0);
    for (int64_t i = 0; i < b.B; ++i)
      for (int64_t t = 0; t < b.T; ++t) {
        const auto& s = rows[i]->sequence;
        b.sequence_ids[i * b.T + t] = s.empty() ? 0 : s[std::min<size_t>(t, s.size() - 1)];
      }
  }
  return b;
}

PreferenceBatch collate_preference(const std::vector<const PreferenceExample*>& rows, const MediaLoader* media) {
  PreferenceBatch p;
  Batch& b = p.rows;
  const int64_t n = (int64_t)rows.size();
  b.B = 2 * n;
  for (const PreferenceExample* r : rows)
    b.T = std::max<int64_t>(b.T, (int64_t)(r->prompt.size() + std::max(r->chosen.size(), r->rejected.size())));
  b.input_ids.assign(b.B * b.T, 0);
  b.attention_mask.assign(b.B * b.T, 0);
  b.labels.assign(b.B * b.T, kIgnoreIndex);
  p.completion_mask.assign(b.B * b.T, 0);
  for (int64_t i = 0; i < b.B; ++i) {
    const PreferenceExample& r = *rows[i % n];
    const std::vector<int32_t>& c = i < n ? r.chosen : r.rejected;
    int64_t t = 0;
    for (int32_t id : r.prompt) {
      b.input_ids[i * b.T + t] = id;
      b.attention_mask[i * b.T + t++] = 1;
    }
    for (int32_t id : c) {
      b.input_ids[i * b.T + t] = id;
      b.attention_mask[i * b.T + t] = 1;
      p.completion_mask[i * b.T + t++] = 1;
    }
  }
  for (int64_t i = 0; i < b.B; ++i) append_media(rows[i % n]->media, media, b);
  return p;
}

}  // namespace edgevl::train
