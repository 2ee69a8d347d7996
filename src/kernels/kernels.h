// The CPU kernel layer. Kernels know nothing about models: they take raw pointers, sizes and
// strides. One table of function pointers is chosen once at start-up from the CPU's features
// (scalar reference, AVX2, AVX-512 with VNNI/BF16, NEON); EDGEVL_ISA=scalar|avx2|avx512|neon
// overrides it to reproduce a bug on another path. The scalar table is the test oracle.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
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
// Partners: Q4_0/Q5_0/Q8_0 -> Q8_0; Q4_1/Q5_1 -> Q8_1; Q4_K/Q5_K/Q6_K -> Q8_K; F32 and F16 ->
// F32 (no rounding of activations); BF16 -> BF16. Supported weight types: those plus nothing
// else (Error otherwise). W rows must keep their element's alignment (F32 rows 4-byte aligned).
// Few activation rows (decode) read the GGUF blocks in place; from a few rows up (prefill) the
// AVX-512 table unpacks each group of 16 weight rows once per call into an interleaved int8 panel
// (no load-time repack needed, so the mmapped file is used as is).
// Optionally `packed` holds the same weights rewritten at load time by repack_for_matmul into an
// ISA-specific interleaved layout (`layout`); matmul uses it when the table has kernels for that
// layout and otherwise falls back to `w` (which may then be nullptr only if the layout is usable).
enum class WeightLayout : uint8_t { Gguf = 0, Q4_0x16 = 1, Q8_0x16 = 2 };
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
  const void* packed = nullptr;
  WeightLayout layout = WeightLayout::Gguf;
};
void matmul(const Kernels& kernels, ThreadPool& pool, const MatmulArgs& args);

// A weight matrix rewritten once (at load) for this table's fastest matmul: an owned 64-byte
// aligned buffer and its layout tag. Empty (data == nullptr) when the table has no repacked
// kernels for `wtype`; the caller then keeps using the GGUF rows.
struct PackedFree {
  void operator()(uint8_t* p) const;
};
struct PackedWeight {
  std::unique_ptr<uint8_t, PackedFree> data;
  size_t bytes = 0;
  WeightLayout layout = WeightLayout::Gguf;
};
// `w`: n rows of k elements of `wtype`, row i at w + i * w_row_bytes (as MatmulArgs).
PackedWeight repack_for_matmul(const Kernels& kernels, DType wtype, const void* w, size_t w_row_bytes, int64_t n,
                               int64_t k);

// Dot product of two float vectors (used by attention), with the table's SIMD.
float dot_f32(const Kernels& kernels, const float* a, const float* b, int64_t n);
// In-place softmax of a float row with the table's SIMD: exp by Cephes' polynomial (~2 ulp),
// -inf entries give 0. Returns false, leaving the row as it was, when every entry is -inf.
bool softmax_f32(const Kernels& kernels, float* x, int64_t n);
// out = gelu_tanh(gate) · up, torch's tanh approximation with tanh(u) = 1 − 2 / (exp(2u) + 1) and
// the same exp as softmax_f32 (ops::gated_act's formula); out may alias gate or up.
void gelu_tanh_mul_f32(const Kernels& kernels, const float* gate, const float* up, float* out, int64_t n);

}  // namespace edgevl
