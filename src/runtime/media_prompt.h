// Images and audio into a prompt: each media file is decoded, preprocessed the way the model's
// Hugging Face processor does it, encoded by the model's tower into soft tokens, and its single
// placeholder token in the tokenized prompt (`<|image|>` / `<|audio|>`, as the chat template
// writes it) is expanded into begin + N soft-token slots + end, exactly as the HF processor
// expands the placeholder text before tokenizing.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "media/gemma4_audio.h"
#include "media/gemma4_image.h"
#include "runtime/session.h"

namespace edgevl {

struct MediaItem {
  enum class Kind { Image, Audio };
  Kind kind = Kind::Image;
  std::string path;
};

struct MediaOptions {
  int image_tokens = 0;           // soft-token budget per image (70/140/280/560/1120); 0 = the processor's
  bool audio_truncation = true;   // false keeps audio past the extractor's 30 s maximum
};

struct MediaStats {
  int64_t images = 0, audio_clips = 0, image_tokens = 0, audio_tokens = 0;
  double image_preprocess_ms = 0, image_encode_ms = 0, audio_preprocess_ms = 0, audio_encode_ms = 0;
};

// The model's processors: its folder's processor_config.json / preprocessor_config.json when
// present, else the class defaults sized to the model's own tower (patch size, pooling).
class MediaProcessor {
 public:
  MediaProcessor(const CausalLM& model, const MediaOptions& opt);
  // Without an inference model (training): `family`, which towers the checkpoint has and the mel
  // bins its audio tower takes (the feature extractor's size where no processor file says it).
  MediaProcessor(const ModelSource& src, const std::string& family, bool vision, bool audio, int64_t mel_bins,
                 const MediaOptions& opt);

  bool images_supported() const { return vision_; }
  bool audio_supported() const { return audio_; }
  const media::Gemma4ImageConfig& image_config() const { return image_cfg_; }
  const media::Gemma4AudioConfig& audio_config() const { return audio_cfg_; }

  media::Gemma4ImageFeatures preprocess_image(const std::string& path) const;
  media::Gemma4AudioFeatures preprocess_audio(const std::vector<std::string>& paths) const;

 private:
  const ModelSource& src_;
  MediaOptions opt_;
  bool vision_ = false, audio_ = false;
  media::Gemma4ImageConfig image_cfg_;
  media::Gemma4AudioConfig audio_cfg_;
};

// Expands the placeholders of `tokens`, matching them in order with `items` of the same kind
// (every item must have its placeholder and vice versa), encoding each item with the engine's
// model. The soft tokens go into prompt.embeds at prompt.embed_positions.
// `encoded` (optional) keeps soft tokens by file path across calls, so a file is encoded once.
MediaPrompt expand_media(Engine& engine, const MediaProcessor& proc, const std::vector<int32_t>& tokens,
                         const std::vector<MediaItem>& items, MediaStats* stats = nullptr,
                         std::map<std::string, Tensor>* encoded = nullptr);

}  // namespace edgevl
