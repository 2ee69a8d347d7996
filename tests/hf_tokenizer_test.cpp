// Tests of the tokenizer.json tokenizer (text/hf_tokenizer.h): exact parity with the reference
// ids / ids_special / decoded of every case in ../shared/fixtures/tokenizers/{gemma3,qwen3}, the
// pipeline components on small hand-made tokenizer.json files, malformed files. Load time and
// encode throughput are measured by bench/tokenizer_bench.cpp.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "test_util.h"
#include "tokenizer_cases.h"
#include "text/hf_tokenizer.h"
#include "text/tokenizer.h"

namespace edgevl::text {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Ids = std::vector<int32_t>;

// ---------------------------------------------------------------------------------------------
// Fixture parity

// A model folder in a temp dir: tokenizer.json decompressed, tokenizer_config.json copied.
std::string model_dir(const std::string& name) {
  const std::string src = test::shared_dir() + "/fixtures/tokenizers/" + name;
  const fs::path dir = fs::temp_directory_path() / ("edgevl_hftok_" + std::to_string(::getpid())) / name;
  if (!fs::exists(dir / "tokenizer.json")) {
    fs::create_directories(dir);
    const std::string text = test::gunzip(src + "/tokenizer.json.gz");
    EXPECT_FALSE(text.empty()) << "cannot read " << src << "/tokenizer.json.gz";
    std::ofstream(dir / "tokenizer.json", std::ios::binary) << text;
    fs::copy_file(src + "/tokenizer_config.json", dir / "tokenizer_config.json", fs::copy_options::overwrite_existing);
  }
  return dir.string();
}

using Case = test::TokenizerCase;

std::vector<Case> load_cases(const std::string& name) {
  return test::load_tokenizer_cases(test::shared_dir() + "/fixtures/tokenizers/" + name + "/cases.jsonl");
}

void check_fixture(const std::string& name) {
  const std::string dir = model_dir(name);
  const auto tok = load_hf_tokenizer(dir);
  const std::vector<Case> cases = load_cases(name);
  ASSERT_GT(cases.size(), 100u);
  int ok = 0, special_ok = 0, decoded_ok = 0, shown = 0;
  for (const Case& c : cases) {
    // The reference recognises special-token strings with or without add_special_tokens.
    const Ids got = tok->encode(c.text, false, true);
    const Ids got_special = tok->encode(c.text, true, true);
    const std::string dec = tok->decode(c.ids, false);
    ok += got == c.ids;
    special_ok += got_special == c.ids_special;
    decoded_ok += dec == c.decoded;
    if ((got != c.ids || got_special != c.ids_special || dec != c.decoded) && shown++ < 8) {
      ADD_FAILURE() << name << ": text=" << json(c.text).dump() << "\n  ids want=" << json(c.ids).dump()
                    << "\n  ids got =" << json(got).dump() << "\n  special want=" << json(c.ids_special).dump()
                    << "\n  special got =" << json(got_special).dump() << "\n  decoded want=" << json(c.decoded).dump()
                    << "\n  decoded got =" << json(dec).dump();
    }
  }
  const int n = (int)cases.size();
  std::printf("  %s: ids %d/%d  ids_special %d/%d  decoded %d/%d\n", name.c_str(), ok, n, special_ok, n, decoded_ok, n);
  EXPECT_EQ(ok, n);
  EXPECT_EQ(special_ok, n);
  EXPECT_EQ(decoded_ok, n);
}

TEST(HfFixtureParity, Gemma3) { check_fixture("gemma3"); }
TEST(HfFixtureParity, Qwen3) { check_fixture("qwen3"); }

TEST(HfFixture, SpecialTokensAndPieces) {
  const auto gemma = load_hf_tokenizer(model_dir("gemma3"));
  EXPECT_EQ(gemma->bos_id(), 2);
  EXPECT_EQ(gemma->eos_id(), 106);  // tokenizer_config.json: <end_of_turn>
  EXPECT_TRUE(gemma->is_end_of_generation(1));  // <eos>
  EXPECT_TRUE(gemma->is_special(106));
  EXPECT_EQ(gemma->token_text(106), "<end_of_turn>");
  // Without parse_special the control token is plain text.
  EXPECT_NE(gemma->encode("<end_of_turn>", false, false), Ids{106});
  EXPECT_EQ(gemma->encode("<end_of_turn>", false, true), Ids{106});
  EXPECT_EQ(gemma->decode({2, 9259, 106}, true), "Hello");
  EXPECT_EQ(gemma->token_piece(1902), " world");
  const int32_t byte_e9 = 238 + 0xE9 - 0x00;  // <0xE9> sits at 238 + byte in Gemma 3's vocabulary
  EXPECT_EQ(gemma->token_text(byte_e9), "<0xE9>");
  EXPECT_EQ(gemma->token_piece(byte_e9), "\xE9");
  EXPECT_THROW(gemma->decode({gemma->vocab_size()}, false), Error);

  const auto qwen = load_hf_tokenizer(model_dir("qwen3"));
  EXPECT_EQ(qwen->bos_id(), -1);
  EXPECT_EQ(qwen->eos_id(), 151645);
  EXPECT_TRUE(qwen->is_end_of_generation(151643));
  EXPECT_FALSE(qwen->is_special(151667));  // <think>: an added token, not special
  EXPECT_EQ(qwen->encode("<think>", false, false), Ids{151667});  // non-special: always recognised
  EXPECT_EQ(qwen->encode("a", true, true), qwen->encode("a", false, true));
  // Any bytes encode, and the pieces give them back.
  const std::string bad = "ok \xFF\xC3 end";
  std::string pieces;
  for (int32_t id : qwen->encode(bad, false, false)) pieces += qwen->token_piece(id);
  EXPECT_EQ(pieces, bad);
  EXPECT_TRUE(utf8::is_valid(qwen->decode(qwen->encode(bad, false, false), false)));
}

TEST(HfFixture, ConcurrentEncode) {
  const auto tok = load_hf_tokenizer(model_dir("qwen3"));
  const std::vector<Case> cases = load_cases("qwen3");
  std::vector<int> bad(4);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      for (size_t k = t; k < cases.size(); k += 4) bad[t] += tok->encode(cases[k].text, false, true) != cases[k].ids;
    });
  for (auto& th : ts) th.join();
  for (int b : bad) EXPECT_EQ(b, 0);
}

