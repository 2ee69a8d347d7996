// Errors: the library reports bad input by throwing edgevl::Error with a one-line message that
// names the operation and the problem ("gguf: model.gguf: tensor 'blk.3.attn_q' extends past end
// of file"). Front doors (CLI, C API, server) catch it, print it and exit non-zero; nothing in the
// library aborts on bad input. Asserts (EV_ASSERT) are only for programmer errors.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace edgevl {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

template <typename... Args>
std::string str_cat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

template <typename... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(str_cat(std::forward<Args>(args)...));
}

[[noreturn]] void assert_failed(const char* expr, const char* file, int line);

}  // namespace edgevl

#define EV_CHECK(cond, ...)                 \
  do {                                      \
    if (!(cond)) ::edgevl::fail(__VA_ARGS__); \
  } while (0)

#define EV_ASSERT(cond) \
  do {                  \
    if (!(cond)) ::edgevl::assert_failed(#cond, __FILE__, __LINE__); \
  } while (0)
