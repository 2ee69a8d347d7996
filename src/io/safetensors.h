// safetensors reader and writer (https://huggingface.co/docs/safetensors), including sharded
// folders described by `model.safetensors.index.json`. The reader memory-maps each file and
// validates the JSON header (size bound, dtype names, shapes, offsets within the data section,
// no overlaps, sizes matching dtype × shape); problems raise edgevl::Error naming the file.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string_view>
#include <string>
#include <vector>

#include "core/mmap.h"
#include "io/tensor_ref.h"

namespace edgevl::safetensors {

class File {
 public:
  static std::unique_ptr<File> open(const std::string& path);
  // Parses a safetensors image already in memory (tests, fuzzers). The bytes are not copied: they
  // must outlive the File. `name` stands in for the path in error messages.
  static std::unique_ptr<File> open_memory(const void* data, size_t size, const std::string& name = "<memory>");
  const std::string& path() const { return path_; }
  uint64_t data_offset() const { return data_offset_; }  // 8 + header length
  const std::vector<TensorRef>& tensors() const { return tensors_; }
  const TensorRef* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }  // "__metadata__"

 private:
  File() = default;
  void parse();  // fills everything below from base_/size_; throws Error
  std::unique_ptr<MappedFile> map_;  // null for open_memory
  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  uint64_t data_offset_ = 0;
  std::vector<TensorRef> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a model folder: `model.safetensors`, or the shards listed in
// `model.safetensors.index.json` (every listed shard must exist and hold what the index says).
// Also accepts a path to a single .safetensors file.
class Collection {
 public:
  static std::unique_ptr<Collection> open(const std::string& path);
  const TensorRef* find(const std::string& name) const;
  std::vector<const TensorRef*> tensors() const;  // in file order, shard by shard

 private:
  std::vector<std::unique_ptr<File>> files_;
  std::map<std::string, const TensorRef*> index_;
};

class Writer {
 public:
  void set_metadata(const std::string& key, const std::string& value);
  // `data` must stay valid until write().
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data, size_t nbytes);
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes);
  void add_f32(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& values);
  void add_i64(const std::string& name, std::vector<int64_t> shape, const std::vector<int64_t>& values);
  void write(const std::string& path) const;  // atomic; throws Error

 private:
  struct Pending {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    const void* data;
    size_t nbytes;
    std::shared_ptr<std::vector<uint8_t>> owned;
  };
  std::map<std::string, std::string> metadata_;
  std::vector<Pending> tensors_;
};

// "F32" <-> DType::F32 etc. (F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)
const char* dtype_to_safetensors(DType t);  // nullptr if not representable
std::optional<DType> dtype_from_safetensors(std::string_view name);  // exact, upper case; nullopt if unknown

inline constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the Rust crate's own limit is 100 MB
inline constexpr int kMaxJsonDepth = 8;                     // real headers nest 3 deep

}  // namespace edgevl::safetensors
