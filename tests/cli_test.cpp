// The edgevl command end to end: dump against the HF goldens, init/quantize/generate round trips,
// and bad input ending in a one-line error with exit status 1 (never a crash).
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/mmap.h"
#include "io/safetensors.h"
#include "test_util.h"
#include "tiny_gemma4.h"

namespace edgevl {
namespace {

namespace fs = std::filesystem;

struct RunResult {
  int exit_code = -1;   // -1: killed by a signal
  std::string out, err;
};

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("edgevl_cli_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  RunResult run(const std::string& args, const std::string& stdin_path = "/dev/null") {
    const std::string o = (dir_ / "stdout").string(), e = (dir_ / "stderr").string();
    const std::string cmd = std::string(EDGEVL_BINARY) + " " + args + " >" + o + " 2>" + e + " <" + stdin_path;
    int st = std::system(cmd.c_str());
    RunResult r;
    r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.out = slurp(o);
    r.err = slurp(e);
    return r;
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  void write(const std::string& name, const std::string& bytes) {
    std::ofstream(path(name), std::ios::binary) << bytes;
  }

  fs::path dir_;
};

using test::as_f32;

// The golden run's suppressed ids (multimodal placeholders), as --suppress-tokens wants them.
std::string suppress_option(const std::string& golden_dir) {
  const auto j = nlohmann::json::parse(read_text_file(golden_dir + "/golden.json"));
  const auto& gen = j.at("generation");
  if (!gen.contains("suppress_tokens")) return "";
  std::string ids;
  for (const auto& v : gen["suppress_tokens"]) ids += (ids.empty() ? "" : ",") + std::to_string(v.get<int>());
  return ids.empty() ? "" : " --suppress-tokens " + ids;
}

TEST_F(CliTest, DumpMatchesHfGoldens) {
  for (std::string c : {"llama", "gemma3_text", "granitemoehybrid_micro", "gemma4_text", "gemma4"}) {
    const std::string g = test::golden_hf(c) + "/golden.safetensors";
    auto r = run("dump -m " + test::golden_hf(c) + " --inputs " + g + " --out " + path(c + ".safetensors") +
                 " --generate 16" + suppress_option(test::golden_hf(c)));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto ours = safetensors::File::open(path(c + ".safetensors"));
    auto ref = safetensors::File::open(g);
    int compared = 0;
    for (const TensorRef& t : ref->tensors()) {
      // Every activation the goldens hold: LM hidden states and logits, tower outputs (vision.*,
      // audio.*, *_hidden_states), step logits; masks are booleans and checked by the model tests.
      const bool act = t.dtype == DType::F32 && t.name.rfind("inputs.", 0) != 0 && t.name.rfind("gen.inputs.", 0) != 0;
      if (!act && t.name != "gen.new_tokens") continue;
      const TensorRef* o = ours->find(t.name);
      ASSERT_NE(o, nullptr) << c << ": dump wrote no " << t.name;
      EXPECT_EQ(o->shape, t.shape) << c << " " << t.name;
      if (t.name == "gen.new_tokens") EXPECT_EQ(as_f32(*o), as_f32(t)) << c;
      else EXPECT_LE(test::rel_error(as_f32(*o), as_f32(t)), 1e-4) << c << " " << t.name;
      ++compared;
    }
    EXPECT_GE(compared, 5) << c;
  }
}

TEST_F(CliTest, MultimodalRunChatPreprocess) {
  const fs::path model = fs::path(path("tiny_gemma4"));
  test::make_tiny_gemma4(model);
  const std::string media = test::shared_dir() + "/golden/hf/processors/";
  const std::string image = media + "gemma4_image/media/doc_page.png", audio = media + "gemma4_audio/media/speech_b.wav";
  auto r = run("run -m " + model.string() + " --image " + image + " --audio " + audio +
               " -n 6 --temp 0 --stats \"Describe both.\"");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("images: 1 ("), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("audio: 1 clips (49 soft tokens)"), std::string::npos) << r.err;
  // Two placeholders but one image: a clear error, not a crash.
  auto bad = run("run -m " + model.string() + " --image " + path("missing.png") + " hi");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("missing.png"), std::string::npos) << bad.err;
  auto bad_budget = run("run -m " + model.string() + " --image " + image + " --image-tokens 100 hi");
  EXPECT_EQ(bad_budget.exit_code, 1);
  EXPECT_NE(bad_budget.err.find("70, 140, 280, 560, 1120"), std::string::npos) << bad_budget.err;

  // chat: an image attached to the first turn, a second text turn reusing the cache.
  write("chat.txt", "/image " + image + "\nWhat is this?\n/image " + path("nope.png") + "\nAnd now?\n/quit\n");
  auto chat = run("chat -m " + model.string() + " -n 4 --temp 0 --stats", path("chat.txt"));
  ASSERT_EQ(chat.exit_code, 0) << chat.err;
  EXPECT_NE(chat.err.find("images: 1 ("), std::string::npos) << chat.err;
  EXPECT_NE(chat.err.find("nope.png: cannot open"), std::string::npos) << chat.err;

