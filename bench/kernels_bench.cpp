// Kernel micro-benchmarks: matmul at TinyLlama-1.1B and Gemma 4 E2B shapes. m=1 is decode
// (memory-bound: read GB/s of weights is the figure of merit), m=512 is prefill (compute-bound:
// GFLOP/s, counting a multiply-add as 2). Threads: EDGEVL_BENCH_THREADS (default 2); ISA:
// EDGEVL_ISA as usual. The `_packed` cases run on the copy repack_for_matmul makes at load (what
// models use where the table has a repacked layout); the others read the GGUF rows.
//   build-*/edgevl_microbench --benchmark_filter=Matmul
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <random>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/quants.h"

namespace edgevl {
namespace {

int bench_threads() {
  const char* e = std::getenv("EDGEVL_BENCH_THREADS");
  return e ? std::max(1, std::atoi(e)) : 2;
}

ThreadPool& pool() {
  static ThreadPool p(bench_threads());
  return p;
}

void BM_Matmul(benchmark::State& state, DType t, bool packed) {
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  static Kernels kk = Kernels::select();
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.f, 1.f);
  const size_t rb = row_bytes(t, k);
  std::vector<uint8_t> w(n * rb);
  {
    std::vector<float> row(k);
    for (int64_t j = 0; j < n; ++j) {
      for (auto& v : row) v = dist(rng) * 0.02f;
      quantize_row(t, row.data(), w.data() + j * rb, k);
    }
  }
  // Decode reads weights from DRAM (a 1B model is far larger than L3): for m=1, rotate over
  // enough copies of the matrix (>= 96 MB) that each call finds its weights out of cache.
  // EDGEVL_BENCH_HOT=1 keeps one copy (weights from cache: the kernel's compute ceiling).
  const bool hot = std::getenv("EDGEVL_BENCH_HOT") != nullptr;
  // GB/s counts the bytes the kernel streams: the GGUF rows, or the repacked copy.
  std::vector<PackedWeight> ps;
  if (packed) {
    ps.push_back(repack_for_matmul(kk, t, w.data(), rb, n, k));
    if (!ps[0].data) {
      state.SkipWithError("this kernel table has no repacked layout for this type");
      return;
    }
  }
  const size_t bytes = packed ? ps[0].bytes : w.size();
  const size_t copies = m == 1 && !hot ? std::max<size_t>(1, (96u << 20) / bytes + 1) : 1;
  std::vector<std::vector<uint8_t>> ws(packed ? 1 : copies, w);
  while (packed && ps.size() < copies) ps.push_back(repack_for_matmul(kk, t, w.data(), rb, n, k));
  std::vector<float> x(m * k), y(m * n);
  for (auto& v : x) v = dist(rng);
  MatmulArgs a{t, w.data(), rb, n, k, x.data(), k, m, y.data(), n};
  if (packed) a.layout = ps[0].layout;
  size_t c = 0;
  for (auto _ : state) {
    if (packed)
      a.packed = ps[c].data.get();
    else
      a.w = ws[c].data();
    c = (c + 1) % copies;
    matmul(kk, pool(), a);
    benchmark::DoNotOptimize(y.data());
  }
  const double iters = (double)state.iterations();
  state.counters["GB/s"] = benchmark::Counter(iters * (double)bytes, benchmark::Counter::kIsRate,
                                              benchmark::Counter::kIs1000);
  state.counters["GFLOP/s"] = benchmark::Counter(iters * 2.0 * m * n * k * 1e-9, benchmark::Counter::kIsRate);
  state.SetLabel(std::string(isa_name(kk.isa())) + " t=" + std::to_string(pool().size()));
}

void shapes(benchmark::internal::Benchmark* b) {
  for (int64_t m : {1, 512})
    for (auto nk : {std::pair<int64_t, int64_t>{2048, 2048}, {5632, 2048}, {2048, 5632}})
      b->Args({m, nk.first, nk.second});
  b->Args({1, 32000, 2048});  // the output layer (decode reads it every token)
  // Gemma 4 E2B (D = 1536, FFN 6144): q_proj, gate/up, down.
  for (int64_t m : {1, 512})
    for (auto nk : {std::pair<int64_t, int64_t>{2048, 1536}, {6144, 1536}, {1536, 6144}})
      b->Args({m, nk.first, nk.second});
  b->ArgNames({"m", "n", "k"})->Unit(benchmark::kMicrosecond)->UseRealTime();
}

BENCHMARK_CAPTURE(BM_Matmul, F16, DType::F16, false)->Apply(shapes);
BENCHMARK_CAPTURE(BM_Matmul, Q8_0, DType::Q8_0, false)->Apply(shapes);
BENCHMARK_CAPTURE(BM_Matmul, Q8_0_packed, DType::Q8_0, true)->Apply(shapes);
BENCHMARK_CAPTURE(BM_Matmul, Q4_0, DType::Q4_0, false)->Apply(shapes);
BENCHMARK_CAPTURE(BM_Matmul, Q4_0_packed, DType::Q4_0, true)->Apply(shapes);
BENCHMARK_CAPTURE(BM_Matmul, Q4_K, DType::Q4_K, false)->Apply(shapes);
BENCHMARK_CAPTURE(BM_Matmul, Q6_K, DType::Q6_K, false)->Apply(shapes);  // output.weight of Q4_0 GGUFs

// Load-time cost of repack_for_matmul (single-threaded, as the loader runs it), GB/s of weights;
// it includes the first touch of the fresh buffer (page faults), which the loader pays too.
void BM_Repack(benchmark::State& state, DType t) {
  static Kernels kk = Kernels::select();
  const int64_t n = state.range(0), k = state.range(1);
  const size_t rb = row_bytes(t, k);
  std::vector<uint8_t> w(n * rb);
  std::vector<float> row(k);
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.f, 1.f);
  for (int64_t j = 0; j < n; ++j) {
    for (auto& v : row) v = dist(rng);
    quantize_row(t, row.data(), w.data() + j * rb, k);
  }
  for (auto _ : state) {
    PackedWeight p = repack_for_matmul(kk, t, w.data(), rb, n, k);
    if (!p.data) {
      state.SkipWithError("this kernel table has no repacked layout for this type");
      return;
    }
    benchmark::DoNotOptimize(p.data.get());
  }
  state.counters["GB/s"] = benchmark::Counter((double)state.iterations() * (double)w.size(),
                                              benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}
BENCHMARK_CAPTURE(BM_Repack, Q8_0, DType::Q8_0)->Args({6144, 1536})->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Repack, Q4_0, DType::Q4_0)->Args({6144, 1536})->Unit(benchmark::kMillisecond);

void BM_DotF32(benchmark::State& state) {
  static Kernels kk = Kernels::select();
  const int64_t n = state.range(0);
  std::vector<float> a(n, 1.0f), b(n, 0.5f);
  for (auto _ : state) benchmark::DoNotOptimize(dot_f32(kk, a.data(), b.data(), n));
  state.SetBytesProcessed(state.iterations() * n * 8);
}
BENCHMARK(BM_DotF32)->Arg(64)->Arg(128)->Arg(4096);

}  // namespace
}  // namespace edgevl

BENCHMARK_MAIN();
