#include "train/merge.h"

#include <filesystem>
#include <map>

#include "core/error.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "kernels/quants.h"
#include "models/model.h"
#include "train/lora.h"

namespace edgevl::train {

namespace fs = std::filesystem;

namespace {

// W [out, in] of `dtype` at `data` plus the adapter's update, in `dtype` again.
std::vector<uint8_t> merged_bytes(const LoraPair& p, DType dtype, const void* data) {
  std::vector<float> w(p.out * p.in);
  const size_t rb = row_bytes(dtype, p.in);
  for (int64_t o = 0; o < p.out; ++o)
    dequantize_row(dtype, static_cast<const uint8_t*>(data) + o * rb, w.data() + o * p.in, p.in);
  for (int64_t o = 0; o < p.out; ++o)
    for (int64_t k = 0; k < p.r; ++k) {
      const float b = p.scaling * p.B[o * p.r + k];
      if (b == 0.0f) continue;
      for (int64_t i = 0; i < p.in; ++i) w[o * p.in + i] += b * p.A[k * p.in + i];
    }
  std::vector<uint8_t> bytes(rb * p.out);
  for (int64_t o = 0; o < p.out; ++o) quantize_row(dtype, w.data() + o * p.in, bytes.data() + o * rb, p.in);
  return bytes;
}

}  // namespace

MergeReport merge_lora(const std::string& base, const std::string& adapter_dir, const std::string& out) {
  auto model = load_model(base);
  const LoraSet lora = LoraSet::load_peft(adapter_dir, linear_modules(*model));
  // File tensor name -> adapter (the model knows which file tensor each HF module is).
  std::map<std::string, const LoraPair*> by_file_name;
  for (const auto& [module, p] : lora.pairs) by_file_name[model->weights_by_hf_name().at(module + ".weight")->name] = &p;
  MergeReport rep;
  const ModelSource& src = model->source();
  if (src.is_gguf()) {
    const gguf::File& in = src.gguf();
    gguf::Writer w;
    w.copy_metadata(in);
    for (const auto& t : in.tensors()) {
      auto it = by_file_name.find(t.name);
      if (it == by_file_name.end()) {
        w.add_tensor(t.name, t.dtype, t.shape, t.data, t.nbytes);
        ++rep.copied;
      } else {
        w.add_tensor(t.name, t.dtype, t.shape, merged_bytes(*it->second, t.dtype, t.data));
        ++rep.merged;
      }
    }
    w.write(out);
  } else {
    EV_CHECK(fs::absolute(out) != fs::absolute(base), "merge: --out must differ from the base folder");
    fs::create_directories(out);
    for (const auto& e : fs::directory_iterator(base)) {
      const std::string n = e.path().filename().string();
      if (!e.is_regular_file() || n.ends_with(".safetensors") || n == "model.safetensors.index.json") continue;
      fs::copy_file(e.path(), fs::path(out) / n, fs::copy_options::overwrite_existing);
    }
    auto st = safetensors::Collection::open(base);
    safetensors::Writer w;
    w.set_metadata("format", "pt");
    for (const TensorRef* t : st->tensors()) {
      auto it = by_file_name.find(t->name);
      if (it == by_file_name.end()) {
        w.add(t->name, t->dtype, t->shape, t->data, t->nbytes);
        ++rep.copied;
      } else {
        w.add(t->name, t->dtype, t->shape, merged_bytes(*it->second, t->dtype, t->data));
        ++rep.merged;
      }
    }
    w.write((fs::path(out) / "model.safetensors").string());
  }
  EV_CHECK(rep.merged == (int64_t)lora.pairs.size(), "merge: ", lora.pairs.size(), " adapters but ", rep.merged,
           " weights merged");
  return rep;
}

}  // namespace edgevl::train
