// Internal: the packed-panel path's entry points per ISA (see PanelKernels in table.h).
#pragma once
#include "kernels/table.h"

namespace edgevl::kern {

// Fills `t.w[slot].panel` for every weight type the AVX-512 VNNI panel kernels handle.
void install_panels_avx512(KernelTable& t);

}  // namespace edgevl::kern

namespace edgevl::kern {
// Direct (few-row) kernels for the K-quants (kquants_avx512.cpp).
void install_kquants_avx512(KernelTable& t);
}  // namespace edgevl::kern
