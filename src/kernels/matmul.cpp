// The matmul driver: converts the activations once per call into the weight type's partner
// format, then hands (activation rows x weight rows) tiles to the table's micro-kernel. Tiles are
// handed out dynamically (an atomic counter), since on a shared machine threads run unevenly.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/error.h"
#include "kernels/kernels.h"
#include "kernels/table.h"

namespace edgevl {

namespace {

// Scratch for converted activations. thread_local rather than per-call allocation: a decode
// step makes hundreds of matmul calls and the buffer only ever grows to the largest one.
std::vector<uint8_t>& act_scratch() {
  thread_local std::vector<uint8_t> buf;
  return buf;
}
std::vector<uint8_t>& act_panel_scratch() {
  thread_local std::vector<uint8_t> buf;
  return buf;
}
// Per-thread weight panel (one group of kPanelRows rows, unpacked); 64-byte aligned.
uint8_t* panel_scratch(size_t bytes) {
  thread_local std::vector<uint8_t> buf;
  if (buf.size() < bytes + 64) buf.resize(bytes + 64);
  return reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(buf.data()) + 63) & ~uintptr_t(63));
}

void run_tasks(ThreadPool& pool, int64_t num_tasks, const std::function<void(int64_t)>& task) {
  pool.run_tasks(num_tasks, task);
}

// The packed path: each group of kern::kPanelRows weight rows is unpacked once (per call) and
// multiplied with all m activation rows while it sits in L1/L2.
void matmul_panel(const KernelTable& t, const kern::PanelKernels& pk, ThreadPool& pool, const MatmulArgs& a,
                  const uint8_t* act, size_t act_stride) {
  const uint8_t* ap = act;
  size_t ap_stride = act_stride;
  if (pk.act_convert) {
    ap_stride = (pk.act_row_bytes(a.k) + 63) & ~size_t(63);
    std::vector<uint8_t>& buf = act_panel_scratch();
    if (buf.size() < a.m * ap_stride + 64) buf.resize(a.m * ap_stride + 64);
    uint8_t* dst = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(buf.data()) + 63) & ~uintptr_t(63));
    auto convert = [&](int64_t b, int64_t e) {
      pk.act_convert(a.k, act + b * act_stride, act_stride, e - b, dst + b * ap_stride, ap_stride);
    };
    if (a.m * a.k >= (1 << 16) && pool.size() > 1) {
      pool.parallel_for(a.m, 1, convert);
    } else {
      convert(0, a.m);
    }
    ap = dst;
  }
  const int64_t R = kern::kPanelRows;
  const int64_t num_panels = (a.n + R - 1) / R;
  const size_t pbytes = pk.panel_bytes(a.k);
  const auto* w = static_cast<const uint8_t*>(a.w);
  run_tasks(pool, num_panels, [&](int64_t p) {
    const int rows = (int)std::min<int64_t>(R, a.n - p * R);
    uint8_t* panel = panel_scratch(pbytes);
    pk.pack(a.k, w + p * R * a.w_row_bytes, a.w_row_bytes, rows, panel);
    pk.kernel(a.k, panel, ap, ap_stride, a.m, a.y + p * R, a.ldy, rows);
  });
}