  // preprocess writes the processor outputs under the reference names.
  auto pre = run("preprocess -m " + model.string() + " --image " + image + " --audio " + audio + " --out " +
                 path("pre.safetensors"));
  ASSERT_EQ(pre.exit_code, 0) << pre.err;
  auto f = safetensors::File::open(path("pre.safetensors"));
  for (const char* n : {"pixel_values", "image_position_ids", "num_soft_tokens_per_image", "input_features",
                        "input_features_mask"})
    EXPECT_NE(f->find(n), nullptr) << n;
  EXPECT_EQ(f->find("pixel_values")->shape, (std::vector<int64_t>{1, 280, 48}));
  EXPECT_EQ(f->find("input_features")->shape[2], 32);
}

TEST_F(CliTest, InitQuantizeGenerateBench) {
  const std::string cfg = test::golden_hf("llama256") + "/config.json";
  ASSERT_EQ(run("init " + cfg + " -o " + path("m.gguf") + " --type F16").exit_code, 0);
  ASSERT_EQ(run("quantize " + path("m.gguf") + " " + path("q.gguf") + " Q4_K").exit_code, 0);
  auto info = run("info " + path("q.gguf"));
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("q4_k"), std::string::npos) << info.out;
  auto gen = run("generate -m " + path("q.gguf") + " -p hello -n 8 --temp 0 --stats");
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  EXPECT_NE(gen.err.find("new tokens"), std::string::npos);
  auto bench = run("bench -m " + path("q.gguf") + " -p 16 -n 8 -r 1 --json");
  ASSERT_EQ(bench.exit_code, 0) << bench.err;
  for (const char* k : {"prefill_tok_s", "decode_tok_s", "load_ms", "peak_rss_mb"})
    EXPECT_NE(bench.out.find(k), std::string::npos) << k << " missing in " << bench.out;
  // An HF folder from init loads and generates too.
  ASSERT_EQ(run("init " + cfg + " -o " + path("hf")).exit_code, 0);
  EXPECT_EQ(run("generate -m " + path("hf") + " --ids 1,2,3 -n 4 --temp 0").exit_code, 0);
}

// Gemma 4 from init: positional output, --gguf and --dtype spellings; the file generates and benches.
TEST_F(CliTest, InitGemma4GgufGeneratesAndBenches) {
  const std::string cfg = test::golden_hf("gemma4_text") + "/config.json";
  auto init = run("init " + cfg + " " + path("g4.gguf") + " --gguf --dtype Q8_0");
  ASSERT_EQ(init.exit_code, 0) << init.err;
  auto info = run("info " + path("g4.gguf"));
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("gemma4"), std::string::npos) << info.out;
  auto gen = run("generate -m " + path("g4.gguf") + " -p hello -n 12 --temp 0");
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  auto bench = run("bench -m " + path("g4.gguf") + " -p 16 -n 8 -r 1 --json");
  ASSERT_EQ(bench.exit_code, 0) << bench.err;
  EXPECT_NE(bench.out.find("decode_tok_s"), std::string::npos) << bench.out;
}

TEST_F(CliTest, PerplexityOnGgufVocabulary) {
  const std::string cfg = test::golden_hf("llama256") + "/config.json";
  ASSERT_EQ(run("init " + cfg + " -o " + path("m.gguf")).exit_code, 0);
  std::string text;
  for (int i = 0; i < 40; ++i) text += "The quick brown fox jumps over the lazy dog. ";
  write("t.txt", text);
  auto r = run("perplexity -m " + path("m.gguf") + " -f " + path("t.txt") + " -c 64");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("perplexity:"), std::string::npos) << r.out;
}

