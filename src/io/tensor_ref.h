// A tensor stored in a model file: name, element type, shape and a pointer into the mapped file.
// Shapes are row-major, outermost dimension first, for every format: a GGUF tensor with
// ne = [64, 512] (ggml order, fastest first) is reported as shape {512, 64}, the same shape
// Hugging Face gives the weight. Readers validate everything before handing out a TensorRef:
// data..data+nbytes lies inside the file and nbytes matches dtype and shape.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/dtype.h"

namespace edgevl {

struct TensorRef {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

}  // namespace edgevl
