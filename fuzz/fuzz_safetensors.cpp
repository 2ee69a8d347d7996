// libFuzzer target for the safetensors reader: any input must either parse into tensors that lie
// inside the buffer or raise edgevl::Error; anything else is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = edgevl::safetensors::File::open_memory(data, size, "fuzz.safetensors");
    for (const auto& t : f->tensors()) {
      if (t.data < data || t.nbytes > size || t.data + t.nbytes > data + size) std::abort();
      volatile uint8_t sink = t.nbytes ? t.data[t.nbytes - 1] : 0;
      (void)sink;
      if (f->find(t.name) != &t) std::abort();
    }
  } catch (const edgevl::Error&) {
  }
  return 0;
}
