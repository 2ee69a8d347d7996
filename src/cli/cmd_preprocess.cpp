// `edgevl preprocess`: what the model's processors make of images and audio, written under the
// reference processor's names, for comparison with Hugging Face or for feeding `edgevl dump`.
#include <algorithm>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "runtime/media_prompt.h"

namespace edgevl::cli {

void add_preprocess(CLI::App& app) {
  struct Opts {
    std::string model, out;
    std::vector<std::string> images, audio;
    MediaOptions media;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("preprocess", "Write the model's processor outputs for images and audio");
  cmd->add_option("-m,--model", o->model, "Model folder or .gguf file (its processor configuration is used)")
      ->required();
  cmd->add_option("--image", o->images, "An image file; repeatable");
  cmd->add_option("--audio", o->audio, "An audio file; repeatable (clips are padded into one batch)");
  cmd->add_option("--image-tokens", o->media.image_tokens, "Soft tokens per image: 70, 140, 280, 560 or 1120");
  cmd->add_flag("!--no-truncation", o->media.audio_truncation,
                "Keep audio longer than the feature extractor's maximum (HF truncation=False)");
  cmd->add_option("--out", o->out, "Output .safetensors")->required();
  cmd->footer(
      "Images: pixel_values [N, max_patches, 3*p*p], image_position_ids [N, max_patches, 2] (x, y; -1 for\n"
      "padding), num_soft_tokens_per_image [N]. Audio: input_features [N, frames, mel bins] and\n"
      "input_features_mask [N, frames], the batch padded to its longest clip as the reference pads it.");
  cmd->callback([o] {
    EV_CHECK(!o->images.empty() || !o->audio.empty(), "preprocess: give --image or --audio");
    auto model = load_model(o->model);
    MediaProcessor proc(*model, o->media);
    safetensors::Writer w;
    if (!o->images.empty()) {
      std::vector<float> pixels;
      std::vector<int64_t> positions, soft;
      int64_t max_patches = 0, patch_dim = 0;
      for (const auto& path : o->images) {
        const media::Gemma4ImageFeatures f = proc.preprocess_image(path);
        max_patches = f.max_patches;
        patch_dim = f.patch_dim;
        pixels.insert(pixels.end(), f.pixel_values.begin(), f.pixel_values.end());
        positions.insert(positions.end(), f.position_ids.begin(), f.position_ids.end());
        soft.push_back(f.num_soft_tokens);
      }
      const int64_t n = (int64_t)o->images.size();
      w.add_f32("pixel_values", {n, max_patches, patch_dim}, pixels);
      w.add_i64("image_position_ids", {n, max_patches, 2}, positions);
      w.add_i64("num_soft_tokens_per_image", {n}, soft);
    }
    if (!o->audio.empty()) {
      const media::Gemma4AudioFeatures f = proc.preprocess_audio(o->audio);
      w.add_f32("input_features", {f.batch, f.frames, f.mels}, f.features);
      w.add("input_features_mask", DType::BOOL, {f.batch, f.frames}, std::vector<uint8_t>(f.mask));
    }
    w.write(o->out);
  });
}

}  // namespace edgevl::cli
