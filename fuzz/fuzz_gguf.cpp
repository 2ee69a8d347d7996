// libFuzzer target for the GGUF reader: any input must either parse into tensors that lie inside
// the buffer or raise edgevl::Error; anything else (crash, sanitizer report, other exception) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "core/error.h"
#include "io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = edgevl::gguf::File::open_memory(data, size, "fuzz.gguf");
    for (const auto& t : f->tensors()) {
      if (t.data < data || t.nbytes > size || t.data + t.nbytes > data + size) std::abort();
      volatile uint8_t sink = t.nbytes ? t.data[t.nbytes - 1] : 0;  // touch the last byte (ASan checks it)
      (void)sink;
    }
    // Exercise the typed getters on every key.
    for (const auto& kv : f->metadata()) {
      try {
        f->get_int(kv.first);
      } catch (const edgevl::Error&) {
      }
      try {
        f->get_string_array(kv.first);
      } catch (const edgevl::Error&) {
      }
    }
  } catch (const edgevl::Error&) {
  }
  return 0;
}
