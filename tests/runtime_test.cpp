// Runtime logic without real weights: sampling rules, and generation's streaming / stop
// conditions driven by a scripted fake model over a real GGUF vocabulary.
#include <map>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "runtime/session.h"
#include "text/gguf_tokenizer.h"
#include "test_util.h"

namespace edgevl {
namespace {

TEST(Sampler, GreedyIsArgmaxWithSuppression) {
  std::vector<float> l = {0.1f, 3.0f, 2.0f, 3.0f};
  SamplingOptions o;
  o.temperature = 0;
  Sampler s(o);
  EXPECT_EQ(s.sample(l, {}), 1);  // first of equal maxima, as torch.argmax
  o.suppress = {1, 3};
  Sampler s2(o);
  EXPECT_EQ(s2.sample(l, {}), 2);
}

TEST(Sampler, TopKOneIsGreedyAndSeedsRepeat) {
  std::vector<float> l(100);
  for (int i = 0; i < 100; ++i) l[i] = (float)((i * 37) % 100) / 10.0f;
  SamplingOptions o;
  o.temperature = 1.0f;
  o.top_k = 1;
  Sampler s(o);
  EXPECT_EQ(s.sample(l, {}), argmax(l));
  o.top_k = 0;
  o.top_p = 1.0f;
  o.min_p = 0;
  Sampler a(o), b(o);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(a.sample(l, {}), b.sample(l, {}));
}

TEST(Sampler, MinPAndTopPRestrictTheSupport) {
  // Probabilities ~ {0.5, 0.3, 0.2, tiny...}: min_p 0.5 keeps ids whose p >= 0.25 -> {0, 1}.
  std::vector<float> l = {std::log(0.5f), std::log(0.3f), std::log(0.2f), -30.0f, -30.0f};
  SamplingOptions o;
  o.temperature = 1.0f;
  o.top_k = 0;
  o.top_p = 1.0f;
  o.min_p = 0.5f;
  Sampler s(o);
  std::map<int, int> seen;
  for (int i = 0; i < 2000; ++i) seen[s.sample(l, {})]++;
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_GT(seen[0], seen[1]);
  o.min_p = 0;
  o.top_p = 0.6f;  // 0.5 + 0.3 reaches 0.6 -> {0, 1}
  Sampler t(o);
  seen.clear();
  for (int i = 0; i < 2000; ++i) seen[t.sample(l, {})]++;
  EXPECT_EQ(seen.size(), 2u);
}

TEST(Sampler, RepetitionPenaltyDemotesRecentTokens) {
  std::vector<float> l = {2.0f, 1.9f, -1.0f};
  SamplingOptions o;
  o.temperature = 0;
  o.repeat_penalty = 1.5f;
  Sampler s(o);
  std::vector<int32_t> hist = {0};
  EXPECT_EQ(s.sample(l, hist), 1);  // 2.0 / 1.5 < 1.9
}

// Emits a scripted token sequence: logits peak at script[step].
class ScriptedModel : public CausalLM {
 public:
  ScriptedModel(std::vector<int32_t> script, int64_t vocab) : script_(std::move(script)) {
    info_.vocab_size = vocab;
    info_.n_layers = 1;
  }
  nn::KvCache new_cache(int64_t max_positions) const override { return nn::KvCache(1, 1, max_positions); }
  void forward(Context&, nn::KvCache& cache, const ForwardRequest& req, Tensor& logits) override {
    const int64_t T = (int64_t)req.tokens.size();
    cache.reserve_more(T);
    cache.commit(T);
    logits.resize({1, info_.vocab_size});
    std::fill(logits.vec().begin(), logits.vec().end(), 0.0f);
    logits.data()[script_[std::min(step_, script_.size() - 1)]] = 10.0f;
    ++step_;
  }

 private:
  std::vector<int32_t> script_;
  size_t step_ = 0;
};

class GenerateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    gguf_ = gguf::File::open(test::golden_llamacpp("llama") + "/llama-F32.gguf");
    engine_.ctx = std::make_unique<Context>(1);
    engine_.tokenizer = text::load_gguf_tokenizer(*gguf_);
  }
  // Token ids that spell `s` through byte tokens (<0xXX>, present in every byte-fallback vocab).
  std::vector<int32_t> bytes_of(const std::string& s) {
    std::vector<int32_t> ids;
    for (unsigned char c : s) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", c);
      int32_t id = -1;
      for (int32_t i = 0; i < engine_.tokenizer->vocab_size(); ++i)
        if (engine_.tokenizer->token_text(i) == name) id = i;
      EXPECT_GE(id, 0) << name;
      ids.push_back(id);
    }
    return ids;
  }
  std::unique_ptr<gguf::File> gguf_;
  Engine engine_;
};

TEST_F(GenerateTest, StopStringIsNeverStreamed) {
  auto script = bytes_of("Hello, END world");
  engine_.model = std::make_unique<ScriptedModel>(script, engine_.tokenizer->vocab_size());
  Session s(engine_, 64);
  GenerateOptions o;
  o.sampling.temperature = 0;
  o.max_new_tokens = 40;
  o.stop_strings = {"END"};
  std::string streamed;
  GenerateResult r = s.generate({1}, o, [&](const std::string& t) {
    streamed += t;
    return true;
  });
  EXPECT_EQ(r.stop_reason, "stop_string");
  EXPECT_EQ(r.text, "Hello, ");
  EXPECT_EQ(streamed, "Hello, ");
}

TEST_F(GenerateTest, MultiByteCharactersStreamWhole) {
  auto script = bytes_of("h\xC3\xA9llo \xE2\x82\xAC");  // héllo €
  script.push_back(engine_.tokenizer->eos_id());
  engine_.model = std::make_unique<ScriptedModel>(script, engine_.tokenizer->vocab_size());
  Session s(engine_, 64);
  GenerateOptions o;
  o.sampling.temperature = 0;
  std::vector<std::string> chunks;
  GenerateResult r = s.generate({1}, o, [&](const std::string& t) {
    chunks.push_back(t);
    return true;
  });
  EXPECT_EQ(r.stop_reason, "eos");
  EXPECT_EQ(r.text, "h\xC3\xA9llo \xE2\x82\xAC");
  for (const auto& c : chunks) EXPECT_TRUE(text::utf8::is_valid(c)) << c;
}

TEST_F(GenerateTest, LengthLimit) {
  engine_.model = std::make_unique<ScriptedModel>(bytes_of("abcdefgh"), engine_.tokenizer->vocab_size());
  Session s(engine_, 64);
  GenerateOptions o;
  o.sampling.temperature = 0;
  o.max_new_tokens = 3;
  GenerateResult r = s.generate({1}, o);
  EXPECT_EQ(r.stop_reason, "length");
  EXPECT_EQ(r.text, "abc");
  EXPECT_EQ(r.tokens.size(), 3u);
}

}  // namespace
}  // namespace edgevl
