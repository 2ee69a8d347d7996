#include "models/weights.h"

#include <sys/mman.h>
#include <unistd.h>

#include "core/error.h"
#include "kernels/quants.h"

namespace edgevl {

std::string expand_layer_name(const char* pattern, int64_t layer) {
  std::string s = pattern;
  auto p = s.find("{L}");
  if (p != std::string::npos) s.replace(p, 3, std::to_string(layer));
  return s;
}

namespace {
std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}
}  // namespace

std::string WeightLoader::hf_name(const char* pattern, int64_t layer) const {
  std::string name = expand_layer_name(pattern, layer);
  if (!hf_from_.empty() && name.rfind(hf_from_, 0) == 0) name = hf_to_ + name.substr(hf_from_.size());
  return name;
}

WeightRef WeightLoader::load(const char* hf, const char* gguf, const std::vector<int64_t>& shape, uint32_t flags,
                             int64_t layer, int64_t hf_row_offset) {
  const bool is_gguf = src_.is_gguf();
  const char* pattern = is_gguf ? gguf : hf;
  if (!pattern) {
    EV_CHECK(flags & kOptional, src_.path(), ": this format has no name for a required weight (",
             hf ? hf : gguf, ")");
    return {};
  }
  const std::string name = is_gguf ? expand_layer_name(pattern, layer) : hf_name(pattern, layer);
  const TensorRef* t = src_.find(name);
  if (!t) {
    EV_CHECK(flags & kOptional, src_.path(), ": missing weight '", name, "'");
    return {};
  }
  WeightRef w;
  w.name = name;
  w.dtype = t->dtype;
  w.shape = shape;
  const uint8_t* data = t->data;
  if (!is_gguf && hf_row_offset >= 0) {
    // A slice of rows of a fused tensor (e.g. Granite's input_linear = [gate; up]).
    EV_CHECK(t->shape.size() == 2 && t->shape[1] == shape.back() && hf_row_offset + shape[0] <= t->shape[0],
             src_.path(), ": weight '", name, "' has shape ", shape_str(t->shape), ", cannot take rows ",
             hf_row_offset, "..", hf_row_offset + shape[0]);
    data += hf_row_offset * row_bytes(t->dtype, shape.back());
  } else {
    EV_CHECK(t->shape == shape, src_.path(), ": weight '", name, "' has shape ", shape_str(t->shape),
             ", the configuration implies ", shape_str(shape));
  }
  const auto info = dtype_info(t->dtype);
  EV_CHECK(info && t->dtype != DType::BOOL && t->dtype != DType::U8 && t->dtype != DType::I64 &&
               t->dtype != DType::I32 && t->dtype != DType::I16 && t->dtype != DType::I8 && t->dtype != DType::F64,
           src_.path(), ": weight '", name, "' has unsupported dtype ", dtype_name(t->dtype));
  EV_CHECK(shape.back() % info->block_size == 0, src_.path(), ": weight '", name, "' row of ", shape.back(),
           " is not a multiple of the ", dtype_name(t->dtype), " block size");
  w.row_bytes = row_bytes(t->dtype, shape.back());
  w.data = data;

  if (flags & kVector) {
    auto buf = std::make_unique<std::vector<float>>(shape.back());
    dequantize_row(t->dtype, data, buf->data(), shape.back());
    if ((flags & kNormPlusOneHf) && !is_gguf)
      for (float& v : *buf) v += 1.0f;
    w.dtype = DType::F32;
    w.data = buf->data();
    w.row_bytes = shape.back() * sizeof(float);
    owned_.push_back(std::move(buf));
  } else if (shape.size() == 2 && name.find("token_embd") == std::string::npos &&
             name.find("embed_tokens") == std::string::npos) {
    // Matrices (not the embedding table, which is only row-gathered) are rewritten once into the
    // kernel table's interleaved layout where it has one (Q4_0 and Q8_0 on AVX-512).
    if (attach_packed(w)) {
      // The copy replaces the file's pages: drop them from this process's resident set (the
      // mapping is private and read-only, so they are re-read from the file if ever touched).
      const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
      const uintptr_t b = (reinterpret_cast<uintptr_t>(data) + page - 1) & ~(page - 1);
      const uintptr_t e = (reinterpret_cast<uintptr_t>(data) + w.row_bytes * shape[0]) & ~(page - 1);
      if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
    }
  }
  return w;
}

bool WeightLoader::attach_packed(WeightRef& w) {
  PackedWeight p = repack_for_matmul(kernels_, w.dtype, w.data, w.row_bytes, w.rows(), w.cols());
  if (!p.data) return false;
  w.packed = p.data.get();
  w.layout = p.layout;
  packed_.push_back(std::move(p));
  return true;
}

WeightRef WeightLoader::tied_output(const WeightRef& embed) {
  WeightRef w = embed;
  attach_packed(w);  // the table keeps its GGUF rows for lookups; the head gets the matmul layout
  return w;
}

float WeightLoader::scalar(const std::string& hf, const char* gguf, int64_t layer) {
  const char* pattern = src_.is_gguf() ? gguf : hf.c_str();
  EV_CHECK(pattern, src_.path(), ": this format has no name for the scalar '", hf, "'");
  const std::string name = src_.is_gguf() ? expand_layer_name(pattern, layer) : hf_name(pattern, layer);
  const TensorRef* t = src_.find(name);
  EV_CHECK(t, src_.path(), ": missing scalar '", name, "'");
  EV_CHECK(t->numel() == 1 && (t->dtype == DType::F32 || t->dtype == DType::F16 || t->dtype == DType::BF16),
           src_.path(), ": '", name, "' is not a float scalar");
  float v = 0;
  dequantize_row(t->dtype, t->data, &v, 1);
  return v;
}

size_t WeightLoader::owned_bytes() const {
  size_t n = 0;
  for (const auto& b : owned_) n += b->size() * sizeof(float);
  return n;
}

size_t WeightLoader::packed_bytes() const {
  size_t n = 0;
  for (const auto& p : packed_) n += p.bytes;
  return n;
}

}  // namespace edgevl
