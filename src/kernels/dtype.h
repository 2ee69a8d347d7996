// Element types. The numeric values are GGUF's ggml_type ids, so a GGUF tensor's type maps
// directly. Block formats are bit-exact with GGUF's layouts (see quants.h).
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace edgevl {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
  // Not a ggml type: safetensors' BOOL and U8 (kept out of ggml's id range).
  BOOL = 1000,
  U8 = 1001,
};

struct DTypeInfo {
  const char* name;      // "f32", "q4_0", ... (GGUF/llama.cpp spelling, lower case)
  int64_t block_size;    // elements per block (1 for plain types)
  size_t block_bytes;    // bytes per block
  bool is_quantized;
};

// nullopt for an id this build does not know (e.g. a GGUF with an exotic type).
std::optional<DTypeInfo> dtype_info(DType t);
const DTypeInfo& dtype_info_or_die(DType t);  // for dtypes already validated
const char* dtype_name(DType t);
std::optional<DType> dtype_from_name(std::string_view name);  // case-insensitive: "Q4_0", "f16", "bf16"

// Bytes of a row of n elements; n must be a multiple of the block size (checked by callers
// that read untrusted files before calling this).
size_t row_bytes(DType t, int64_t n);

}  // namespace edgevl