// ---------------------------------------------------------------------------------------------
// Components on small tokenizer.json files

// A BPE tokenizer.json over the given tokens (ids in order) and merges; the pipeline parts are
// spliced in as JSON.
json small_tokenizer(const std::vector<std::string>& tokens, const std::vector<std::string>& merges) {
  json vocab = json::object();
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;
  return json{{"version", "1.0"},
              {"added_tokens", json::array()},
              {"normalizer", nullptr},
              {"pre_tokenizer", nullptr},
              {"post_processor", nullptr},
              {"decoder", nullptr},
              {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"unk_token", nullptr}}}};
}

std::unique_ptr<Tokenizer> make(const json& j, const json& config = json()) {
  return make_hf_tokenizer(j.dump(), config.is_null() ? "" : config.dump());
}

// Tokens as strings, for readable expectations.
std::vector<std::string> pieces(const Tokenizer& tok, const std::string& text, bool add_special = false) {
  std::vector<std::string> out;
  for (int32_t id : tok.encode(text, add_special, true)) out.push_back(tok.token_text(id));
  return out;
}

using Strs = std::vector<std::string>;

// Words longer than the word cache's limit are cut where no merge joins the two sides; a merge
// across a space marker ("b" + "▁") must keep its place, and the result is the whole word's.
TEST(HfComponents, LongWordsMergeAsAWhole) {
  std::string across, plain;
  for (int k = 0; k < 40; ++k) across += "b\u2581a", plain += "\u2581ab";
  const auto joined = make(small_tokenizer({"a", "b", "\u2581", "b\u2581", "b\u2581a"}, {"b \u2581", "b\u2581 a"}));
  EXPECT_EQ(pieces(*joined, across), Strs(40, "b\u2581a"));
  const auto cut = make(small_tokenizer({"a", "b", "\u2581", "\u2581a", "\u2581ab"}, {"\u2581 a", "\u2581a b"}));
  EXPECT_EQ(pieces(*cut, plain), Strs(40, "\u2581ab"));
  Strs want(40, "\u2581ab");
  want.insert(want.end(), {"b", "a"});
  EXPECT_EQ(pieces(*cut, plain + "ba"), want);
}

