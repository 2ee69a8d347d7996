// Gemma 4 mmproj files as llama.cpp's converter writes them (convert_hf_to_gguf.py --mmproj,
// conversion/gemma.py Gemma4VisionAudioModel): general.architecture "clip", general.type
// "mmproj"; the vision tower (clip.has_vision_encoder, clip.vision.* keys, projector type
// "gemma4v", v.* / mm.* tensors, gemma4_vision_tensors()) and, when the config has an
// audio_config, the audio tower in the same file (clip.has_audio_encoder, clip.audio.* keys,
// projector type "gemma4a", a.* / mm.a.* tensors, gemma4_audio_tensors()). Types follow the
// converter's --outtype: matrices in the chosen type (F32/F16/BF16/Q8_0, or any block type edgevl
// writes; F16 where a row does not fit its blocks), vectors, norms, clip bounds, the vision
// position table, the audio conv kernels and the audio subsampler's projection in F32, the vision
// patch embedding F16 for F16 output and F32 otherwise.
#pragma once
#include <cstdint>
#include <string>

#include "io/hf_config.h"
#include "kernels/dtype.h"

namespace edgevl {

// The towers of an HF Gemma4ForConditionalGeneration folder, converted.
void convert_gemma4_mmproj(const std::string& hf_dir, const std::string& out, DType dtype, int threads = 0);

// Random weights at the shapes of `config` (a Gemma4ForConditionalGeneration config.json):
// matrices ~ N(0, initializer_range), norms near their neutral value, clip bounds around the
// activations' range. `edgevl init CONFIG --mmproj OUT`.
void init_gemma4_mmproj(const HfConfig& config, const std::string& out, DType dtype, uint64_t seed = 0,
                        int threads = 0);

}  // namespace edgevl
