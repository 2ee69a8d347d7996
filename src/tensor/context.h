// The engine context: everything the compute layers share, passed explicitly (no globals).
#pragma once
#include <string>

#include "core/thread_pool.h"
#include "kernels/kernels.h"

namespace edgevl {

struct Context {
  explicit Context(int threads, const std::string& isa = "") : kernels(Kernels::select(isa)), pool(threads) {}
  Kernels kernels;
  ThreadPool pool;
};

}  // namespace edgevl
