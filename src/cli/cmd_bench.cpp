// edgevl bench: prefill and decode speed, load time and peak memory, like llama-bench's
// pp/tg tests (random token ids, an empty cache per repetition, median reported).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "runtime/session.h"

namespace edgevl::cli {

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
}  // namespace

void add_bench(CLI::App& app) {
  struct Opts {
    std::string model, isa, mmproj;
    int threads = 0, p = 512, n = 128, r = 3;
    int image_size = 0, audio_seconds = 0;  // media encode tests (0 = skip)
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("bench", "Measure prefill and decode tokens/s, load time and peak RSS");
  cmd->add_option("-m,--model", o->model, "Model folder or .gguf file")->required();
  cmd->add_option("-p,--prompt-tokens", o->p, "Prefill test: tokens in one batch (0 = skip)")->capture_default_str()->check(CLI::Range(0, 1 << 20));
  cmd->add_option("-n,--gen-tokens", o->n, "Decode test: tokens generated one by one (0 = skip)")->capture_default_str()->check(CLI::Range(0, 1 << 20));
  cmd->add_option("-r,--repetitions", o->r, "Repetitions; the median is reported")->capture_default_str()->check(CLI::Range(1, 1000));
  add_thread_option(cmd, o->threads);
  cmd->add_option("--isa", o->isa, "Kernel set: auto, scalar, avx2, avx512, neon (default: EDGEVL_ISA or auto)");
  cmd->add_flag("--json", o->json, "Print one JSON object instead of a table");
  cmd->add_option("--mmproj", o->mmproj, "llama.cpp mmproj .gguf with the vision and/or audio tower, for a text-only .gguf model");
  cmd->add_option("--image-size", o->image_size,
                  "Vision test: encode an N x N image (N a multiple of patch x pooling, e.g. 768 -> 256 soft tokens)")
      ->check(CLI::Range(0, 1 << 14));
  cmd->add_option("--audio-seconds", o->audio_seconds, "Audio test: encode a clip this long (e.g. 30)")
      ->check(CLI::Range(0, 3600));
  cmd->callback([o] {
    Engine engine = Engine::load(o->model, o->threads, o->isa);
    if (!o->mmproj.empty()) engine.model->attach_mmproj(o->mmproj);
    const ModelInfo& mi = engine.model->info();
    std::vector<double> vision_ms, audio_ms;
    int64_t image_tokens = 0, audio_tokens = 0;
    if (o->image_size > 0) {
      EV_CHECK(engine.model->has_vision(), o->model, ": no vision tower (give --mmproj for a text-only GGUF)");
      // The processor's output for a square image at the default budget: a (N/16)² patch grid of
      // Gemma 4's patch size, padded with (-1, -1) patches to 280 · 9 (random pixels: speed only).
      const int64_t g = o->image_size / 16, real = g * g, total = std::max<int64_t>(real, 280 * 9);
      EV_CHECK(g % 3 == 0 && g > 0, "--image-size ", o->image_size, " is not a multiple of 48");
      std::vector<float> px(total * 768, 0.0f);
      std::vector<int64_t> pos(total * 2, -1);
      std::mt19937 prng(7);
      std::uniform_real_distribution<float> u(0.0f, 1.0f);
      for (int64_t t = 0; t < real; ++t) {
        for (int64_t i = 0; i < 768; ++i) px[t * 768 + i] = u(prng);
        pos[2 * t] = t % g;
        pos[2 * t + 1] = t / g;
      }
      for (int rep = 0; rep < o->r; ++rep) {
        Tensor out;
        auto t0 = std::chrono::steady_clock::now();
        image_tokens = engine.model->encode_image(*engine.ctx, px.data(), pos.data(), total, out);
        vision_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
    }
    if (o->audio_seconds > 0) {
      EV_CHECK(engine.model->has_audio(), o->model, ": no audio tower");
      // Log-mel features of the extractor's shape: 100 frames a second, the tower's bins.
      const int64_t frames = (int64_t)o->audio_seconds * 100, bins = engine.model->audio_mel_bins();
      std::vector<float> feats(frames * bins);
      std::mt19937 arng(11);
      std::normal_distribution<float> nd(-4.0f, 2.0f);
      for (auto& f : feats) f = nd(arng);
      std::vector<uint8_t> mask(frames, 1);
      for (int rep = 0; rep < o->r; ++rep) {
        Tensor out;
        auto t0 = std::chrono::steady_clock::now();
        audio_tokens = engine.model->encode_audio(*engine.ctx, feats.data(), mask.data(), frames, bins, out);
        audio_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
    }
    std::mt19937 rng(1234);
    std::uniform_int_distribution<int32_t> tok(0, (int32_t)mi.vocab_size - 1);
    std::vector<double> pp, tg;
    for (int rep = 0; rep < o->r; ++rep) {
      if (o->p > 0) {
        Session s(engine, o->p);
        std::vector<int32_t> prompt(o->p);
        for (auto& t : prompt) t = tok(rng);
        auto t0 = std::chrono::steady_clock::now();
        s.feed(prompt);
        double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        pp.push_back(o->p / sec);
      }
      if (o->n > 0) {
        // Like llama-bench's tg test: decode from an empty cache, one token per step.
        Session s(engine, o->n);
        auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < o->n; ++i) s.feed({tok(rng)});
        double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        tg.push_back(o->n / sec);
      }
      if (!o->json)
        std::fprintf(stderr, "repetition %d/%d done\n", rep + 1, o->r);
    }
    const double pp_med = pp.empty() ? 0 : median(pp), tg_med = tg.empty() ? 0 : median(tg);
    const int threads = engine.ctx->pool.size();
    const char* isa = isa_name(engine.ctx->kernels.isa());
    if (o->json) {
      std::printf(
          "{\"model\": \"%s\", \"architecture\": \"%s\", \"n_params\": %lld, \"threads\": %d, \"isa\": \"%s\", "
          "\"prompt_tokens\": %d, \"gen_tokens\": %d, \"repetitions\": %d, \"prefill_tok_s\": %.3f, "
          "\"decode_tok_s\": %.3f, \"load_ms\": %.1f, \"peak_rss_mb\": %.1f, \"image_size\": %d, "
          "\"image_tokens\": %lld, \"vision_encode_ms\": %.1f, \"audio_seconds\": %d, \"audio_tokens\": %lld, "
          "\"audio_encode_ms\": %.1f}\n",
          o->model.c_str(), mi.architecture.c_str(), (long long)mi.n_params, threads, isa, o->p, o->n, o->r, pp_med,
          tg_med, engine.load_ms, peak_rss_mib(), o->image_size, (long long)image_tokens,
          vision_ms.empty() ? 0.0 : median(vision_ms), o->audio_seconds, (long long)audio_tokens,
          audio_ms.empty() ? 0.0 : median(audio_ms));
    } else {
      std::printf("model        %s (%s, %.3f B params)\n", o->model.c_str(), mi.architecture.c_str(), mi.n_params / 1e9);
      std::printf("threads      %d, kernels %s\n", threads, isa);
      std::printf("load         %.1f ms\n", engine.load_ms);
      if (o->p > 0) std::printf("prefill pp%-4d %.2f tok/s (median of %d)\n", o->p, pp_med, o->r);
      if (o->n > 0) std::printf("decode  tg%-4d %.2f tok/s (median of %d)\n", o->n, tg_med, o->r);
      if (!vision_ms.empty())
        std::printf("vision %dx%d -> %lld soft tokens: encode %.1f ms (median of %d)\n", o->image_size, o->image_size,
                    (long long)image_tokens, median(vision_ms), o->r);
      if (!audio_ms.empty())
        std::printf("audio %d s -> %lld soft tokens: encode %.1f ms (median of %d)\n", o->audio_seconds,
                    (long long)audio_tokens, median(audio_ms), o->r);
      std::printf("peak RSS     %.1f MiB\n", peak_rss_mib());
    }
  });
}

}  // namespace edgevl::cli