// Weights repacked at load (repack_for_matmul): activations converted as for panels, then tasks
// of a few consecutive row groups (consecutive so each thread streams contiguous memory).
void matmul_packed(const kern::PackedKernels& pk, ThreadPool& pool, const MatmulArgs& a, const uint8_t* act,
                   size_t act_stride) {
  const size_t ap_stride = (pk.act_row_bytes(a.k) + 63) & ~size_t(63);
  std::vector<uint8_t>& buf = act_panel_scratch();
  if (buf.size() < a.m * ap_stride + 64) buf.resize(a.m * ap_stride + 64);
  uint8_t* ap = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(buf.data()) + 63) & ~uintptr_t(63));
  auto convert = [&](int64_t b, int64_t e) {
    pk.act_convert(a.k, act + b * act_stride, act_stride, e - b, ap + b * ap_stride, ap_stride);
  };
  if (a.m * a.k >= (1 << 16) && pool.size() > 1) {
    pool.parallel_for(a.m, 1, convert);
  } else {
    convert(0, a.m);
  }
  const int64_t R = kern::kPanelRows;
  const int64_t groups = (a.n + R - 1) / R;
  const size_t gbytes = pk.group_bytes(a.k);
  // Decode: ~4 tasks per thread (fewer claims, longer streams); prefill: one group per task.
  const int64_t per = a.m >= 4 ? 1 : std::max<int64_t>(1, groups / (int64_t(pool.size()) * 4));
  const auto* w = static_cast<const uint8_t*>(a.packed);
  run_tasks(pool, (groups + per - 1) / per, [&](int64_t t) {
    for (int64_t g = t * per; g < std::min(groups, (t + 1) * per); ++g) {
      const int rows = (int)std::min<int64_t>(R, a.n - g * R);
      pk.kernel(a.k, w + g * gbytes, ap, ap_stride, a.m, a.y + g * R, a.ldy, rows);
    }
  });
}

constexpr int64_t kMaxRowsPerTile = 64;  // activation rows per task (a cache-sized panel)

}  // namespace

void matmul(const Kernels& kernels, ThreadPool& pool, const MatmulArgs& a) {
  const int slot = kern::weight_slot(a.wtype);
  EV_CHECK(slot >= 0, "matmul: weight type ", dtype_name(a.wtype), " is not supported");
  const DTypeInfo& winfo = dtype_info_or_die(a.wtype);
  EV_CHECK(a.k > 0 && a.k % winfo.block_size == 0, "matmul: k=", a.k, " is not a multiple of ", winfo.name,
           "'s block size ", winfo.block_size);
  EV_ASSERT(a.m >= 0 && a.n >= 0 && a.ldx >= a.k && a.ldy >= a.n);
  const KernelTable& t = kernels.table();
  const kern::WeightKernels& wk = t.w[slot];
  const bool use_packed = a.packed && a.layout != WeightLayout::Gguf && wk.packed.layout == a.layout;
  EV_CHECK(use_packed || a.w, "matmul: weights repacked for another kernel table and no GGUF rows given");
  EV_ASSERT(!a.w || a.w_row_bytes >= row_bytes(a.wtype, a.k));
  if (a.m == 0 || a.n == 0) return;

  const DTypeInfo& ainfo = dtype_info_or_die(wk.act_type);
  EV_CHECK(a.k % ainfo.block_size == 0, "matmul: k=", a.k, " is not a multiple of ", ainfo.name,
           "'s block size ", ainfo.block_size, " (activations for ", winfo.name, " weights)");

  // 1. Activations in the partner format, once per call (not once per weight row).
  const uint8_t* act;
  size_t act_stride;
  if (wk.act_type == DType::F32) {
    act = reinterpret_cast<const uint8_t*>(a.x);
    act_stride = a.ldx * sizeof(float);
  } else {
    act_stride = row_bytes(wk.act_type, a.k);
    std::vector<uint8_t>& buf = act_scratch();
    if (buf.size() < a.m * act_stride + 64) buf.resize(a.m * act_stride + 64);
    uint8_t* dst = buf.data();
    auto convert = [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) wk.quantize_act(a.x + i * a.ldx, dst + i * act_stride, a.k);
    };
    if (a.m * a.k >= (1 << 16) && pool.size() > 1) {
      pool.parallel_for(a.m, 1, convert);
    } else {
      convert(0, a.m);
    }
    act = dst;
  }

  if (use_packed) {
    matmul_packed(wk.packed, pool, a, act, act_stride);
    return;
  }
  if (wk.panel.pack && a.m >= wk.panel.min_m) {
    matmul_panel(t, wk.panel, pool, a, act, act_stride);
    return;
  }

  // 2. Tiles: mb activation rows x nb weight rows. Enough tiles for load balance (~8 per
  // thread), each a multiple of the micro-kernel's tile. Tiles are ordered weight-block-major so
  // a thread's consecutive tiles tend to reuse the weight block it just brought into cache.
  const int mr = t.gemm_mr, nr = t.gemm_nr;
  const int64_t mb = std::min<int64_t>(a.m, kMaxRowsPerTile);
  const int64_t num_mb = (a.m + mb - 1) / mb;
  const int64_t want_tiles = int64_t(pool.size()) * 8;
  int64_t nb = (a.n * num_mb + want_tiles - 1) / want_tiles;
  nb = std::clamp<int64_t>((nb + nr - 1) / nr * nr, nr, 256);
  const int64_t num_nb = (a.n + nb - 1) / nb;
  const int64_t num_tiles = num_mb * num_nb;
  const auto* w = static_cast<const uint8_t*>(a.w);

  auto run_tile = [&](int64_t tile) {
    const int64_t n0 = (tile / num_mb) * nb, m0 = (tile % num_mb) * mb;
    const int64_t n1 = std::min(a.n, n0 + nb), m1 = std::min(a.m, m0 + mb);
    for (int64_t j = n0; j < n1; j += nr) {
      const int nj = (int)std::min<int64_t>(nr, n1 - j);
      for (int64_t i = m0; i < m1; i += mr) {
        const int mi = (int)std::min<int64_t>(mr, m1 - i);
        wk.gemm(a.k, w + j * a.w_row_bytes, a.w_row_bytes, nj, act + i * act_stride, act_stride, mi,
                a.y + i * a.ldy + j, a.ldy);
      }
    }
  };

  run_tasks(pool, num_tiles, run_tile);
}

