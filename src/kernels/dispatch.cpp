// CPU feature detection and the choice of kernel table. Detection runs once; the table is then
// fixed for the engine's life (dispatch "hoisted" to one coarse boundary).
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "kernels/kernels.h"
#include "kernels/table.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#elif defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace edgevl {

namespace {

#if defined(__x86_64__) || defined(_M_X64)
uint64_t xgetbv0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((uint64_t)hi << 32) | lo;
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(_M_X64)
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27);
  const bool has_fma = c & (1u << 12), has_f16c = c & (1u << 29), has_avx = c & (1u << 28);
  // The OS must save the wider registers on context switch (XCR0), or using them corrupts state:
  // bits 1-2 for XMM/YMM, 5-7 for the AVX-512 opmask and ZMM state, 17-18 for AMX tiles.
  const uint64_t xcr0 = osxsave ? xgetbv0() : 0;
  const bool os_avx = (xcr0 & 0x6) == 0x6;
  const bool os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;
  const bool os_amx = (xcr0 & 0x60000) == 0x60000;
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  unsigned b7 = 0, c7 = 0, d7 = 0, a71 = 0;
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b7, c7, d7);
    unsigned bx, cx, dx;
    __cpuid_count(7, 1, a71, bx, cx, dx);
  }
  if (os_avx && has_avx) {
    f.avx2 = b7 & (1u << 5);
    f.fma = has_fma;
    f.f16c = has_f16c;
    f.avxvnni = a71 & (1u << 4);
  }
  if (os_avx512) {
    f.avx512f = b7 & (1u << 16);
    f.avx512bw = b7 & (1u << 30);
    f.avx512vl = b7 & (1u << 31);
    f.avx512vnni = c7 & (1u << 11);
    f.avx512bf16 = a71 & (1u << 5);
  }
  if (os_amx) {
    f.amx_bf16 = d7 & (1u << 22);
    f.amx_int8 = (d7 & (1u << 24)) && (d7 & (1u << 25));
  }
#elif defined(__aarch64__)
  f.neon = true;  // Advanced SIMD is mandatory on AArch64
#if defined(__linux__)
  unsigned long hw = getauxval(AT_HWCAP);
#ifdef HWCAP_ASIMDDP
  f.neon_dotprod = hw & HWCAP_ASIMDDP;
#endif
#endif
#endif
  return f;
}

bool supported(Isa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Isa::Scalar: return true;
#if defined(EDGEVL_HAVE_X86_KERNELS)
    case Isa::Avx2: return f.avx2 && f.fma && f.f16c;
    // The AVX-512 table also uses VNNI (vpdpbusd) throughout; CPUs with AVX-512 but without
    // VNNI (Skylake-X) get the AVX2 table.
    case Isa::Avx512: return f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni && f.fma && f.f16c;
#endif
#if defined(EDGEVL_HAVE_NEON_KERNELS)
    case Isa::Neon: return f.neon && f.neon_dotprod;
#endif
    default: return false;
  }
}

const KernelTable& table_for(Isa isa) {
  switch (isa) {
#if defined(EDGEVL_HAVE_X86_KERNELS)
    case Isa::Avx2: return kern::avx2_table();
    case Isa::Avx512: return kern::avx512_table();
#endif
#if defined(EDGEVL_HAVE_NEON_KERNELS)
    case Isa::Neon: return kern::neon_table();
#endif
    default: return kern::scalar_table();
  }
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Neon: return "neon";
  }
  return "unknown";
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

Kernels Kernels::select(const std::string& isa_override) {
  std::string want = isa_override;
  if (want.empty()) {
    if (const char* e = std::getenv("EDGEVL_ISA")) want = e;
  }
  Isa isa = Isa::Scalar;
  if (want.empty() || want == "auto") {
    for (Isa c : {Isa::Avx512, Isa::Avx2, Isa::Neon}) {
      if (supported(c)) {
        isa = c;
        break;
      }
    }
  } else {
    bool found = false;
    for (Isa c : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon}) {
      if (want == isa_name(c)) {
        isa = c;
        found = true;
      }
    }
    EV_CHECK(found, "kernels: unknown ISA '", want, "' (expected scalar, avx2, avx512, neon or auto)");
    EV_CHECK(supported(isa), "kernels: ISA '", want, "' is not supported by this CPU or build");
  }
  Kernels k;
  k.isa_ = isa;
  k.table_ = &table_for(isa);
  return k;
}

}  // namespace edgevl
