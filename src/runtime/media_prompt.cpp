#include "runtime/media_prompt.h"

#include <chrono>
#include <filesystem>
#include <span>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mmap.h"
#include "media/audio.h"
#include "media/image.h"

namespace edgevl {

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// The processor settings saved with an HF checkpoint (processor_config.json holds every
// sub-processor; older folders have preprocessor_config.json). Null when there is neither.
nlohmann::json processor_json(const std::string& folder, std::string& name) {
  for (const char* f : {"processor_config.json", "preprocessor_config.json"}) {
    const std::filesystem::path p = std::filesystem::path(folder) / f;
    if (!std::filesystem::exists(p)) continue;
    name = p.string();
    try {
      return nlohmann::json::parse(read_text_file(name));
    } catch (const nlohmann::json::exception& e) {
      fail(name, ": invalid JSON: ", e.what());
    }
  }
  return nullptr;
}

}  // namespace

MediaProcessor::MediaProcessor(const CausalLM& model, const MediaOptions& opt)
    : MediaProcessor(model.source(), model.info().family, model.has_vision(), model.has_audio(),
                     model.audio_mel_bins(), opt) {}

MediaProcessor::MediaProcessor(const ModelSource& src, const std::string& family, bool vision, bool audio,
                               int64_t mel_bins, const MediaOptions& opt)
    : src_(src), opt_(opt), vision_(vision), audio_(audio) {
  if (!vision_ && !audio_) return;
  EV_CHECK(family == "gemma4", src.path(), ": media preprocessing for the ", family, " family is not implemented");
  std::string name;
  const nlohmann::json j = src.is_gguf() ? nlohmann::json() : processor_json(src.path(), name);
  const bool has_image = j.is_object() && (j.contains("image_processor") || j.contains("patch_size") ||
                                           j.contains("max_soft_tokens") || j.contains("pooling_kernel_size"));
  const bool has_audio = j.is_object() && (j.contains("feature_extractor") || j.contains("feature_size"));
  if (vision_) {
    if (has_image) {
      image_cfg_ = media::Gemma4ImageConfig::from_json(j, name);
    } else if (!src.is_gguf()) {
      // No processor file: the class defaults, with the patch grid of this checkpoint's tower.
      const HfConfig v = src.hf().sub("vision_config");
      image_cfg_.patch_size = (int)v.get_int("patch_size", image_cfg_.patch_size);
      image_cfg_.pooling_kernel_size = (int)v.get_int("pooling_kernel_size", image_cfg_.pooling_kernel_size);
      image_cfg_.max_soft_tokens = (int)v.get_int("default_output_length", image_cfg_.max_soft_tokens);
    }
    if (opt_.image_tokens > 0) {
      const int n = opt_.image_tokens;
      EV_CHECK(n == 70 || n == 140 || n == 280 || n == 560 || n == 1120, "--image-tokens ", n,
               " is not one of the budgets the model was trained for: 70, 140, 280, 560, 1120");
      image_cfg_.max_soft_tokens = n;
    }
  }
  if (audio_ && has_audio) audio_cfg_ = media::Gemma4AudioConfig::from_json(j, name);
  else if (audio_ && mel_bins > 0) audio_cfg_.feature_size = (int)mel_bins;  // e.g. an mmproj's tower
}

media::Gemma4ImageFeatures MediaProcessor::preprocess_image(const std::string& path) const {
  EV_CHECK(vision_, src_.path(), ": this model has no vision encoder (images are not supported)");
  return media::gemma4_preprocess(media::load_image(path), image_cfg_);
}

media::Gemma4AudioFeatures MediaProcessor::preprocess_audio(const std::vector<std::string>& paths) const {
  EV_CHECK(audio_, src_.path(), ": this model has no audio encoder (audio is not supported)");
  std::vector<media::Audio> clips;
  for (const auto& p : paths) clips.push_back(media::load_audio(p, audio_cfg_.sampling_rate));
  std::vector<std::span<const float>> spans;
  for (const auto& c : clips) spans.emplace_back(c.samples);
  media::Gemma4AudioCall call;
  call.truncation = opt_.audio_truncation;
  return media::Gemma4AudioFeatureExtractor(audio_cfg_)(spans, call);
}

MediaPrompt expand_media(Engine& engine, const MediaProcessor& proc, const std::vector<int32_t>& tokens,
                         const std::vector<MediaItem>& items, MediaStats* stats, std::map<std::string, Tensor>* encoded) {
  CausalLM& model = *engine.model;
  const MediaTokens ids = model.media_tokens();
  const int64_t hidden = model.info().hidden;
  MediaStats local;
  MediaStats& st = stats ? *stats : local;
  MediaPrompt out;
  size_t next_image = 0, next_audio = 0;
  auto next_of = [&](MediaItem::Kind kind, size_t& cursor) -> const MediaItem* {
    while (cursor < items.size() && items[cursor].kind != kind) ++cursor;
    return cursor < items.size() ? &items[cursor++] : nullptr;
  };
  for (int32_t id : tokens) {
    const bool image = id == ids.image && ids.image >= 0, audio = id == ids.audio && ids.audio >= 0;
    if (!image && !audio) {
      out.tokens.push_back(id);
      continue;
    }
    const MediaItem* item = image ? next_of(MediaItem::Kind::Image, next_image) : next_of(MediaItem::Kind::Audio, next_audio);
    EV_CHECK(item, "the prompt has more ", image ? "image" : "audio", " placeholders than ",
             image ? "images" : "audio clips", " were given");
    const std::string key = (image ? "image:" : "audio:") + item->path;
    Tensor soft;
    auto t0 = std::chrono::steady_clock::now();
    if (encoded && encoded->count(key)) {
      soft = encoded->at(key);
    } else if (image) {
      const media::Gemma4ImageFeatures f = proc.preprocess_image(item->path);
      st.image_preprocess_ms += ms_since(t0);
      t0 = std::chrono::steady_clock::now();
      model.encode_image(*engine.ctx, f.pixel_values.data(), f.position_ids.data(), f.max_patches, soft);
      st.image_encode_ms += ms_since(t0);
      ++st.images;
      st.image_tokens += soft.dim(0);
    } else {
      const media::Gemma4AudioFeatures f = proc.preprocess_audio({item->path});
      st.audio_preprocess_ms += ms_since(t0);
      t0 = std::chrono::steady_clock::now();
      model.encode_audio(*engine.ctx, f.features.data(), f.mask.data(), f.frames, f.mels, soft);
      st.audio_encode_ms += ms_since(t0);
      ++st.audio_clips;
      st.audio_tokens += soft.dim(0);
    }
    if (encoded) (*encoded)[key] = soft;
    EV_CHECK(soft.dim(1) == hidden, "media encoder returned width ", soft.dim(1), ", the model's hidden size is ",
             hidden);
    out.tokens.push_back(image ? ids.begin_image : ids.begin_audio);
    for (int64_t i = 0; i < soft.dim(0); ++i) {
      out.embed_positions.push_back((int32_t)out.tokens.size());
      out.tokens.push_back(id);
    }
    out.tokens.push_back(image ? ids.end_image : ids.end_audio);
    out.embeds.insert(out.embeds.end(), soft.data(), soft.data() + soft.numel());
  }
  EV_CHECK(!next_of(MediaItem::Kind::Image, next_image) && !next_of(MediaItem::Kind::Audio, next_audio),
           "more media were given than the prompt has placeholders for (does the chat template render "
           "image/audio content parts?)");
  return out;
}

}  // namespace edgevl
