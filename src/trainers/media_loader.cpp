#include "trainers/media_loader.h"

#include <map>

#include "core/error.h"
#include "media/image.h"
#include "models/gemma4/audio_encoder.h"
#include "models/gemma4/gemma4.h"
#include "models/source.h"
#include "runtime/media_prompt.h"

namespace edgevl::train {

namespace {

class ProcessorMediaLoader final : public MediaLoader {
 public:
  ProcessorMediaLoader(std::unique_ptr<ModelSource> src, bool vision, bool audio)
      : src_(std::move(src)),
        proc_(*src_, "gemma4", vision, audio,
              audio ? gemma4_audio_config_from_hf(src_->hf().sub("audio_config")).n_mel : 0, MediaOptions{}),
        tokens_(gemma4_media_tokens(src_->hf())) {}

  MediaTokens tokens() const override { return tokens_; }

  // Counted once per file: formatting asks for every prefix of a conversation.
  int64_t soft_tokens(const MediaRef& m) const override {
    auto it = soft_tokens_.find(key(m));
    if (it != soft_tokens_.end()) return it->second;
    int64_t n = 0;
    if (m.kind == MediaRef::Kind::Image) {
      EV_CHECK(proc_.images_supported(), src_->path(), ": this model has no vision tower (", m.path, ")");
      const media::Image img = media::load_image(m.path);
      n = media::gemma4_num_soft_tokens(img.height, img.width, proc_.image_config());
    } else {
      const media::Gemma4AudioFeatures f = proc_.preprocess_audio({m.path});
      for (uint8_t v : gemma4_audio_output_mask(f.mask.data(), f.frames)) n += v;
    }
    return soft_tokens_[key(m)] = n;
  }

  void append(const MediaRef& m, Batch& b) const override {
    if (m.kind == MediaRef::Kind::Image) {
      // The processor pads to its patch budget; the padding patches change nothing, so only the
      // image's own patches travel.
      const media::Gemma4ImageFeatures f = proc_.preprocess_image(m.path);
      BatchImage im;
      im.n_patches = f.num_patches;
      im.pixels.assign(f.pixel_values.begin(), f.pixel_values.begin() + (int64_t)f.num_patches * f.patch_dim);
      im.positions.assign(f.position_ids.begin(), f.position_ids.begin() + 2 * (int64_t)f.num_patches);
      b.images.push_back(std::move(im));
    } else {
      const media::Gemma4AudioFeatures f = proc_.preprocess_audio({m.path});
      b.audio.push_back({f.features, f.mask, f.frames});
    }
  }

 private:
  static std::string key(const MediaRef& m) { return (m.kind == MediaRef::Kind::Image ? "image:" : "audio:") + m.path; }

  std::unique_ptr<ModelSource> src_;
  MediaProcessor proc_;
  MediaTokens tokens_;
  mutable std::map<std::string, int64_t> soft_tokens_;
};

}  // namespace

std::unique_ptr<MediaLoader> open_media_loader(const std::string& model_path) {
  auto src = ModelSource::open(model_path);
  if (src->is_gguf() || src->architecture() != "gemma4") return nullptr;
  const bool vision = src->hf().has("vision_config"), audio = src->hf().has("audio_config");
  if (!vision && !audio) return nullptr;
  return std::make_unique<ProcessorMediaLoader>(std::move(src), vision, audio);
}

}  // namespace edgevl::train
