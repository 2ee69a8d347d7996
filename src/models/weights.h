// Declarative weight tables. A family lists each weight once: our slot, its Hugging Face name,
// its llama.cpp GGUF name, the shape the configuration implies, and flags. `{L}` in a name is the
// layer index. The loader checks presence, shape and dtype against the table and hands out
// WeightRefs that point into the mapped file (no copies), except for small vectors, which are
// converted to float32 (and transformed, e.g. Gemma's 1 + w) once at load time, and matrices the
// kernel table has a repacked layout for (Q4_0 on AVX-512), which also get an owned repacked copy.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/source.h"
#include "tensor/tensor.h"

namespace edgevl {

enum WeightFlags : uint32_t {
  kRequired = 0,
  kOptional = 1u << 0,
  kVector = 1u << 1,          // a 1-D scale/bias: loaded as float32
  kNormPlusOneHf = 1u << 2,   // HF stores w of x*(1+w); GGUF (llama.cpp's converter) stores 1+w
};

template <typename Slots>
struct WeightSpec {
  WeightRef Slots::*slot;
  const char* hf;    // nullptr: not in HF checkpoints
  const char* gguf;  // nullptr: not in GGUF files
  std::vector<int64_t> shape;
  uint32_t flags = kRequired;
  int64_t hf_row_offset = -1;  // >= 0: rows [offset, offset + shape[0]) of a fused HF tensor
};

class WeightLoader {
 public:
  // `kernels`: the table whose matmul the weights are repacked for (repack_for_matmul); the
  // default reads EDGEVL_ISA / the CPU like Context does. Any other table still gets correct
  // results from the GGUF rows, which every WeightRef keeps.
  explicit WeightLoader(const ModelSource& src) : WeightLoader(src, Kernels::select()) {}
  WeightLoader(const ModelSource& src, const Kernels& kernels) : src_(src), kernels_(kernels) {}

  // Loads one weight; `layer` replaces {L}. Returns an empty WeightRef for a missing optional one.
  WeightRef load(const char* hf, const char* gguf, const std::vector<int64_t>& shape, uint32_t flags,
                 int64_t layer = -1, int64_t hf_row_offset = -1);

  // The output layer of a model that ties it to the embedding table: the same rows, plus the
  // repacked copy the matmul kernels read fastest (the table itself is never repacked, being
  // only row-gathered). Costs the table's size once more where the kernel table has a layout.
  WeightRef tied_output(const WeightRef& embed);

  // A stored scalar (a 0-d or one-element tensor, e.g. a clip bound), as float. Required.
  float scalar(const std::string& hf, const char* gguf, int64_t layer = -1);

  template <typename Slots>
  void load_table(Slots& slots, const std::vector<WeightSpec<Slots>>& table, int64_t layer = -1) {
    for (const auto& s : table) {
      WeightRef& w = slots.*(s.slot);
      w = load(s.hf, s.gguf, s.shape, s.flags, layer, s.hf_row_offset);
      if (s.hf && !w.empty() && s.hf_row_offset < 0) by_hf_name_[hf_name(s.hf, layer)] = &w;
    }
  }

  // Every weight load_table filled, by its Hugging Face name whatever the file format (adapters
  // name modules that way). The pointers are the family's slots: valid while those stay put.
  const std::map<std::string, WeightRef*>& by_hf_name() const { return by_hf_name_; }
  // Adds a weight loaded outside load_table (`hf` a pattern as in the tables, {L} = layer).
  void remember(const char* hf, int64_t layer, WeightRef* w) { by_hf_name_[hf_name(hf, layer)] = w; }

  // Checkpoints that nest a decoder inside a multimodal model (Gemma4ForConditionalGeneration keeps
  // it under "model.language_model.") name its weights under another prefix: HF names that start
  // with `from` are looked up with `to` in its place.
  void set_hf_prefix(std::string from, std::string to) {
    hf_from_ = std::move(from);
    hf_to_ = std::move(to);
  }

  // Owned float buffers (converted vectors) must outlive the model: the model keeps the loader.
  size_t owned_bytes() const;
  size_t packed_bytes() const;

 private:
  const ModelSource& src_;
  Kernels kernels_;
  std::string hf_name(const char* pattern, int64_t layer) const;
  bool attach_packed(WeightRef& w);  // repacks w's rows when the kernel table has a layout for them

  std::string hf_from_, hf_to_;
  std::map<std::string, WeightRef*> by_hf_name_;
  std::vector<std::unique_ptr<std::vector<float>>> owned_;
  std::vector<PackedWeight> packed_;
};

std::string expand_layer_name(const char* pattern, int64_t layer);

}  // namespace edgevl
