// Read-only memory map of a whole file. Model weights are used in place from the map.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace edgevl {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws Error naming the file
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Reads a whole (small) text file; throws Error naming the file.
std::string read_text_file(const std::string& path);
// Writes via a temp file + rename so a crash never leaves a half-written file.
void write_file_atomic(const std::string& path, const void* data, size_t size);

}  // namespace edgevl