TEST(HfComponents, MetaspaceWithByteFallbackRoundTrips) {
  Strs toks = {"<unk>", "<s>", "</s>", "▁", "a", "b", "▁a", "▁ab", "ab"};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    toks.push_back(name);
  }
  json j = small_tokenizer(toks, {"▁ a", "▁a b", "a b"});
  j["model"]["byte_fallback"] = true;
  j["model"]["unk_token"] = "<unk>";
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "first"}, {"split", true}};
  j["decoder"] = {{"type", "Sequence"},
                  {"decoders",
                   {{{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
                    {{"type", "ByteFallback"}},
                    {{"type", "Fuse"}},
                    {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  j["post_processor"] = {{"type", "TemplateProcessing"}, {"single", "<s> $A </s>"}, {"pair", "<s> $A $B </s>"},
                         {"special_tokens", json::object()}};
  j["added_tokens"] = {{{"id", 1}, {"content", "<s>"}, {"special", true}}, {{"id", 2}, {"content", "</s>"}, {"special", true}}};
  const auto tok = make(j);
  EXPECT_EQ(pieces(*tok, "ab ab"), (Strs{"▁ab", "▁ab"}));
  EXPECT_EQ(pieces(*tok, "ab é", true), (Strs{"<s>", "▁ab", "▁", "<0xC3>", "<0xA9>", "</s>"}));
  EXPECT_EQ(tok->decode(tok->encode("ab é", false, true), false), "ab é");
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  // An invalid byte run decodes to one U+FFFD per byte, as tokenizers' ByteFallback.
  EXPECT_EQ(tok->decode({9 + 0xC3, 9 + 0x41}, false), "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(HfComponents, SplitBehaviours) {
  const Strs toks = {"a", "b", "-", "a-", "-b", "--", "a--", "ab", "--b"};
  auto with = [&](const char* behavior, bool invert = false) {
    json j = small_tokenizer(toks, {});
    j["model"]["ignore_merges"] = true;  // whole pieces that are tokens come out as is
    j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "-"}}}, {"behavior", behavior}, {"invert", invert}};
    return make(j);
  };
  EXPECT_EQ(pieces(*with("Isolated"), "a--b"), (Strs{"a", "-", "-", "b"}));
  EXPECT_EQ(pieces(*with("Removed"), "a--b"), (Strs{"a", "b"}));
  EXPECT_EQ(pieces(*with("MergedWithPrevious"), "a--b"), (Strs{"a-", "-", "b"}));
  EXPECT_EQ(pieces(*with("MergedWithNext"), "a--b"), (Strs{"a", "-", "-b"}));
  EXPECT_EQ(pieces(*with("Contiguous"), "a--b"), (Strs{"a", "--", "b"}));
  EXPECT_EQ(pieces(*with("Removed", true), "a--b"), (Strs{"-", "-"}));
}

TEST(HfComponents, DigitsPunctuationWhitespace) {
  const Strs toks = {"1", "2", "12", "a", "b", "ab", "!", "?", "!?", " "};
  json j = small_tokenizer(toks, {"1 2", "a b", "! ?"});
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers",
                         {{{"type", "Whitespace"}},
                          {{"type", "Digits"}, {"individual_digits", true}},
                          {{"type", "Punctuation"}, {"behavior", "Isolated"}}}}};
  EXPECT_EQ(pieces(*make(j), "ab12 !?"), (Strs{"ab", "1", "2", "!", "?"}));
  j["pre_tokenizer"] = {{"type", "Digits"}, {"individual_digits", false}};
  EXPECT_EQ(pieces(*make(j), "ab12"), (Strs{"ab", "12"}));
}

