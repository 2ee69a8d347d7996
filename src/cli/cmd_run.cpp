// `edgevl run`: one question about text, images and audio, answered through the model's chat
// template; `edgevl chat`: the same as a conversation at the terminal, with /image and /audio.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "core/mmap.h"
#include "runtime/conversation.h"

namespace edgevl::cli {

namespace {

struct ChatOpts {
  std::string model, mmproj, lora, system, chat_template;
  std::vector<std::string> images, audio;
  MediaOptions media;
  int threads = 0, n = 512;
  int64_t ctx = 8192;
  GenerateOptions gen;
  bool stats = false;
};

void add_chat_options(CLI::App* cmd, ChatOpts& o) {
  cmd->add_option("-m,--model", o.model, "Model folder or .gguf file")->required();
  cmd->add_option("--mmproj", o.mmproj, "llama.cpp mmproj .gguf with the vision and/or audio tower, for a text-only .gguf model");
  cmd->add_option("--lora", o.lora, "A LoRA adapter folder (PEFT layout, e.g. from `edgevl train`) applied to the model");
  cmd->add_option("--system", o.system, "A system message first");
  cmd->add_option("--chat-template", o.chat_template,
                  "Jinja chat template file to use instead of the model's own");
  cmd->add_option("--image-tokens", o.media.image_tokens,
                  "Soft tokens per image: 70, 140, 280, 560 or 1120 (default: the model's processor, 280)");
  cmd->add_flag("!--no-truncation", o.media.audio_truncation,
                "Keep audio longer than the feature extractor's maximum (30 s) instead of cutting it");
  cmd->add_option("-n,--max-tokens", o.n, "Maximum new tokens per answer")->capture_default_str();
  add_thread_option(cmd, o.threads);
  cmd->add_option("-c,--ctx", o.ctx, "Context length (positions in the KV cache)")->capture_default_str();
  add_sampling_options(cmd, o.gen.sampling);
  cmd->add_option("--stop", o.gen.stop_strings, "Stop before this string (repeatable)");
  cmd->add_flag("--stats", o.stats, "Print media, prompt and decoding timings and peak memory to stderr");
}

text::ChatTemplate chat_template_for(const ChatOpts& o) {
  if (!o.chat_template.empty()) {
    text::ChatTemplate t;
    t.source = read_text_file(o.chat_template);
    t.origin = o.chat_template;
    if (auto own = text::find_chat_template(o.model)) {  // keep the model's bos/eos strings
      t.bos_token = own->bos_token;
      t.eos_token = own->eos_token;
    }
    return t;
  }
  auto t = text::find_chat_template(o.model);
  EV_CHECK(t, o.model, ": no chat template (chat_template.jinja, tokenizer_config.json or GGUF); give one with "
                       "--chat-template FILE");
  return *t;
}

bool print_stream(const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
  return true;
}

void print_stats(const GenerateResult& r, const MediaStats& m) {
  if (m.images > 0)
    std::fprintf(stderr, "images: %lld (%lld soft tokens): preprocess %.1f ms, encode %.1f ms\n", (long long)m.images,
                 (long long)m.image_tokens, m.image_preprocess_ms, m.image_encode_ms);
  if (m.audio_clips > 0)
    std::fprintf(stderr, "audio: %lld clips (%lld soft tokens): features %.1f ms, encode %.1f ms\n",
                 (long long)m.audio_clips, (long long)m.audio_tokens, m.audio_preprocess_ms, m.audio_encode_ms);
  std::fprintf(stderr,
               "prompt %lld tokens, prefill %.1f ms; %zu new tokens in %.1f ms (%.2f tok/s); stop: %s; peak RSS "
               "%.0f MiB\n",
               (long long)r.prompt_tokens, r.prefill_ms, r.tokens.size(), r.decode_ms,
               r.tokens.size() * 1000.0 / std::max(r.decode_ms, 1e-9), r.stop_reason.c_str(), peak_rss_mib());
}

// The model, its processors and a conversation through its chat template, as the options say.
struct ChatState {
  explicit ChatState(ChatOpts& o)
      : engine(load_engine(o)), media(*engine.model, o.media), conv(engine, media, chat_template_for(o), o.ctx) {
    if (!o.system.empty()) conv.set_system(o.system);
    o.gen.max_new_tokens = o.n;
  }
  static Engine load_engine(const ChatOpts& o) {
    Engine e = Engine::load(o.model, o.threads);
    if (!o.mmproj.empty()) e.model->attach_mmproj(o.mmproj);
    if (!o.lora.empty()) e.attach_lora(o.lora);
    return e;
  }
  Engine engine;
  MediaProcessor media;
  Conversation conv;
};

std::vector<MediaItem> media_items(const std::vector<std::string>& images, const std::vector<std::string>& audio) {
  std::vector<MediaItem> items;
  for (const auto& p : images) items.push_back({MediaItem::Kind::Image, p});
  for (const auto& p : audio) items.push_back({MediaItem::Kind::Audio, p});
  return items;
}

}  // namespace

void add_run(CLI::App& app) {
  auto o = std::make_shared<ChatOpts>();
  auto prompt = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("run", "Answer one prompt about text, images and audio, streaming the answer");
  add_chat_options(cmd, *o);
  cmd->add_option("--image", o->images, "An image file (PNG, JPEG, WebP, BMP, GIF); repeatable");
  cmd->add_option("--audio", o->audio, "An audio file (WAV, FLAC, OGG, MP3; resampled to 16 kHz); repeatable");
  cmd->add_option("prompt", *prompt, "The question or instruction");
  cmd->footer(
      "The prompt is one user turn rendered with the model's chat template, images and audio placed before the\n"
      "text; each becomes the model's soft tokens. Example:\n"
      "  edgevl run -m gemma-4-E2B-it --image receipt.jpg \"What is the total?\"");
  cmd->callback([o, prompt] {
    EV_CHECK(!prompt->empty() || !o->images.empty() || !o->audio.empty(), "run: give a prompt, --image or --audio");
    ChatState s(*o);
    MediaStats stats;
    GenerateResult r = s.conv.reply(*prompt, media_items(o->images, o->audio), o->gen, print_stream, &stats);
    std::printf("\n");
    if (o->stats) print_stats(r, stats);
  });
}

void add_chat(CLI::App& app) {
  auto o = std::make_shared<ChatOpts>();
  auto* cmd = app.add_subcommand("chat", "Talk with a model at the terminal; attach images and audio to a turn");
  add_chat_options(cmd, *o);
  cmd->footer(
      "Type a message and press Enter. Commands:\n"
      "  /image FILE   attach an image to your next message\n"
      "  /audio FILE   attach an audio clip to your next message\n"
      "  /reset        start over (the system message stays)\n"
      "  /quit         leave (or end of input)");
  cmd->callback([o] {
    ChatState s(*o);
    Conversation& conv = s.conv;
    std::vector<std::string> images, audio;
    std::string line;
    std::fprintf(stderr, "edgevl chat: %s. /image FILE, /audio FILE, /reset, /quit.\n", o->model.c_str());
    while (true) {
      std::fprintf(stderr, "> ");
      if (!std::getline(std::cin, line)) break;
      if (line == "/quit" || line == "/exit") break;
      if (line == "/reset") {
        conv.reset();
        images.clear();
        audio.clear();
        std::fprintf(stderr, "(conversation reset)\n");
        continue;
      }
      const bool is_image = line.rfind("/image ", 0) == 0, is_audio = line.rfind("/audio ", 0) == 0;
      if (is_image || is_audio) {
        const std::string path = line.substr(7);
        if (!std::ifstream(path)) {
          std::fprintf(stderr, "edgevl: error: %s: cannot open\n", path.c_str());
          continue;
        }
        (is_image ? images : audio).push_back(path);
        std::fprintf(stderr, "(attached %s to your next message)\n", path.c_str());
        continue;
      }
      if (line.empty() && images.empty() && audio.empty()) continue;
      MediaStats stats;
      try {
        GenerateResult r = conv.reply(line, media_items(images, audio), o->gen, print_stream, &stats);
        std::printf("\n");
        if (o->stats) print_stats(r, stats);
      } catch (const Error& e) {
        // A bad file or an over-long context ends this turn, not the conversation.
        std::fprintf(stderr, "edgevl: error: %s\n", e.what());
      }
      images.clear();
      audio.clear();
    }
  });
}

}  // namespace edgevl::cli
