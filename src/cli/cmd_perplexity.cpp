// edgevl perplexity: exp(mean negative log-likelihood) of a text file, computed like
// llama-perplexity: the text is cut into windows of --ctx tokens (each starting with BOS when the
// model uses one), and only the second half of each window is scored, so every scored token sees
// at least ctx/2 tokens of context.
#include <cmath>
#include <cstdio>
#include <vector>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "core/mmap.h"
#include "runtime/session.h"

namespace edgevl::cli {

void add_perplexity(CLI::App& app) {
  struct Opts {
    std::string model, file;
    int threads = 0, ctx = 512, chunks = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("perplexity", "Perplexity of a model over a text file");
  cmd->add_option("-m,--model", o->model, "Model folder or .gguf file")->required();
  cmd->add_option("-f,--file", o->file, "UTF-8 text file")->required()->check(CLI::ExistingFile);
  cmd->add_option("-c,--ctx", o->ctx, "Window length in tokens")->capture_default_str()->check(CLI::Range(8, 1 << 20));
  cmd->add_option("--chunks", o->chunks, "Evaluate at most this many windows (0 = all)");
  add_thread_option(cmd, o->threads);
  cmd->callback([o] {
    Engine engine = Engine::load(o->model, o->threads);
    const text::Tokenizer& tok = engine.require_tokenizer();
    // As llama-perplexity: the whole text tokenized with BOS, each window starting with BOS.
    std::vector<int32_t> ids = tok.encode(read_text_file(o->file), true, false);
    const int32_t bos = tok.bos_id();
    const int64_t n_ctx = o->ctx;
    int64_t n_chunks = (int64_t)ids.size() / n_ctx;
    EV_CHECK(n_chunks > 0, o->file, ": ", ids.size(), " tokens, need at least ", n_ctx, " (lower --ctx)");
    if (o->chunks > 0) n_chunks = std::min<int64_t>(n_chunks, o->chunks);
    const int64_t first = n_ctx / 2;
    double nll = 0;
    int64_t count = 0;
    std::fprintf(stderr, "%zu tokens, %lld windows of %lld\n", ids.size(), (long long)n_chunks, (long long)n_ctx);
    for (int64_t c = 0; c < n_chunks; ++c) {
      std::vector<int32_t> win(ids.begin() + c * n_ctx, ids.begin() + (c + 1) * n_ctx);
      if (bos >= 0) win[0] = bos;
      nn::KvCache cache = engine.model->new_cache(n_ctx);
      ForwardRequest req;
      req.tokens = win;
      req.all_logits = true;
      Tensor logits;
      engine.model->forward(*engine.ctx, cache, req, logits);
      const int64_t V = logits.dim(1);
      for (int64_t t = first; t + 1 < n_ctx; ++t) {
        const float* row = logits.row(t);
        float mx = row[0];
        for (int64_t v = 1; v < V; ++v) mx = std::max(mx, row[v]);
        double sum = 0;
        for (int64_t v = 0; v < V; ++v) sum += std::exp((double)row[v] - mx);
        nll += std::log(sum) + mx - row[ids[c * n_ctx + t + 1]];
        ++count;
      }
      std::printf("[%lld] %.4f\n", (long long)(c + 1), std::exp(nll / count));
      std::fflush(stdout);
    }
    std::printf("perplexity: %.4f over %lld tokens\n", std::exp(nll / count), (long long)count);
  });
}

}  // namespace edgevl::cli