TEST(HfComponents, NormalizersAndNormalizedAddedTokens) {
  const Strs toks = {"a", "b", "e", "é", "x", "_", "f", "ff", "ffi", "i", "̇", "σ", "ς"};
  json j = small_tokenizer(toks, {"f f", "ff i"});
  j["normalizer"] = {{"type", "Sequence"},
                     {"normalizers",
                      {{{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}},
                       {{"type", "NFKC"}},
                       {{"type", "Lowercase"}},
                       {{"type", "Replace"}, {"pattern", {{"Regex", "\\s+"}}}, {"content", "_"}},
                       {{"type", "Prepend"}, {"prepend", "x"}}}}};
  // NFKC folds the ligature; Lowercase maps İ to i + U+0307 and a final Σ to ς.
  EXPECT_EQ(pieces(*make(j), "  \xEF\xAC\x83 E\xCC\x81 İ\tσΣ  "),
            (Strs{"x", "ffi", "_", "é", "_", "i", "̇", "_", "σ", "ς"}));
  // A normalized added token is matched in normalized text, its own content normalized too.
  j["normalizer"] = {{"type", "Lowercase"}};
  j["added_tokens"] = {{{"id", 20}, {"content", "AB"}, {"normalized", true}, {"special", false}}};
  EXPECT_EQ(make(j)->encode("xAb", false, true), (Ids{4, 20}));
  j["added_tokens"][0]["normalized"] = false;
  EXPECT_EQ(make(j)->encode("xAb", false, true), (Ids{4, 0, 1}));
  json d = small_tokenizer({"e", "\xCC\x81"}, {});
  d["normalizer"] = {{"type", "NFD"}};
  EXPECT_EQ(pieces(*make(d), "é"), (Strs{"e", "\xCC\x81"}));
}

TEST(HfComponents, AddedTokenFlags) {
  const Strs toks = {"a", " ", "b"};
  json j = small_tokenizer(toks, {});
  j["added_tokens"] = {{{"id", 3}, {"content", "<m>"}, {"lstrip", true}, {"rstrip", true}, {"special", true}},
                       {{"id", 4}, {"content", "ab"}, {"single_word", true}, {"normalized", false}},
                       {{"id", 5}, {"content", "<m>x"}, {"special", true}}};
  const auto tok = make(j);
  EXPECT_EQ(tok->encode("a  <m>  b", false, true), (Ids{0, 3, 2}));   // spaces eaten on both sides
  EXPECT_EQ(tok->encode("a <m>x b", false, true), (Ids{0, 1, 5, 1, 2}));  // longest match wins
  EXPECT_EQ(tok->encode("ab a ab", false, true), (Ids{4, 1, 0, 1, 4}));
  EXPECT_EQ(tok->encode("aab", false, true), (Ids{0, 0, 2}));  // not a single word
  EXPECT_EQ(tok->encode("<m>", false, false), (Ids{}));        // special not parsed; no vocab for it
  EXPECT_TRUE(tok->is_special(3));
  EXPECT_EQ(tok->decode({0, 3, 2}, true), "a b");  // no decoder: tokens joined by spaces
}

TEST(HfComponents, ByteLevelWithPrefixSpaceAndRegex) {
  // The 256-character byte alphabet plus two merges.
  Strs toks;
  const char* printable[] = {"Ġ", "h", "i"};
  (void)printable;
  for (uint32_t b = 0, next = 256; b < 256; ++b) {
    const bool p = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    std::string s;
    utf8::append_codepoint(s, p ? b : next++);
    toks.push_back(s);
  }
  toks.push_back("Ġh");
  toks.push_back("Ġhi");
  json j = small_tokenizer(toks, {"Ġ h", "Ġh i"});
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  j["decoder"] = {{"type", "ByteLevel"}};
  j["post_processor"] = {{"type", "ByteLevel"}};
  const auto tok = make(j);
  EXPECT_EQ(pieces(*tok, "hi hi"), (Strs{"Ġhi", "Ġhi"}));
  EXPECT_EQ(tok->decode(tok->encode("hi hi", true, true), false), " hi hi");
  EXPECT_EQ(tok->token_piece(tok->encode("\xC3", false, true)[1]), "\xC3");
}

TEST(HfComponents, ConfigRebuildsTemplateForLlamaClasses) {
  json j = small_tokenizer({"<s>", "</s>", "a"}, {});
  j["added_tokens"] = {{{"id", 0}, {"content", "<s>"}, {"special", true}}, {{"id", 1}, {"content", "</s>"}, {"special", true}}};
  const json config = {{"tokenizer_class", "LlamaTokenizerFast"}, {"add_bos_token", true}, {"add_eos_token", true},
                       {"bos_token", "<s>"}, {"eos_token", {{"content", "</s>"}}}};
  EXPECT_EQ(make(j, config)->encode("a", true, true), (Ids{0, 2, 1}));
  EXPECT_EQ(make(j)->encode("a", true, true), (Ids{2}));  // no post-processor, no config
}

// ---------------------------------------------------------------------------------------------
// Malformed files

