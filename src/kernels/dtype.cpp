// DType metadata. Block sizes and byte counts are GGUF's (ggml-common.h), so row_bytes() of a
// tensor read from a GGUF file equals the bytes llama.cpp stores for it.
#include "kernels/dtype.h"

#include <cctype>

#include "core/error.h"

namespace edgevl {

namespace {

struct Entry {
  DType type;
  DTypeInfo info;
};

// One line per type this build knows. Quantized block sizes: 32 for the legacy formats, 256
// (QK_K) for the K-quants; the byte counts are the sizes of ggml's block structs.
constexpr Entry kEntries[] = {
    {DType::F32, {"f32", 1, 4, false}},
    {DType::F16, {"f16", 1, 2, false}},
    {DType::Q4_0, {"q4_0", 32, 18, true}},
    {DType::Q4_1, {"q4_1", 32, 20, true}},
    {DType::Q5_0, {"q5_0", 32, 22, true}},
    {DType::Q5_1, {"q5_1", 32, 24, true}},
    {DType::Q8_0, {"q8_0", 32, 34, true}},
    {DType::Q8_1, {"q8_1", 32, 36, true}},
    {DType::Q4_K, {"q4_k", 256, 144, true}},
    {DType::Q5_K, {"q5_k", 256, 176, true}},
    {DType::Q6_K, {"q6_k", 256, 210, true}},
    {DType::Q8_K, {"q8_k", 256, 292, true}},
    {DType::I8, {"i8", 1, 1, false}},
    {DType::I16, {"i16", 1, 2, false}},
    {DType::I32, {"i32", 1, 4, false}},
    {DType::I64, {"i64", 1, 8, false}},
    {DType::F64, {"f64", 1, 8, false}},
    {DType::BF16, {"bf16", 1, 2, false}},
    {DType::BOOL, {"bool", 1, 1, false}},
    {DType::U8, {"u8", 1, 1, false}},
};

const Entry* find(DType t) {
  for (const Entry& e : kEntries)
    if (e.type == t) return &e;
  return nullptr;
}

}  // namespace

std::optional<DTypeInfo> dtype_info(DType t) {
  const Entry* e = find(t);
  if (!e) return std::nullopt;
  return e->info;
}

const DTypeInfo& dtype_info_or_die(DType t) {
  const Entry* e = find(t);
  EV_ASSERT(e != nullptr);
  return e->info;
}

const char* dtype_name(DType t) {
  const Entry* e = find(t);
  return e ? e->info.name : "unknown";
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const Entry& e : kEntries) {
    std::string_view n = e.info.name;
    if (n.size() != name.size()) continue;
    bool eq = true;
    for (size_t i = 0; i < n.size() && eq; ++i)
      eq = std::tolower(static_cast<unsigned char>(name[i])) == n[i];
    if (eq) return e.type;
  }
  return std::nullopt;
}

size_t row_bytes(DType t, int64_t n) {
  const DTypeInfo& info = dtype_info_or_die(t);
  EV_ASSERT(n >= 0 && n % info.block_size == 0);
  return static_cast<size_t>(n / info.block_size) * info.block_bytes;
}

}  // namespace edgevl
