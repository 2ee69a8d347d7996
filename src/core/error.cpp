#include "core/error.h"

#include <cstdio>
#include <cstdlib>

namespace edgevl {

void assert_failed(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "edgevl: internal error: %s (%s:%d)\n", expr, file, line);
  std::abort();
}

}  // namespace edgevl
