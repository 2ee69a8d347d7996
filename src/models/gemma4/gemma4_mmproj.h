// Gemma 4 vision mmproj files as llama.cpp's converter writes them (convert_hf_to_gguf.py --mmproj,
// conversion/gemma.py Gemma4VisionAudioModel): general.architecture "clip", general.type
// "mmproj", the clip.vision.* keys, projector type "gemma4v", and the vision tower under
// v.* / mm.* names (gemma4_vision_tensors()). Types follow the converter's --outtype: matrices in
// the chosen type (F32/F16/BF16/Q8_0, or any block type edgevl writes), the position table,
// vectors and clip bounds in F32, the patch embedding F16 for F16 output and F32 otherwise.
// Only the vision part: a config with audio_config gets a vision-only file (the converter would
// add the audio tower to the same file).
#pragma once
#include <cstdint>
#include <string>

#include "io/hf_config.h"
#include "kernels/dtype.h"

namespace edgevl {

// The vision tower of an HF Gemma4ForConditionalGeneration folder, converted.
void convert_gemma4_mmproj(const std::string& hf_dir, const std::string& out, DType dtype, int threads = 0);

// Random weights at the shapes of `config` (a Gemma4ForConditionalGeneration config.json):
// matrices ~ N(0, initializer_range), norms near their neutral value, clip bounds around the
// activations' range. `edgevl init CONFIG --mmproj OUT`.
void init_gemma4_mmproj(const HfConfig& config, const std::string& out, DType dtype, uint64_t seed = 0,
                        int threads = 0);

}  // namespace edgevl
