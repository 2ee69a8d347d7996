#include "core/thread_pool.h"

#include <algorithm>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define EV_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define EV_CPU_RELAX() asm volatile("yield")
#else
#define EV_CPU_RELAX() ((void)0)
#endif

namespace edgevl {

namespace {
constexpr int kSpinIterations = 1 << 14;
constexpr int64_t kMaxTasksPerJob = 0xFFFF;  // the task fields of the claim word are 16 bits
}  // namespace

ThreadPool::ThreadPool(int num_threads) : num_threads_(std::max(1, num_threads)) {
  for (int i = 1; i < num_threads_; ++i) threads_.emplace_back([this] { worker(); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.fetch_add(1);
  generation_.notify_all();
  for (auto& t : threads_) t.join();
}

int64_t ThreadPool::claim(uint32_t epoch) {
  uint64_t v = claim_.load(std::memory_order_acquire);
  for (;;) {
    if (uint32_t(v >> 32) != epoch) return -1;
    const uint64_t next = v & 0xFFFF, n = (v >> 16) & 0xFFFF;
    if (next >= n) return -1;
    if (claim_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel, std::memory_order_acquire))
      return int64_t(next);
  }
}

// Runs tasks of job `epoch` until none is left. A successful claim means the job is not over
// (its caller waits for every task), so fn_ still points at that job's function.
void ThreadPool::drain(uint32_t epoch) {
  for (int64_t t = claim(epoch); t >= 0; t = claim(epoch)) {
    (*fn_.load(std::memory_order_acquire))(t);
    done_.fetch_add(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::worker() {
  uint32_t seen = 0;
  for (;;) {
    uint32_t g = generation_.load(std::memory_order_acquire);
    for (int spin = 0; g == seen && spin < kSpinIterations; ++spin) {
      EV_CPU_RELAX();
      g = generation_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      // seq_cst pairs with the caller's store-then-load: either it sees a sleeper and notifies,
      // or this thread sees the new generation here and in wait()'s own comparison.
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      generation_.wait(seen, std::memory_order_seq_cst);
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
      continue;
    }
    seen = g;
    if (stop_.load()) return;
    drain(g);
  }
}

void ThreadPool::run_tasks(int64_t num_tasks, const std::function<void(int64_t)>& fn) {
  if (num_tasks <= 0) return;
  if (num_threads_ == 1 || num_tasks == 1) {
    for (int64_t t = 0; t < num_tasks; ++t) fn(t);
    return;
  }
  if (num_tasks > kMaxTasksPerJob) {  // group tasks so the count fits the claim word
    const int64_t per = (num_tasks + kMaxTasksPerJob - 1) / kMaxTasksPerJob;
    run_tasks((num_tasks + per - 1) / per, [&](int64_t g) {
      for (int64_t t = g * per; t < std::min(num_tasks, (g + 1) * per); ++t) fn(t);
    });
    return;
  }
  const uint32_t epoch = ++epoch_ == 0 ? ++epoch_ : epoch_;  // 0 is the workers' initial "seen"
  fn_.store(&fn, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  claim_.store((uint64_t(epoch) << 32) | (uint64_t(num_tasks) << 16), std::memory_order_release);
  generation_.store(epoch, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) generation_.notify_all();
  drain(epoch);
  // Only tasks already claimed by a worker remain; wait for them.
  for (int spin = 0; done_.load(std::memory_order_acquire) != num_tasks; ++spin) {
    if (spin < kSpinIterations) {
      EV_CPU_RELAX();
    } else {
      std::this_thread::yield();  // the worker holding a task may be waiting for this core
    }
  }
}

void ThreadPool::run(const std::function<void(int, int)>& fn) {
  if (num_threads_ == 1) {
    fn(0, 1);
    return;
  }
  run_tasks(num_threads_, [&](int64_t i) { fn(int(i), num_threads_); });
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  int64_t chunks = (n + grain - 1) / grain;
  if (num_threads_ == 1 || chunks == 1) {
    fn(0, n);
    return;
  }
  run([&](int t, int nt) {
    int64_t per = (chunks + nt - 1) / nt;
    int64_t b = std::min(n, t * per * grain), e = std::min(n, (t + 1) * per * grain);
    if (b < e) fn(b, e);
  });
}

int default_thread_count() {
  unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : static_cast<int>(hc);
}

}  // namespace edgevl
