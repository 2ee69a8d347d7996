// The training data's media (train::MediaLoader) through the runtime's processors: images and
// audio preprocessed exactly as for inference (media/gemma4_image.h, media/gemma4_audio.h), and
// each placeholder expanded by the soft-token count the file yields.
#pragma once
#include <memory>
#include <string>

#include "train/data.h"

namespace edgevl::train {

// The loader for a checkpoint with vision and/or audio towers (Gemma4ForConditionalGeneration);
// null for one without (text-only models, GGUF files).
std::unique_ptr<MediaLoader> open_media_loader(const std::string& model_path);

}  // namespace edgevl::train
