// edgevl init: random-weight models at real shapes (tests and benchmarks without downloads).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>

#include "core/error.h"
#include "core/fp16.h"
#include "core/mmap.h"
#include "core/thread_pool.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "kernels/quants.h"
#include "models/layout.h"

namespace edgevl {

namespace {

// One tensor to write: its name in the output format, full shape, and how to fill it.
struct InitTensor {
  std::string name;
  std::vector<int64_t> shape;
  bool vector = false;
  float center = 0;  // vectors: neutral value (1 for norm scales, 0 for biases / (1+w) norms)
  std::string key;   // seeds the random stream
  std::vector<float> values;  // fixed contents (F32)
};

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t hash_name(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// Standard normal samples (Box-Muller over splitmix64), reproducible per (seed, tensor, row).
void fill_normal(float* out, int64_t n, float mean, float std, uint64_t state) {
  for (int64_t i = 0; i < n; i += 2) {
    double u1 = ((splitmix64(state) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (splitmix64(state) >> 11) * (1.0 / 9007199254740992.0);
    double r = std::sqrt(-2.0 * std::log(u1));
    out[i] = mean + std * (float)(r * std::cos(2 * M_PI * u2));
    if (i + 1 < n) out[i + 1] = mean + std * (float)(r * std::sin(2 * M_PI * u2));
  }
}

// The tensors of one output format: optional ones (absent in this configuration) skipped, HF slices
// of a fused tensor merged into one. `key` names the random stream: the HF name where the tensor
// has one of its own, so that the HF and GGUF outputs of a family that stores weights alike in
// both (gemma4) hold the same values.
std::vector<InitTensor> collect_tensors(const ModelLayout& L, bool gguf) {
  std::vector<InitTensor> out;
  std::map<std::string, size_t> index;  // HF fused tensors appear once per slice
  for (const LayoutTensor& s : L.tensors) {
    if (s.flags & kOptional) continue;
    const std::string& name = gguf ? s.gguf : s.hf;
    if (name.empty()) continue;
    InitTensor t;
    t.name = name;
    t.key = !s.hf.empty() && s.hf_row_offset < 0 ? s.hf : name;
    t.shape = s.shape;
    t.vector = s.flags & kVector;
    t.values = s.values;
    const bool bias = t.name.find("bias") != std::string::npos;
    t.center = s.center ? *s.center : bias || ((s.flags & kNormPlusOneHf) && !gguf) ? 0.0f : 1.0f;
    if (!gguf && s.hf_row_offset >= 0) t.shape[0] = s.hf_row_offset + s.shape[0];
    auto it = index.find(t.name);
    if (it != index.end()) {
      out[it->second].shape[0] = std::max(out[it->second].shape[0], t.shape[0]);
      continue;
    }
    index[t.name] = out.size();
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace

ModelLayout model_layout_from_decoder(const DecoderLayout& L) {
  ModelLayout m;
  m.vocab = L.dec.vocab;
  append_layout(m.tensors, L.model_table);
  for (int64_t l = 0; l < L.dec.n_layers; ++l) append_layout(m.tensors, L.layer_table, l);
  m.gguf_metadata = [L](gguf::Writer& w) { write_gguf_metadata(w, L); };
  return m;
}

void init_random_model(const std::string& config_path, const std::string& out, const InitOptions& opt) {
  namespace fs = std::filesystem;
  const HfConfig hf = load_hf_config(config_path);
  const ModelLayout L = model_layout_from_hf(hf);
  const float std_dev = (float)hf.get_float("initializer_range", 0.02);
  EV_CHECK(opt.gguf || opt.dtype == DType::F32 || opt.dtype == DType::F16 || opt.dtype == DType::BF16,
           "init: an HF folder holds F32, F16 or BF16 weights (write --gguf for block formats)");
  const auto tensors = collect_tensors(L, opt.gguf);
  ThreadPool pool(opt.threads > 0 ? opt.threads : default_thread_count());
  std::vector<std::vector<uint8_t>> data(tensors.size());
  std::vector<DType> types(tensors.size());
  int64_t params = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const InitTensor& t = tensors[i];
    const int64_t cols = t.shape.back(), rows = Tensor::count(t.shape) / cols;
    params += rows * cols;
    DType type = t.vector || !t.values.empty() || (opt.gguf && gguf::llama_cpp_keeps_f32(t.name)) ? DType::F32 : opt.dtype;
    type = type_for_row(type, cols);
    types[i] = type;
    const size_t rb = row_bytes(type, cols);
    data[i].resize(rb * rows);
    if (!t.values.empty()) {
      EV_CHECK((int64_t)t.values.size() == rows * cols, "init: ", t.name, " has ", t.values.size(),
               " fixed values for ", rows * cols, " elements");
      std::memcpy(data[i].data(), t.values.data(), t.values.size() * sizeof(float));
      continue;
    }
    const uint64_t base = opt.seed ^ hash_name(t.key);
    pool.parallel_for(rows, 8, [&](int64_t b, int64_t e) {
      std::vector<float> row(cols);
      for (int64_t r = b; r < e; ++r) {
        uint64_t state = base + 0x632BE59BD9B4E019ull * (uint64_t)(r + 1);
        if (t.vector) fill_normal(row.data(), cols, t.center, 0.02f, state);
        else fill_normal(row.data(), cols, 0.0f, std_dev, state);
        quantize_row(type, row.data(), data[i].data() + r * rb, cols);
      }
    });
    std::fprintf(stderr, "\r[%zu/%zu] %-48s", i + 1, tensors.size(), t.name.c_str());
  }
  std::fprintf(stderr, "\n%lld parameters generated in %.1f s; writing %s\n", (long long)params,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), out.c_str());
  if (opt.gguf) {
    gguf::Writer w;
    L.gguf_metadata(w);
    w.set_u32("general.file_type", gguf::llama_file_type(opt.dtype));
    w.set_u32("general.quantization_version", 2);
    write_synthetic_vocab(w, L.vocab);
    for (size_t i = 0; i < tensors.size(); ++i)
      w.add_tensor(tensors[i].name, types[i], tensors[i].shape, std::move(data[i]));
    w.write(out);
  } else {
    fs::create_directories(out);
    const std::string cfg_text =
        !L.hf_config.empty()
            ? L.hf_config
            : read_text_file(fs::is_directory(config_path) ? (fs::path(config_path) / "config.json").string()
                                                           : config_path);
    write_file_atomic((fs::path(out) / "config.json").string(), cfg_text.data(), cfg_text.size());
    safetensors::Writer w;
    w.set_metadata("format", "pt");
    for (size_t i = 0; i < tensors.size(); ++i)
      w.add(tensors[i].name, types[i], tensors[i].shape, std::move(data[i]));
    w.write((fs::path(out) / "model.safetensors").string());
  }
}

}  // namespace edgevl
