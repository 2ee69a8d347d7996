// tokenizer.json decoders (the `tokenizers` decoders module: ByteLevel, Metaspace, ByteFallback,
// Fuse, Strip, Replace, Sequence) and post-processors (processors module: TemplateProcessing,
// ByteLevel, BertProcessing, RobertaProcessing, Sequence; only the single-sequence template).
#include <array>

#include "core/error.h"
#include "text/bpe.h"
#include "text/hf/components.h"
#include "text/tokenizer.h"

namespace edgevl::text::hf {

namespace {

// ---------------------------------------------------------------------------------------------
// Decoders

// ByteLevel: tokens written in GPT-2's byte alphabet back to bytes; a token with any character
// outside the alphabet (an added token such as "<|im_end|>" in plain text) is kept as it is.
// Like tokenizers, the output is one string.
class ByteLevel final : public Decoder {
 public:
  ByteLevel() {
    cp_to_byte_.fill(-1);
    const auto cps = detail::gpt2_byte_to_codepoint();
    for (int b = 0; b < 256; ++b) cp_to_byte_[cps[b]] = (int16_t)b;
  }
  void decode_chain(std::vector<std::string>& tokens, const DecodeMode& mode) const override {
    std::string out, bytes;
    for (const std::string& t : tokens) {
      bytes.clear();
      bool all = true;
      for (size_t i = 0; i < t.size() && all;) {
        size_t n;
        const uint32_t cp = uni::next_char(t, i, &n);
        all = cp < cp_to_byte_.size() && cp_to_byte_[cp] >= 0;
        if (all) bytes += (char)cp_to_byte_[cp];
        i += n;
      }
      out += all ? bytes : t;
    }
    tokens.assign(1, mode.raw ? std::move(out) : utf8::sanitize(out));
  }

