// avx2 kernel table (placeholder until the SIMD kernels land: the scalar entries).
#include "kernels/table.h"

namespace edgevl::kern {

const KernelTable& avx2_table() {
  static const KernelTable t = [] {
    KernelTable k = scalar_table();
    k.isa = Isa::Avx2;
    return k;
  }();
  return t;
}

}  // namespace edgevl::kern