void expect_error(const std::string& text, const std::string& needle) {
  try {
    make_hf_tokenizer(text);
    ADD_FAILURE() << "no error; wanted one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(HfMalformed, Rejected) {
  const json good = small_tokenizer({"a", "b", "ab"}, {"a b"});
  EXPECT_NO_THROW(make(good));
  auto with = [&](const char* key, const json& v) {
    json j = good;
    j[key] = v;
    return j.dump();
  };
  expect_error(with("normalizer", {{"type", "Precompiled"}}), "unsupported normalizer type 'Precompiled'");
  expect_error(with("pre_tokenizer", {{"type", "UnicodeScripts"}}), "unsupported pre_tokenizer type 'UnicodeScripts'");
  expect_error(with("decoder", {{"type", "CTC"}}), "unsupported decoder type 'CTC'");
  expect_error(with("post_processor", {{"type", "Frobnicate"}}), "unsupported post_processor type 'Frobnicate'");
  expect_error(with("pre_tokenizer", {{"type", "Split"}, {"pattern", {{"Regex", "(["}}}, {"behavior", "Isolated"}}),
               "does not compile");
  expect_error(with("pre_tokenizer", {{"type", "Split"}, {"pattern", {{"String", "x"}}}, {"behavior", "Sideways"}}),
               "unsupported split behavior 'Sideways'");
  expect_error(with("pre_tokenizer", {{"type", "Metaspace"}, {"prepend_scheme", "sometimes"}}), "prepend_scheme");
  expect_error(with("normalizer", {{"no_type", 1}}), "has no 'type'");
  expect_error(with("added_tokens", {{{"id", -1}, {"content", "x"}}}), "invalid id");
  expect_error(with("added_tokens", {{{"id", 3}}}), "has no content");
  expect_error(with("post_processor", {{"type", "TemplateProcessing"}, {"single", "<nope> $A"}}), "unknown special token '<nope>'");

  json j = good;
  j.erase("model");
  expect_error(j.dump(), "no model");
  j = good;
  j["model"]["type"] = "Unigram";
  j["model"]["vocab"] = json::array({json::array({"a", -1.0})});
  expect_error(j.dump(), "unsupported model type 'Unigram'");
  j = good;
  j["model"]["type"] = "WordPiece";
  expect_error(j.dump(), "unsupported model type 'WordPiece'");
  j = good;
  j["model"].erase("vocab");
  expect_error(j.dump(), "no vocab");
  j = good;
  j["model"]["merges"] = {"a c"};
  expect_error(j.dump(), "unknown token 'c'");
  j = good;
  j["model"]["merges"] = {"a b c"};
  expect_error(j.dump(), "is not 'left right'");
  j = good;
  j["model"]["merges"] = {{"a"}};
  expect_error(j.dump(), "is not a pair");
  j = good;
  j["model"]["merges"] = json::array({json::array({"b", "a"})});
  expect_error(j.dump(), "not in the vocabulary");
  j = good;
  j["model"]["merges"] = json::object({{"a", "b"}});
  expect_error(j.dump(), "model.merges is an object");
  j = good;
  j["model"]["merges"] = {{{"x", 1}}};
  expect_error(j.dump(), "model.merges[0]");
  j = good;
  j["model"]["vocab"]["c"] = "three";
  expect_error(j.dump(), "model.vocab");
  j = good;
  j["model"]["vocab"]["c"] = 0;
  expect_error(j.dump(), "given twice");
  j = good;
  j["model"]["vocab"]["c"] = 1u << 31;
  expect_error(j.dump(), "invalid id");
  j = good;
  j["model"]["dropout"] = 0.1;
  expect_error(j.dump(), "dropout");
  j = good;
  j["model"]["unk_token"] = "<unk>";
  expect_error(j.dump(), "unk_token '<unk>'");

  expect_error("", "tokenizer.json");
  expect_error("[1, 2]", "not an object");
  expect_error(good.dump().substr(0, 40), "tokenizer.json");
  expect_error(good.dump() + "x", "tokenizer.json");
  expect_error(std::string(10000, '[') + std::string(10000, ']'), "nesting");
  EXPECT_THROW(make_hf_tokenizer(good.dump(), "{not json"), Error);
  EXPECT_THROW(load_hf_tokenizer("/nonexistent/model"), Error);
}

}  // namespace
}  // namespace edgevl::text
