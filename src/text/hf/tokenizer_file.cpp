// tokenizer.json in one SAX pass over nlohmann's parser (components.h: parse_tokenizer_json).
// A full DOM of the Gemma 3 file (33 MB: 262k vocab entries, 515k merge pairs) takes ~400 ms to
// build on this machine; routing model.vocab and model.merges straight into vectors avoids two
// million JSON nodes and keeps load time near the parser's own ~170 ms.
#include "core/error.h"
#include "text/hf/components.h"

namespace edgevl::text::hf {

namespace {

constexpr size_t kMaxDepth = 256;

class Sax {
 public:
  explicit Sax(TokenizerFile& f) : f_(f) {}

  bool null() { return scalar(json(nullptr)); }
  bool boolean(bool v) { return scalar(json(v)); }
  bool number_integer(json::number_integer_t v) {
    if (mode_ == Mode::Vocab) return vocab_id(v);
    return scalar(json(v));
  }
  bool number_unsigned(json::number_unsigned_t v) {
    if (mode_ == Mode::Vocab) return vocab_id(v > (uint64_t)INT64_MAX ? -1 : (int64_t)v);
    return scalar(json(v));
  }
  bool number_float(json::number_float_t v, const std::string&) { return scalar(json(v)); }
  bool binary(json::binary_t&) { fail("tokenizer.json: binary values are not JSON"); }
  bool string(std::string& s) {
    if (mode_ == Mode::Merges) {
      // Legacy "left right" form: exactly one space.
      const size_t sp = s.find(' ');
      EV_CHECK(sp != std::string::npos && s.find(' ', sp + 1) == std::string::npos, "tokenizer.json: model.merges[",
               f_.merges.size(), "] ('", s, "') is not 'left right'");
      f_.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      return true;
    }
    if (mode_ == Mode::MergePair) {
      EV_CHECK(pair_n_ < 2, "tokenizer.json: model.merges[", f_.merges.size(), "] has more than two parts");
      pair_[pair_n_++] = s;
      return true;
    }
    return scalar(json(s));
  }
  bool start_object(size_t) {
    if (mode_ == Mode::VocabPending) {
      mode_ = Mode::Vocab;
      f_.has_vocab = true;
      return true;
    }
    check_dom("an object");
    const bool is_model = dom_.size() == 1 && key_ == "model";
    json* o = place(json::object());
    if (is_model) model_ = o;
    push(o);
    return true;
  }
  bool key(std::string& k) {
    if (mode_ == Mode::Vocab) {
      token_ = k;
      return true;
    }
    key_ = k;
    if (model_ && !dom_.empty() && dom_.back() == model_) {
      if (k == "vocab") mode_ = Mode::VocabPending;
      else if (k == "merges") mode_ = Mode::MergesPending;
    }
    return true;
  }
  bool end_object() {
    if (mode_ == Mode::Vocab) {
      mode_ = Mode::Dom;
      return true;
    }
    dom_.pop_back();
    return true;
  }
  bool start_array(size_t) {
    if (mode_ == Mode::MergesPending) {
      mode_ = Mode::Merges;
      f_.has_merges = true;
      return true;
    }
    if (mode_ == Mode::Merges) {
      mode_ = Mode::MergePair;
      pair_n_ = 0;
      return true;
    }
    check_dom("a list");
    push(place(json::array()));
    return true;
  }
  bool end_array() {
    if (mode_ == Mode::MergePair) {
      EV_CHECK(pair_n_ == 2, "tokenizer.json: model.merges[", f_.merges.size(), "] is not a pair of strings");
      f_.merges.emplace_back(std::move(pair_[0]), std::move(pair_[1]));
      mode_ = Mode::Merges;
      return true;
    }
    if (mode_ == Mode::Merges) {
      mode_ = Mode::Dom;
      return true;
    }
    dom_.pop_back();
    return true;
  }
  bool parse_error(size_t, const std::string&, const nlohmann::detail::exception& e) {
    fail("tokenizer.json: ", e.what());
  }

 private:
  // Dom: building `rest`. *Pending: the model's "vocab"/"merges" key was seen; an object / a list
  // as its value takes the fast path, anything else (a Unigram vocab list, say) goes to `rest`.
  enum class Mode { Dom, VocabPending, MergesPending, Vocab, Merges, MergePair };

  bool vocab_id(int64_t id) {
    EV_CHECK(id >= 0 && id < (int64_t)1 << 30, "tokenizer.json: model.vocab: token '", token_, "' has invalid id ", id);
    f_.vocab.emplace_back(token_, id);
    return true;
  }
  // Values other than the expected ones inside vocab / merges are errors; after a pending key they
  // fall back to the DOM.
  void check_dom(const char* what) {
    EV_CHECK(mode_ != Mode::MergesPending, "tokenizer.json: model.merges is ", what, ", not a list");
    if (mode_ == Mode::VocabPending) mode_ = Mode::Dom;
    if (mode_ == Mode::Vocab) fail("tokenizer.json: model.vocab: '", token_, "' maps to ", what, ", not an id");
    if (mode_ == Mode::Merges || mode_ == Mode::MergePair)
      fail("tokenizer.json: model.merges[", f_.merges.size(), "] holds ", what, ", not strings");
  }
  bool scalar(json&& v) {
    check_dom("a non-string value");
    place(std::move(v));
    return true;
  }
  json* place(json&& v) {
    if (dom_.empty()) {
      f_.rest = std::move(v);
      return &f_.rest;
    }
    json* top = dom_.back();
    if (top->is_array()) {
      top->push_back(std::move(v));
      return &top->back();
    }
    json& slot = (*top)[key_];
    slot = std::move(v);
    return &slot;
  }
  void push(json* v) {
    EV_CHECK(dom_.size() < kMaxDepth, "tokenizer.json: nesting deeper than ", kMaxDepth);
    dom_.push_back(v);
  }

  TokenizerFile& f_;
  std::vector<json*> dom_;  // the open containers of `rest`; pointers stay valid (see place)
  std::string key_;         // the last key of the innermost open object
  json* model_ = nullptr;
  Mode mode_ = Mode::Dom;
  std::string token_;       // the vocab key awaiting its id
  std::string pair_[2];
  int pair_n_ = 0;
};

}  // namespace

TokenizerFile parse_tokenizer_json(std::string_view text) {
  TokenizerFile f;
  Sax sax(f);
  // Containers are filled one at a time (a child is complete before its parent grows again), so
  // the pointers in the stack never dangle. Strict: trailing content is an error.
  const bool ok = json::sax_parse(text.data(), text.data() + text.size(), &sax);
  EV_CHECK(ok, "tokenizer.json: malformed JSON");
  EV_CHECK(f.rest.is_object(), "tokenizer.json: the document is not an object");
  return f;
}

}  // namespace edgevl::text::hf
