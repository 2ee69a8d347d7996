// Tokenizer benchmarks (issue 3's speed targets): loading a Hugging Face tokenizer.json, and
// one-thread encode throughput (bytes of input text per second) of the fixture tokenizers.
//   build-*/edgevl_microbench --benchmark_filter=Tokenizer
// Texts: "corpus" is the `text` of every case in ../shared/fixtures/tokenizers/<model>/cases.jsonl
// joined by newlines (86 KB of edge cases, multilingual sentences and code); "mixed" adds the
// fixtures' rendered chats and the Markdown of ../shared (specs/, DESIGN.md, STYLE.md): 232 KB.
// Load is wall-clock time (it uses a second thread); encode rates are per CPU second of the one
// encoding thread. Cold: each iteration encodes the text once on a freshly loaded tokenizer (its word cache
// empty; the load is not timed). Warm: the same tokenizer encodes the text again and again.
// The fixture folder is ../shared next to the source tree, or $EDGEVL_SHARED.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <algorithm>
#include <map>
#include <sstream>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/hf_tokenizer.h"

namespace edgevl {
namespace {

namespace fs = std::filesystem;

std::string shared_dir() {
  if (const char* e = std::getenv("EDGEVL_SHARED")) return e;
  return (fs::path(__FILE__).parent_path() / ".." / ".." / "shared").lexically_normal().string();
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The process's temp folder, removed at exit (each tokenizer.json there is tens of MB).
struct TempRoot {
  fs::path path = fs::temp_directory_path() / ("edgevl_tokbench_" + std::to_string(::getpid()));
  ~TempRoot() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// A model folder in a temp dir (tokenizer.json decompressed once per process).
const std::string& model_dir(const std::string& name) {
  static TempRoot root;
  static std::map<std::string, std::string> dirs;
  auto it = dirs.find(name);
  if (it != dirs.end()) return it->second;
  const std::string src = shared_dir() + "/fixtures/tokenizers/" + name;
  const fs::path dir = root.path / name;
  fs::create_directories(dir);
  const std::string cmd = "gzip -dc '" + src + "/tokenizer.json.gz' > '" + (dir / "tokenizer.json").string() + "'";
  EV_CHECK(std::system(cmd.c_str()) == 0, "cannot decompress ", src, "/tokenizer.json.gz");
  fs::copy_file(src + "/tokenizer_config.json", dir / "tokenizer_config.json", fs::copy_options::overwrite_existing);
  return dirs[name] = dir.string();
}

const std::string& corpus() {
  static const std::string text = [] {
    std::string t;
    std::ifstream in(shared_dir() + "/fixtures/tokenizers/gemma3/cases.jsonl");
    std::string line;
    while (std::getline(in, line))
      if (!line.empty()) t += nlohmann::json::parse(line).at("text").get<std::string>() + "\n";
    EV_CHECK(t.size() > 10000, "no fixture corpus under ", shared_dir());
    return t;
  }();
  return text;
}

const std::string& mixed() {
  static const std::string text = [] {
    std::string t = corpus();
    for (const char* m : {"gemma3", "qwen3"}) {
      std::ifstream in(shared_dir() + "/fixtures/tokenizers/" + m + "/chat.jsonl");
      std::string line;
      while (std::getline(in, line)) {
        if (line.empty()) continue;
        const auto j = nlohmann::json::parse(line);
        if (j.contains("rendered")) t += j["rendered"].get<std::string>() + "\n";
      }
    }
    std::vector<fs::path> md;
    for (const auto& e : fs::recursive_directory_iterator(shared_dir()))
      if (e.is_regular_file() && e.path().extension() == ".md" && e.path().string().find("fixtures") == std::string::npos)
        md.push_back(e.path());
    std::sort(md.begin(), md.end());
    for (const fs::path& p : md) t += read_file(p) + "\n";
    return t;
  }();
  return text;
}

void BM_TokenizerLoad(benchmark::State& state, const char* name) {
  const std::string& dir = model_dir(name);
  (void)read_file(fs::path(dir) / "tokenizer.json");  // in the page cache
  for (auto _ : state) {
    auto tok = text::load_hf_tokenizer(dir);
    benchmark::DoNotOptimize(tok.get());
    state.PauseTiming();
    tok.reset();  // freeing is not part of the load
    state.ResumeTiming();
  }
}

void BM_TokenizerEncodeCold(benchmark::State& state, const char* name, const std::string& (*text)()) {
  const std::string& dir = model_dir(name);
  const std::string& t = text();
  size_t ids = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto tok = text::load_hf_tokenizer(dir);
    state.ResumeTiming();
    ids = tok->encode(t, false, true).size();
    state.PauseTiming();
    tok.reset();
    state.ResumeTiming();
  }
  state.counters["MB/s"] = benchmark::Counter((double)t.size() * 1e-6 * (double)state.iterations(), benchmark::Counter::kIsRate);
  state.counters["ids"] = (double)ids;
  state.counters["bytes"] = (double)t.size();
}

void BM_TokenizerEncodeWarm(benchmark::State& state, const char* name, const std::string& (*text)()) {
  const auto tok = text::load_hf_tokenizer(model_dir(name));
  const std::string& t = text();
  tok->encode(t, false, true);
  for (auto _ : state) benchmark::DoNotOptimize(tok->encode(t, false, true).data());
  state.counters["MB/s"] = benchmark::Counter((double)t.size() * 1e-6 * (double)state.iterations(), benchmark::Counter::kIsRate);
}

BENCHMARK_CAPTURE(BM_TokenizerLoad, gemma3, "gemma3")->Unit(benchmark::kMillisecond)->Iterations(10)->UseRealTime();
BENCHMARK_CAPTURE(BM_TokenizerLoad, qwen3, "qwen3")->Unit(benchmark::kMillisecond)->Iterations(10)->UseRealTime();
BENCHMARK_CAPTURE(BM_TokenizerEncodeCold, gemma3_corpus, "gemma3", corpus)->Unit(benchmark::kMillisecond)->Iterations(5);
BENCHMARK_CAPTURE(BM_TokenizerEncodeCold, gemma3_mixed, "gemma3", mixed)->Unit(benchmark::kMillisecond)->Iterations(5);
BENCHMARK_CAPTURE(BM_TokenizerEncodeCold, qwen3_corpus, "qwen3", corpus)->Unit(benchmark::kMillisecond)->Iterations(5);
BENCHMARK_CAPTURE(BM_TokenizerEncodeCold, qwen3_mixed, "qwen3", mixed)->Unit(benchmark::kMillisecond)->Iterations(5);
BENCHMARK_CAPTURE(BM_TokenizerEncodeWarm, gemma3_corpus, "gemma3", corpus)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_TokenizerEncodeWarm, qwen3_corpus, "qwen3", corpus)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_TokenizerEncodeWarm, gemma3_mixed, "gemma3", mixed)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_TokenizerEncodeWarm, qwen3_mixed, "qwen3", mixed)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace edgevl
