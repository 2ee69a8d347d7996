// The tiny multimodal golden checkpoint (../shared/golden/hf/gemma4) made runnable, for the CLI
// and trainer tests.
#pragma once
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace edgevl::test {

// The tiny multimodal golden checkpoint made runnable: a byte-fallback tokenizer whose specials
// sit at the config's placeholder ids, a minimal chat template that renders image/audio parts
// (and, as Gemma's does, the assistant's turns as "model"),
// and processor settings sized to its tower (patch 4, pooling 2, 32 mel bins).
inline void make_tiny_gemma4(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  for (const char* f : {"config.json", "generation_config.json", "model.safetensors"})
    fs::create_symlink(fs::path(golden_hf("gemma4")) / f, dir / f);
  nlohmann::ordered_json vocab, added = nlohmann::ordered_json::array();
  const char* specials[] = {"<pad>", "<eos>", "<bos>", "<unk>"};
  for (int i = 0; i < 4; ++i) vocab[specials[i]] = i;
  char hex[16];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(hex, sizeof hex, "<0x%02X>", b);
    vocab[hex] = 4 + b;
  }
  for (int i = 260; i < 505; ++i) vocab["filler" + std::to_string(i)] = i;
  const char* media[] = {"<|image|>", "<|video|>", "<|audio|>", "<|image>", "<image|>", "<|audio>", "<audio|>"};
  for (int i = 0; i < 7; ++i) vocab[media[i]] = 505 + i;
  for (const auto& [content, id] : vocab.items())
    if (content[0] == '<' && content.find("0x") == std::string::npos && content.find("filler") == std::string::npos)
      added.push_back({{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false},
                       {"rstrip", false}, {"normalized", false}, {"special", true}});
  nlohmann::ordered_json tok = {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", nullptr},
      {"post_processor", nullptr},
      {"decoder", {{"type", "Sequence"}, {"decoders", {{{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}}},
      {"model",
       {{"type", "BPE"}, {"unk_token", "<unk>"}, {"byte_fallback", true}, {"vocab", vocab},
        {"merges", nlohmann::ordered_json::array()}}}};
  std::ofstream(dir / "tokenizer.json") << tok.dump();
  std::ofstream(dir / "tokenizer_config.json") << R"({"bos_token": "<bos>", "eos_token": "<eos>"})";
  std::ofstream(dir / "chat_template.jinja")
      << "{{ bos_token }}{% for m in messages %}{% if m.role == 'assistant' %}model{% else %}{{ m.role }}{% endif %}: "
         "{% if m.content is string %}{{ m.content }}"
         "{% else %}{% for p in m.content %}{% if p.type == 'image' %}<|image|>{% elif p.type == 'audio' %}"
         "<|audio|>{% else %}{{ p.text }}{% endif %}{% endfor %}{% endif %}\n{% endfor %}"
         "{% if add_generation_prompt %}model: {% endif %}";
  std::ofstream(dir / "processor_config.json")
      << R"({"image_processor": {"patch_size": 4, "pooling_kernel_size": 2, "max_soft_tokens": 70},
             "feature_extractor": {"feature_size": 32}})";
}

}  // namespace edgevl::test
