// The CPU kernel layer. Kernels know nothing about models: they take raw pointers, sizes and
// strides. One table of function pointers is chosen once at start-up from the CPU's features
// (scalar reference, AVX2, AVX-512 with VNNI/BF16, NEON); EDGEVL_ISA=scalar|avx2|avx512|neon
// overrides it to reproduce a bug on another path. The scalar table is the test oracle.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/dtype.h"

namespace edgevl {

enum class Isa { Scalar, Avx2, Avx512, Neon };
const char* isa_name(Isa isa);

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512vnni = false, avx512bf16 = false;
  bool avxvnni = false, amx_int8 = false, amx_bf16 = false;
  bool neon = false, neon_dotprod = false;
};
const CpuFeatures& cpu_features();

struct KernelTable;  // defined in kernels/table.h (internal)

class Kernels {
 public:
  // Chooses the best table this CPU supports, or `isa_override` ("scalar", "avx2", "avx512",
  // "neon"; empty = read EDGEVL_ISA, then auto). Throws Error if the requested ISA is unsupported.
  static Kernels select(const std::string& isa_override = "");
  Isa isa() const { return isa_; }
  const KernelTable& table() const { return *table_; }

 private:
  Isa isa_ = Isa::Scalar;
  const KernelTable* table_ = nullptr;
};

// Y[m, n] = sum_k X[m, k] * W[n, k] (i.e. X · Wᵀ, the shape of a linear layer).
// W: n rows of k elements of `wtype`, row i at w + i * w_row_bytes (k a multiple of the block size).
// X: m rows of k floats with row stride ldx (floats); Y: m rows with stride ldy.
// Activations may be quantized on the fly to the weight type's dot-product partner (Q8_0 / Q8_1
// / Q8_K), as llama.cpp does. Work is split over the pool's threads.
struct MatmulArgs {
  DType wtype = DType::F32;
  const void* w = nullptr;
  size_t w_row_bytes = 0;
  int64_t n = 0, k = 0;
  const float* x = nullptr;
  int64_t ldx = 0;
  int64_t m = 0;
  float* y = nullptr;
  int64_t ldy = 0;
};
void matmul(const Kernels& kernels, ThreadPool& pool, const MatmulArgs& args);

// Dot product of two float vectors (used by attention), with the table's SIMD.
float dot_f32(const Kernels& kernels, const float* a, const float* b, int64_t n);

}  // namespace edgevl
