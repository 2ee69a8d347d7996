// tokenizer.json with simdjson (components.h: parse_tokenizer_json). simdjson validates the whole
// document (structure and UTF-8) in one pass at several GB/s; model.vocab and model.merges (the
// bulk of the file: Gemma 3 has 262k vocab entries and 515k merge pairs) are then read as views
// of its unescaped strings, and only the small rest of the document becomes nlohmann JSON for the
// pipeline components. nlohmann's own SAX pass over the Gemma 3 file took ~170 ms; this ~40 ms.
#include <simdjson.h>

#include "core/error.h"
#include "text/hf/components.h"

namespace edgevl::text::hf {

namespace {

namespace dom = simdjson::dom;

constexpr size_t kMaxDepth = 256;

json to_json(dom::element e) {
  switch (e.type()) {
    case dom::element_type::ARRAY: {
      json a = json::array();
      for (dom::element v : dom::array(e)) a.push_back(to_json(v));
      return a;
    }
    case dom::element_type::OBJECT: {
      json o = json::object();
      for (dom::key_value_pair kv : dom::object(e)) o[std::string(kv.key)] = to_json(kv.value);  // last duplicate wins
      return o;
    }
    case dom::element_type::INT64: return json(int64_t(e));
    case dom::element_type::UINT64: return json(uint64_t(e));
    case dom::element_type::DOUBLE: return json(double(e));
    case dom::element_type::STRING: return json(std::string(std::string_view(e)));
    case dom::element_type::BOOL: return json(bool(e));
    case dom::element_type::NULL_VALUE: return json(nullptr);
  }
  return json();
}

const char* kind(dom::element e) {
  switch (e.type()) {
    case dom::element_type::ARRAY: return "a list";
    case dom::element_type::OBJECT: return "an object";
    case dom::element_type::STRING: return "a string";
    default: return "a non-string value";
  }
}

void read_vocab(dom::object vocab, TokenizerFile& f) {
  f.vocab.reserve(vocab.size());
  for (dom::key_value_pair kv : vocab) {
    int64_t id = -1;
    if (kv.value.is_int64()) {
      id = int64_t(kv.value);
    } else if (kv.value.is_uint64()) {
      id = -1;  // beyond INT64_MAX
    } else {
      fail("tokenizer.json: model.vocab: '", kv.key, "' maps to ", kind(kv.value), ", not an id");
    }
    EV_CHECK(id >= 0 && id < (int64_t)1 << 30, "tokenizer.json: model.vocab: token '", kv.key, "' has invalid id ",
             id < 0 && kv.value.is_uint64() ? std::to_string(uint64_t(kv.value)) : std::to_string(id));
    f.vocab.push_back({kv.key, (int32_t)id});
  }
}

void read_merges(dom::array merges, TokenizerFile& f) {
  f.merges.reserve(merges.size());
  for (dom::element m : merges) {
    if (m.is_string()) {
      // Legacy "left right" form: exactly one space.
      const std::string_view s(m);
      const size_t sp = s.find(' ');
      EV_CHECK(sp != std::string_view::npos && s.find(' ', sp + 1) == std::string_view::npos,
               "tokenizer.json: model.merges[", f.merges.size(), "] ('", s, "') is not 'left right'");
      f.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      continue;
    }
    EV_CHECK(m.is_array(), "tokenizer.json: model.merges[", f.merges.size(), "] holds ", kind(m), ", not strings");
    const dom::array pair(m);
    std::string_view part[2];
    size_t n = 0;
    for (dom::element s : pair) {
      EV_CHECK(s.is_string(), "tokenizer.json: model.merges[", f.merges.size(), "] holds ", kind(s), ", not strings");
      EV_CHECK(n < 2, "tokenizer.json: model.merges[", f.merges.size(), "] has more than two parts");
      part[n++] = std::string_view(s);
    }
    EV_CHECK(n == 2, "tokenizer.json: model.merges[", f.merges.size(), "] is not a pair of strings");
    f.merges.emplace_back(part[0], part[1]);
  }
}

}  // namespace

TokenizerFile parse_tokenizer_json(std::string_view text) {
  TokenizerFile f;
  auto parser = std::make_shared<dom::parser>();
  if (const auto err = parser->allocate(text.size(), kMaxDepth); err)
    fail("tokenizer.json: ", simdjson::error_message(err));
  dom::element doc;
  // Copies the text into a padded buffer (simdjson reads up to 64 bytes past the end).
  if (const auto err = parser->parse(text.data(), text.size(), true).get(doc); err) {
    EV_CHECK(err != simdjson::DEPTH_ERROR, "tokenizer.json: nesting deeper than ", kMaxDepth);
    fail("tokenizer.json: malformed JSON: ", simdjson::error_message(err));
  }
  EV_CHECK(doc.is_object(), "tokenizer.json: the document is not an object");
  f.rest = json::object();
  for (dom::key_value_pair kv : dom::object(doc)) {
    if (kv.key != "model" || !kv.value.is_object()) {
      f.rest[std::string(kv.key)] = to_json(kv.value);
      continue;
    }
    // The model: vocab (an object) and merges (a list) take the fast path; anything else (a
    // Unigram vocab list, say) stays JSON. A later duplicate "model" replaces an earlier one.
    f.has_vocab = f.has_merges = false;
    f.vocab.clear();
    f.merges.clear();
    json model = json::object();
    for (dom::key_value_pair m : dom::object(kv.value)) {
      if (m.key == "vocab" && m.value.is_object()) {
        f.has_vocab = true;
        f.vocab.clear();
        model.erase("vocab");
        read_vocab(dom::object(m.value), f);
      } else if (m.key == "merges") {
        EV_CHECK(m.value.is_array(), "tokenizer.json: model.merges is ", kind(m.value), ", not a list");
        f.has_merges = true;
        f.merges.clear();
        read_merges(dom::array(m.value), f);
      } else {
        if (m.key == "vocab") f.has_vocab = false, f.vocab.clear();
        model[std::string(m.key)] = to_json(m.value);
      }
    }
    f.rest["model"] = std::move(model);
  }
  f.storage = std::move(parser);
  return f;
}

}  // namespace edgevl::text::hf