 private:
  std::array<int16_t, 324> cp_to_byte_;  // the alphabet's code points are all < 324
};

// Metaspace: the replacement character -> space; the first token of the text loses a leading one
// unless the prepend scheme is "never".
class Metaspace final : public Decoder {
 public:
  explicit Metaspace(const json& j) {
    const char* what = "Metaspace decoder";
    replacement_ = get_string(j, "replacement", what, "\xE2\x96\x81");
    EV_CHECK(!replacement_.empty(), "tokenizer.json: ", what, ": empty replacement");
    std::string scheme = get_string(j, "prepend_scheme", what, "");
    if (scheme.empty()) scheme = get_bool(j, "add_prefix_space", what, true) ? "always" : "never";
    strip_first_ = scheme != "never";
  }
  void decode_chain(std::vector<std::string>& tokens, const DecodeMode& mode) const override {
    for (size_t k = 0; k < tokens.size(); ++k) {
      std::string& t = tokens[k];
      std::string out;
      out.reserve(t.size());
      for (size_t i = 0; i < t.size();) {
        if (t.compare(i, replacement_.size(), replacement_) == 0) {
          if (!(k == 0 && i == 0 && mode.at_start && strip_first_)) out += ' ';
          i += replacement_.size();
        } else {
          out += t[i++];
        }
      }
      t.swap(out);
    }
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

// ByteFallback: runs of <0xXX> tokens -> their bytes; a run that is not valid UTF-8 becomes one
// U+FFFD per byte, as tokenizers does (raw mode keeps the bytes for streaming).
class ByteFallback final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens, const DecodeMode& mode) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string run;
    size_t run_len = 0;
    auto flush = [&] {
      if (run_len == 0) return;
      if (mode.raw || utf8::is_valid(run)) {
        out.push_back(std::move(run));
      } else {
        std::string r;
        for (size_t i = 0; i < run_len; ++i) r += "\xEF\xBF\xBD";
        out.push_back(std::move(r));
      }
      run.clear();
      run_len = 0;
    };
    for (std::string& t : tokens) {
      const int b = detail::parse_byte_token_name(t);
      if (b >= 0) {
        run += (char)b;
        ++run_len;
        continue;
      }
      flush();
      out.push_back(std::move(t));
    }
    flush();
    tokens.swap(out);
  }
};

class Fuse final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens, const DecodeMode&) const override {
    std::string all;
    for (const std::string& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

// Strip: up to `start` leading and `stop` trailing copies of the content character per token.
class Strip final : public Decoder {
 public:
  explicit Strip(const json& j) {
    const char* what = "Strip decoder";
    content_ = get_string(j, "content", what, " ");
    EV_CHECK(!content_.empty(), "tokenizer.json: ", what, ": empty content");
    start_ = get_int(j, "start", what, 0);
    stop_ = get_int(j, "stop", what, 0);
    EV_CHECK(start_ >= 0 && stop_ >= 0, "tokenizer.json: ", what, ": negative start/stop");
  }
  void decode_chain(std::vector<std::string>& tokens, const DecodeMode&) const override {
    const size_t c = content_.size();
    for (std::string& t : tokens) {
      size_t b = 0, e = t.size();
      for (int64_t k = 0; k < start_ && b + c <= e && t.compare(b, c, content_) == 0; ++k) b += c;
      for (int64_t k = 0; k < stop_ && e >= b + c && t.compare(e - c, c, content_) == 0; ++k) e -= c;
      t = t.substr(b, e - b);
    }
  }

 private:
  std::string content_;
  int64_t start_, stop_;
};

class Replace final : public Decoder {
 public:
  explicit Replace(const json& j)
      : pattern_(j.value("pattern", json()), "Replace decoder"), content_(get_string(j, "content", "Replace decoder", "")) {}
  void decode_chain(std::vector<std::string>& tokens, const DecodeMode&) const override {
    std::vector<Span> scratch;
    for (std::string& t : tokens) replace_all(pattern_, content_, t, scratch);
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class Sequence final : public Decoder {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  void decode_chain(std::vector<std::string>& tokens, const DecodeMode& mode) const override {
    for (const auto& p : parts_) p->decode_chain(tokens, mode);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

// ---------------------------------------------------------------------------------------------
// Post-processors

// One template item: a special token name, or the sequence itself ("A").
struct Item {
  bool sequence;
  std::string special;
};

// The string form of a template: "<bos> $A:0 </s>:1" ($A, $B, $0, $1, $ name sequences).
std::vector<Item> parse_template_string(const std::string& s) {
  std::vector<Item> items;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    size_t e = s.find(' ', i);
    if (e == std::string::npos) e = s.size();
    if (e == i) break;
    std::string piece = s.substr(i, e - i);
    const size_t colon = piece.rfind(':');
    if (colon != std::string::npos && colon > 0) piece.resize(colon);  // drop the type id
    if (piece[0] == '$') items.push_back({true, piece.substr(1)});
    else items.push_back({false, piece});
    i = e;
  }
  return items;
}

std::vector<Item> parse_template(const json& t) {
  if (t.is_string()) return parse_template_string(t.get<std::string>());
  EV_CHECK(t.is_array(), "tokenizer.json: TemplateProcessing: 'single' is not a list or a string");
  std::vector<Item> items;
  for (const json& it : t) {
    EV_CHECK(it.is_object() && it.size() == 1, "tokenizer.json: TemplateProcessing: bad template item");
    const std::string& kind = it.begin().key();
    const json& body = it.begin().value();
    const std::string id = get_string(body, "id", "TemplateProcessing item", "");
    if (kind == "Sequence") items.push_back({true, id});
    else if (kind == "SpecialToken") items.push_back({false, id});
    else fail("tokenizer.json: TemplateProcessing: unsupported template item '", kind, "'");
  }
  return items;
}

Template template_processing(const json& j, const std::function<int32_t(const std::string&)>& token_id) {
  const json single = j.value("single", json());
  const json specials = j.value("special_tokens", json::object());
  EV_CHECK(specials.is_object(), "tokenizer.json: TemplateProcessing: 'special_tokens' is not an object");
  Template t;
  bool seen_sequence = false;
  for (const Item& item : parse_template(single)) {
    if (item.sequence) {
      EV_CHECK(!seen_sequence, "tokenizer.json: TemplateProcessing: the single template has two sequences");
      seen_sequence = true;
      continue;
    }
    std::vector<int32_t> ids;
    const auto it = specials.find(item.special);
    if (it != specials.end()) {
      const json& sids = it->value("ids", json::array());
      EV_CHECK(sids.is_array(), "tokenizer.json: TemplateProcessing: special token '", item.special, "' has no ids");
      for (const json& v : sids) {
        EV_CHECK(v.is_number_integer(), "tokenizer.json: TemplateProcessing: special token '", item.special, "' has a bad id");
        ids.push_back(v.get<int32_t>());
      }
    } else {
      ids.push_back(token_id(item.special));
    }
    auto& dst = seen_sequence ? t.after : t.before;
    dst.insert(dst.end(), ids.begin(), ids.end());
  }
  EV_CHECK(seen_sequence, "tokenizer.json: TemplateProcessing: the single template has no $A");
  return t;
}

// BertProcessing / RobertaProcessing: {"cls": ["[CLS]", 101], "sep": ["[SEP]", 102]}.
int32_t pair_id(const json& j, const char* key, const char* what) {
  const auto it = j.find(key);
  EV_CHECK(it != j.end() && it->is_array() && it->size() == 2 && (*it)[1].is_number_integer(), "tokenizer.json: ", what,
           ": '", key, "' is not [token, id]");
  return (*it)[1].get<int32_t>();
}

}  // namespace

std::unique_ptr<Decoder> make_decoder(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = component_type(j, "decoder");
  if (type == "ByteLevel") return std::make_unique<ByteLevel>();
  if (type == "Metaspace") return std::make_unique<Metaspace>(j);
  if (type == "ByteFallback") return std::make_unique<ByteFallback>();
  if (type == "Fuse") return std::make_unique<Fuse>();
  if (type == "Strip") return std::make_unique<Strip>(j);
  if (type == "Replace") return std::make_unique<Replace>(j);
  if (type == "Sequence") {
    const auto it = j.find("decoders");
    EV_CHECK(it != j.end() && it->is_array(), "tokenizer.json: Sequence decoder has no 'decoders' list");
    std::vector<std::unique_ptr<Decoder>> parts;
    for (const json& p : *it)
      if (auto d = make_decoder(p)) parts.push_back(std::move(d));
    return std::make_unique<Sequence>(std::move(parts));
  }
  fail("tokenizer.json: unsupported decoder type '", type, "'");
}

Template make_post_processor(const json& j, const std::function<int32_t(const std::string&)>& token_id) {
  if (j.is_null()) return {};
  const std::string type = component_type(j, "post_processor");
  if (type == "ByteLevel") return {};  // only trims offsets
  if (type == "TemplateProcessing") return template_processing(j, token_id);
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    const std::string what = type;
    return {{pair_id(j, "cls", what.c_str())}, {pair_id(j, "sep", what.c_str())}};
  }
  if (type == "Sequence") {
    const auto it = j.find("processors");
    EV_CHECK(it != j.end() && it->is_array(), "tokenizer.json: Sequence post_processor has no 'processors' list");
    Template all;
    for (const json& p : *it) {
      Template t = make_post_processor(p, token_id);
      all.before.insert(all.before.begin(), t.before.begin(), t.before.end());
      all.after.insert(all.after.end(), t.after.begin(), t.after.end());
    }
    return all;
  }
  fail("tokenizer.json: unsupported post_processor type '", type, "'");
}

}  // namespace edgevl::text::hf
