// A fixed pool of worker threads, sized once by `-t`, owned by the engine context (no globals).
// Work is handed out as numbered tasks that any thread may claim; the caller claims tasks too and
// returns when every task is done. It never waits for a worker merely to wake up: on a shared
// machine (more runnable threads than cores) a descheduled worker would otherwise stall every
// one of the few hundred jobs of a decode step for a scheduler time slice. A worker that wakes
// late finds its job's tasks taken (each job has an epoch) and goes back to waiting. Workers spin
// briefly before sleeping, since wake-up latency matters more than idle CPU.
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

  // Calls fn(task) once for every task in [0, num_tasks), spread over the pool's threads (the
  // caller's included); returns when all have returned. Calls may run concurrently. Not
  // reentrant: fn must not call back into the same pool.
  void run_tasks(int64_t num_tasks, const std::function<void(int64_t task)>& fn);

  // Calls fn(i, num_threads) once for every i in [0, num_threads). Each index is called exactly
  // once, but not necessarily on a thread of its own: a late worker's share is run by another.
  void run(const std::function<void(int index, int num_threads)>& fn);

  // Splits [0, n) into contiguous chunks, one per thread (chunk multiple of `grain`).
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn);

 private:
  void worker();
  // Claims the next task of job `epoch`; -1 when the job has none left (or is over).
  int64_t claim(uint32_t epoch);
  void drain(uint32_t epoch);

  int num_threads_;
  std::vector<std::thread> threads_;
  uint32_t epoch_ = 0;  // the caller's count of jobs published
  // (epoch << 32) | (num_tasks << 16) | next task: one word, so a stale claim can never succeed.
  alignas(64) std::atomic<uint64_t> claim_{0};
  alignas(64) std::atomic<int64_t> done_{0};
  std::atomic<const std::function<void(int64_t)>*> fn_{nullptr};
  alignas(64) std::atomic<uint32_t> generation_{0};  // wake-up signal: the latest epoch
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
};

int default_thread_count();

}  // namespace edgevl
