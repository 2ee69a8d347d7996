// GGUF v2/v3 reader and writer (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md).
// The reader memory-maps the file and validates every count, length, offset and size before use;
// a truncated or hostile file raises edgevl::Error("gguf: <path>: <problem>"), never a crash,
// hang or huge allocation.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/mmap.h"
#include "io/tensor_ref.h"

namespace edgevl::gguf {

enum class ValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
const char* value_type_name(ValueType t);

// One metadata value. Arrays hold their element type and the elements (arrays of arrays allowed).
struct Value {
  ValueType type = ValueType::UINT8;
  std::variant<uint64_t, int64_t, double, bool, std::string> scalar;  // ints widened; floats as double
  ValueType elem_type = ValueType::UINT8;                            // for ARRAY
  std::vector<Value> array;                                           // for ARRAY

  // Typed accessors; throw Error on a type mismatch (the message names the key via callers).
  bool is_array() const { return type == ValueType::ARRAY; }
  bool is_string() const { return type == ValueType::STRING; }
  bool is_integer() const;
  bool is_float() const { return type == ValueType::FLOAT32 || type == ValueType::FLOAT64; }
  int64_t as_int() const;     // any integer type (and bool)
  double as_float() const;    // float or integer types
  bool as_bool() const;
  const std::string& as_string() const;
};

class File {
 public:
  // Opens and validates; throws Error.
  static std::unique_ptr<File> open(const std::string& path);
  // Parses a GGUF image already in memory (tests, fuzzers, embedded models). The bytes are not
  // copied: they must outlive the File. `name` stands in for the path in error messages.
  static std::unique_ptr<File> open_memory(const void* data, size_t size, const std::string& name = "<memory>");

  const std::string& path() const { return path_; }
  // Start of the tensor data section (file offset) and the whole file image.
  uint64_t data_offset() const { return data_offset_; }
  const uint8_t* file_data() const { return base_; }
  size_t file_size() const { return size_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::vector<std::pair<std::string, Value>>& metadata() const { return kv_; }
  const Value* find(const std::string& key) const;
  const std::vector<TensorRef>& tensors() const { return tensors_; }
  const TensorRef* find_tensor(const std::string& name) const;

  // Convenience typed lookups: nullopt when absent, Error naming the key when of the wrong type.
  std::optional<int64_t> get_int(const std::string& key) const;
  std::optional<double> get_float(const std::string& key) const;
  std::optional<bool> get_bool(const std::string& key) const;
  std::optional<std::string> get_string(const std::string& key) const;
  // Arrays of scalars; Error if the element type does not fit.
  std::optional<std::vector<std::string>> get_string_array(const std::string& key) const;
  std::optional<std::vector<double>> get_float_array(const std::string& key) const;
  std::optional<std::vector<int64_t>> get_int_array(const std::string& key) const;

 private:
  File() = default;
  void parse();  // fills everything below from base_/size_; throws Error
  std::unique_ptr<MappedFile> map_;  // null for open_memory
  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  uint64_t data_offset_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::vector<std::pair<std::string, Value>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<TensorRef> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// Writes GGUF v3. Tensor data is aligned to `general.alignment` (default 32). Shapes are given
// row-major (outermost first) like TensorRef; the writer stores them in ggml order.
class Writer {
 public:
  void set(const std::string& key, Value value);  // replaces an existing key, keeps order
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_u64(const std::string& key, uint64_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_string_array(const std::string& key, const std::vector<std::string>& v);
  void set_f32_array(const std::string& key, const std::vector<float>& v);
  void set_i32_array(const std::string& key, const std::vector<int32_t>& v);
  // Copies metadata (all keys) from another file.
  void copy_metadata(const File& from);

  // `data` must stay valid until write(); nbytes must equal row_bytes(dtype, last dim) * rows.
  void add_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data, size_t nbytes);
  // Owns the bytes.
  void add_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes);

  void write(const std::string& path) const;  // atomic (temp + rename); throws Error

 private:
  struct PendingTensor {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    const void* data;
    size_t nbytes;
    std::shared_ptr<std::vector<uint8_t>> owned;
  };
  std::vector<std::pair<std::string, Value>> kv_;
  std::vector<PendingTensor> tensors_;
};

// llama.cpp's general.file_type value (LLAMA_FTYPE_*) for a file whose weights are mostly `t`.
uint32_t llama_file_type(DType t);
// Matrices llama.cpp keeps in F32 whatever the file's type (its converter and llama-quantize):
// mixture-of-experts routers (`ffn_gate_inp.weight`), whose top-k choice rounding would flip.
inline bool llama_cpp_keeps_f32(std::string_view name) { return name.ends_with("ffn_gate_inp.weight"); }

Value make_string(const std::string& s);
Value make_u32(uint32_t v);
Value make_f32(float v);
// Any scalar type (not STRING/ARRAY): integers from `v` (range-checked when written), floats via double.
Value make_scalar(ValueType t, double v);
Value make_int(ValueType t, int64_t v);    // UINT8..INT64 (and BOOL)
Value make_u64(uint64_t v);
Value make_bool(bool v);
// An array of `elem_type`; every element's type must equal elem_type (checked when written).
Value make_array(ValueType elem_type, std::vector<Value> elems);

// Reader limits (hostile-input bounds; real llama.cpp files are far below them).
inline constexpr size_t kMaxNameLen = 1024;          // tensor names (ggml's GGML_MAX_NAME is 64)
inline constexpr size_t kMaxKeyLen = 65536;          // metadata keys
inline constexpr int kMaxArrayDepth = 8;             // nesting of arrays in arrays
inline constexpr uint64_t kMaxValues = 1ull << 24;   // metadata values in all arrays together
inline constexpr uint32_t kMaxDims = 4;              // GGML_MAX_DIMS

}  // namespace edgevl::gguf