void PackedFree::operator()(uint8_t* p) const { std::free(p); }

namespace {
// 64-byte aligned; big buffers start on a 2 MiB boundary so transparent huge pages (where the
// system enables them) can back them: decode streams each matrix every token. No
// MADV_HUGEPAGE: with the common defrag=madvise setting that makes load stall on compaction.
std::unique_ptr<uint8_t, PackedFree> alloc_packed(size_t bytes) {
  const size_t align = bytes >= (size_t(2) << 20) ? (size_t(2) << 20) : 64;
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(align, (bytes + align - 1) / align * align));
  EV_CHECK(p, "repack_for_matmul: cannot allocate ", bytes, " bytes");
  return std::unique_ptr<uint8_t, PackedFree>(p);
}
}  // namespace

PackedWeight repack_for_matmul(const Kernels& kernels, DType wtype, const void* w, size_t w_row_bytes, int64_t n,
                               int64_t k) {
  PackedWeight out;
  const int slot = kern::weight_slot(wtype);
  if (slot < 0 || n <= 0 || k <= 0 || k % dtype_info_or_die(wtype).block_size != 0) return out;
  const kern::PackedKernels& pk = kernels.table().w[slot].packed;
  if (pk.layout == WeightLayout::Gguf) return out;
  const int64_t R = kern::kPanelRows;
  const int64_t groups = (n + R - 1) / R;
  const size_t gbytes = pk.group_bytes(k);
  out.bytes = size_t(groups) * gbytes;
  out.data = alloc_packed(out.bytes);
  uint8_t* p = out.data.get();
  out.layout = pk.layout;
  const auto* src = static_cast<const uint8_t*>(w);
  for (int64_t g = 0; g < groups; ++g)
    pk.repack_group(k, src + g * R * w_row_bytes, w_row_bytes, (int)std::min<int64_t>(R, n - g * R), p + g * gbytes);
  return out;
}

float dot_f32(const Kernels& kernels, const float* a, const float* b, int64_t n) {
  return kernels.table().dot_f32(a, b, n);
}

bool softmax_f32(const Kernels& kernels, float* x, int64_t n) { return kernels.table().softmax_f32(x, n); }

void gelu_tanh_mul_f32(const Kernels& kernels, const float* gate, const float* up, float* out, int64_t n) {
  kernels.table().gelu_tanh_mul_f32(gate, up, out, n);
}

}  // namespace edgevl
