// GGUF block formats, bit-exact with ggml's layouts (ggml-common.h) and its reference
// quantizers (quantize_row_*_ref), so files we write load in llama.cpp and files it writes
// load here. These are the plain reference routines; fast paths live in the ISA files.
#pragma once
#include <cstdint>

#include "kernels/dtype.h"

namespace edgevl {

// Reference quantization of one row of n floats (n a multiple of the block size) into `out`.
// Valid for every quantized DType plus F32/F16/BF16 (plain conversion). Throws Error for
// types that cannot be quantized to.
void quantize_row(DType t, const float* x, void* out, int64_t n);
// Dequantize / convert one row of n elements of type t to float.
void dequantize_row(DType t, const void* x, float* out, int64_t n);

// The type a row of `cols` elements gets when `target` is asked for: target itself when the row
// fits its block, else llama-quantize's fallback (Q4_K->Q5_0, Q5_K->Q5_1, Q6_K->Q8_0, others and
// anything still not fitting -> F16).
DType type_for_row(DType target, int64_t cols);

}  // namespace edgevl
