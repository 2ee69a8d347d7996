#include "tensor/tensor.h"

#include "core/error.h"

namespace edgevl {

const float* WeightRef::f32() const {
  EV_ASSERT(dtype == DType::F32);
  return static_cast<const float*>(data);
}

}  // namespace edgevl
