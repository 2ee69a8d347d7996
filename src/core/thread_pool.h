// A fixed pool of worker threads, sized once by `-t`, owned by the engine context (no globals).
// run(fn) calls fn(thread_index, num_threads) on every thread, the caller being thread 0, and
// returns when all are done. Workers spin briefly before sleeping: a decode step issues a few
// hundred small jobs, so wake-up latency matters more than idle CPU.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace edgevl {

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return num_threads_; }
  void run(const std::function<void(int thread, int num_threads)>& fn);

  // Splits [0, n) into contiguous chunks, one per thread (chunk multiple of `grain`).
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn);

 private:
  void worker(int index);

  int num_threads_;
  std::vector<std::thread> threads_;
  const std::function<void(int, int)>* job_ = nullptr;
  std::atomic<uint32_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
};

int default_thread_count();

}  // namespace edgevl
