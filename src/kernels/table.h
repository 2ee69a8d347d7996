// The kernel table (internal to kernels/): one instance per ISA, chosen once by Kernels::select.
// Every entry has a scalar reference (kernels_scalar.cpp); an ISA table starts as a copy of the
// scalar one and overrides what it accelerates, so a missing SIMD kernel is never a crash.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/dtype.h"
#include "kernels/kernels.h"

namespace edgevl::kern {

// Weight types matmul accepts, as dense slots for the table.
enum WeightSlot : int { kF32, kF16, kBF16, kQ4_0, kQ4_1, kQ5_0, kQ5_1, kQ8_0, kQ4_K, kQ5_K, kQ6_K, kNumSlots };
int weight_slot(DType t);  // -1 if matmul does not take this weight type

// Converts one activation row of k floats into the partner format.
using QuantizeActFn = void (*)(const float* x, void* out, int64_t k);
// Dot product of one weight row with one converted activation row, both of k elements.
using VecDotFn = float (*)(int64_t k, const void* w, const void* a);
// Micro-kernel: y[i * ldy + j] = dot(a row i, w row j) for i < mr, j < nr. Weight rows are
// w_stride bytes apart, converted activation rows a_stride bytes apart. The caller keeps
// mr <= KernelTable::gemm_mr and nr <= gemm_nr so a kernel can hold its tile in registers.
using GemmFn = void (*)(int64_t k, const void* w, size_t w_stride, int nr, const void* a, size_t a_stride, int mr,
                        float* y, int64_t ldy);

// The packed ("panel") path for many activation rows, used when m >= min_m. Per call the
// activations are converted once more, from the partner format into an int8 row plus per
// sub-block scale terms (ActConvertFn); each group of kPanelRows weight rows is unpacked once into
// a panel whose bytes are interleaved so one 64-byte vector holds 4 consecutive elements of all 16
// rows (PackFn); a micro-kernel then runs every activation row against the panel with the
// vector's lanes = weight rows, which needs no horizontal sums (PanelKernelFn).
constexpr int kPanelRows = 16;
using PackFn = void (*)(int64_t k, const void* w, size_t w_stride, int rows, void* panel);
using ActConvertFn = void (*)(int64_t k, const void* act, size_t act_stride, int64_t rows, void* out, size_t out_stride);
using PanelKernelFn = void (*)(int64_t k, const void* panel, const void* act, size_t act_stride, int64_t m, float* y,
                               int64_t ldy, int rows);
struct PanelKernels {
  PackFn pack = nullptr;             // nullptr: no panel path for this weight type
  size_t (*panel_bytes)(int64_t k) = nullptr;
  ActConvertFn act_convert = nullptr;  // nullptr: the kernel reads the partner-format rows directly
  size_t (*act_row_bytes)(int64_t k) = nullptr;
  PanelKernelFn kernel = nullptr;
  int64_t min_m = 1;
};

// Kernels for weights repacked at load time (repack_for_matmul): rows are rewritten in groups of
// kPanelRows into `group_bytes(k)` bytes each (groups contiguous, the last padded with zero rows).
// Activations go through act_convert as for panels, then `kernel` runs m activation rows against
// one group (any m, decode included), with the PanelKernelFn signature.
struct PackedKernels {
  WeightLayout layout = WeightLayout::Gguf;  // Gguf: none
  size_t (*group_bytes)(int64_t k) = nullptr;
  void (*repack_group)(int64_t k, const void* w, size_t w_stride, int rows, void* out) = nullptr;
  ActConvertFn act_convert = nullptr;
  size_t (*act_row_bytes)(int64_t k) = nullptr;
  PanelKernelFn kernel = nullptr;
};

struct WeightKernels {
  DType act_type = DType::F32;  // what activations are converted to for this weight type
  QuantizeActFn quantize_act = nullptr;
  VecDotFn vec_dot = nullptr;
  GemmFn gemm = nullptr;
  PanelKernels panel;
  PackedKernels packed;
};

}  // namespace edgevl::kern

namespace edgevl {

// Declared (opaque) in kernels.h.
struct KernelTable {
  Isa isa = Isa::Scalar;
  kern::WeightKernels w[kern::kNumSlots];
  float (*dot_f32)(const float* a, const float* b, int64_t n) = nullptr;
  // In-place softmax of one row (-inf entries become 0); false (row untouched) when every entry
  // is -inf.
  bool (*softmax_f32)(float* x, int64_t n) = nullptr;
  // out = gelu_tanh(gate) * up (out may alias gate or up).
  void (*gelu_tanh_mul_f32)(const float* gate, const float* up, float* out, int64_t n) = nullptr;
  int gemm_mr = 4, gemm_nr = 4;  // largest tile the gemm entries accept
};

}  // namespace edgevl

namespace edgevl::kern {

const KernelTable& scalar_table();
// ISA tables; each is defined only in builds that compile that ISA's files (see dispatch.cpp).
const KernelTable& avx2_table();
const KernelTable& avx512_table();
const KernelTable& neon_table();

// A GemmFn built from a VecDotFn: the generic fallback the scalar table uses.
template <VecDotFn Dot>
void gemm_from_dot(int64_t k, const void* w, size_t w_stride, int nr, const void* a, size_t a_stride, int mr,
                   float* y, int64_t ldy) {
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j)
      y[i * ldy + j] = Dot(k, static_cast<const uint8_t*>(w) + j * w_stride, static_cast<const uint8_t*>(a) + i * a_stride);
}

}  // namespace edgevl::kern