// Batch chat-template rendering over the fixture conversations: never a different string than the
// reference; an error wherever the reference raised. (Lines where Python Jinja2 raises but the JS
// reference renders are checked with their justification in jinja_test.)
TEST_F(CliTest, TemplateJsonlMatchesFixtures) {
  for (std::string fam : {"gemma3", "qwen3"}) {
    const std::string fx = test::shared_dir() + "/fixtures/tokenizers/" + fam;
    fs::create_directories(path(fam));
    fs::copy_file(fx + "/tokenizer_config.json", path(fam + "/tokenizer_config.json"));
    auto r = run("template " + path(fam) + " --jsonl " + fx + "/chat.jsonl --out " + path(fam + ".jsonl"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::ifstream ref(fx + "/chat.jsonl"), ours(path(fam + ".jsonl"));
    std::string a, b;
    int lines = 0, exact = 0, reference_rendered = 0;
    while (std::getline(ref, a)) {
      ASSERT_TRUE(std::getline(ours, b)) << fam << ": output has fewer lines";
      auto ja = nlohmann::json::parse(a), jb = nlohmann::json::parse(b);
      ++lines;
      if (ja.contains("error")) {
        EXPECT_TRUE(jb.contains("error")) << fam << " line " << lines << ": reference raised, we rendered";
      } else if (++reference_rendered, jb.contains("rendered")) {
        EXPECT_EQ(jb["rendered"], ja["rendered"]) << fam << " line " << lines;
        exact += jb["rendered"] == ja["rendered"];
      }
    }
    EXPECT_EQ(lines, 80) << fam;
    if (fam == "gemma3") {
      EXPECT_EQ(exact, reference_rendered) << fam << ": every reference rendering reproduced";
    }
  }
}

// tokenize --jsonl over the fixture corpus reproduces the reference ids, ids_special and decoded.
TEST_F(CliTest, TokenizeJsonlMatchesFixtures) {
  for (std::string fam : {"gemma3", "qwen3"}) {
    const std::string fx = test::shared_dir() + "/fixtures/tokenizers/" + fam;
    fs::create_directories(path(fam));
    fs::copy_file(fx + "/tokenizer_config.json", path(fam + "/tokenizer_config.json"));
    ASSERT_EQ(std::system(("gzip -dc " + fx + "/tokenizer.json.gz > " + path(fam + "/tokenizer.json")).c_str()), 0);
    auto r = run("tokenize " + path(fam) + " --jsonl " + fx + "/cases.jsonl --out " + path(fam + ".jsonl"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::ifstream ref(fx + "/cases.jsonl"), ours(path(fam + ".jsonl"));
    std::string a, b;
    int lines = 0, same = 0;
    while (std::getline(ref, a)) {
      ASSERT_TRUE(std::getline(ours, b)) << fam << ": output has fewer lines";
      auto ja = nlohmann::json::parse(a), jb = nlohmann::json::parse(b);
      ++lines;
      const bool ok = ja["ids"] == jb["ids"] && ja["ids_special"] == jb["ids_special"] && ja["decoded"] == jb["decoded"];
      EXPECT_TRUE(ok) << fam << " line " << lines << ": " << ja["text"];
      same += ok;
    }
    EXPECT_GT(lines, 1000) << fam;
    EXPECT_EQ(same, lines) << fam;
  }
}

TEST_F(CliTest, HelpOnEveryCommand) {
  for (std::string c : {"run", "chat", "preprocess", "generate", "perplexity", "bench", "info", "quantize", "init",
                        "dump", "template", "tokenize", "detokenize"}) {
    auto r = run(c + " --help");
    EXPECT_EQ(r.exit_code, 0) << c;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << c << ": " << r.out;
  }
}

// Each bad input must give exit status 1 (not a signal) and a single "edgevl: error:" line.
TEST_F(CliTest, BadInputGivesOneLineError) {
  const std::string good = test::golden_llamacpp("llama") + "/llama-Q8_0.gguf";
  const std::string bytes = slurp(good);
  ASSERT_GT(bytes.size(), 1000u);
  write("truncated.gguf", bytes.substr(0, bytes.size() / 2));
  write("header_only.gguf", bytes.substr(0, 10));
  std::string magic = bytes;
  magic[0] = 'X';
  write("magic.gguf", magic);
  write("empty.gguf", "");
  write("bad.safetensors", std::string("\x10\0\0\0\0\0\0\0{not json at all", 24));
  // An HF folder whose config names an unknown architecture.
  fs::create_directories(path("unknown"));
  write("unknown/config.json", R"({"model_type": "no_such_model", "architectures": ["NoSuch"]})");
  fs::copy_file(test::golden_hf("llama") + "/model.safetensors", path("unknown/model.safetensors"));
  // A folder whose weights do not match the config's shapes.
  fs::create_directories(path("shape"));
  std::string cfg = slurp(test::golden_hf("llama") + "/config.json");
  cfg.replace(cfg.find("\"hidden_size\": 64"), 17, "\"hidden_size\": 96");
  write("shape/config.json", cfg);
  fs::copy_file(test::golden_hf("llama") + "/model.safetensors", path("shape/model.safetensors"));

  const std::vector<std::string> cases = {
      "info " + path("truncated.gguf"),
      "info " + path("header_only.gguf"),
      "info " + path("magic.gguf"),
      "info " + path("empty.gguf"),
      "info " + path("bad.safetensors"),
      "info " + path("missing.gguf"),
      "generate -m " + path("truncated.gguf") + " -p hi",
      "generate -m " + path("unknown") + " --ids 1",
      "generate -m " + path("shape") + " --ids 1",
      "generate -m " + good + " --ids 99999",
      "quantize " + good + " " + path("o.gguf") + " Q9_9",
      "dump -m " + good + " --inputs " + path("bad.safetensors") + " --out " + path("o.safetensors"),
      "tokenize " + good + " \"$(printf '\\377\\376abc')\"",  // invalid UTF-8
      "template " + good + " --messages " + path("bad.safetensors"),
  };
  for (const auto& c : cases) {
    auto r = run(c);
    EXPECT_EQ(r.exit_code, 1) << c << "\n" << r.err;
    EXPECT_EQ(r.err.rfind("edgevl: error: ", 0), 0u) << c << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << c << "\n" << r.err;
  }
}

}  // namespace
}  // namespace edgevl
