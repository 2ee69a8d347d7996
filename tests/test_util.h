// Shared helpers for tests: where the golden files live and how to compare tensors.
#pragma once
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace edgevl::test {

// ../shared beside the checkout (overridable with EDGEVL_SHARED for out-of-tree runs).
inline std::string shared_dir() {
  if (const char* e = std::getenv("EDGEVL_SHARED")) return e;
  return EDGEVL_SHARED_DIR;
}
inline std::string golden_hf(const std::string& c) { return shared_dir() + "/golden/hf/" + c; }
inline std::string golden_llamacpp(const std::string& c) { return shared_dir() + "/golden/llamacpp/" + c; }

// The bytes of a .gz file (the fixtures keep tokenizer.json compressed); "" if gzip fails.
inline std::string gunzip(const std::string& path) {
  const std::string cmd = "gzip -dc '" + path + "'";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return "";
  std::string out;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

// max|a - b| / max|b|, the goldens' relative error.
inline double rel_error(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num = std::max(num, (double)std::fabs(a[i] - b[i]));
    den = std::max(den, (double)std::fabs(b[i]));
  }
  return den == 0 ? num : num / den;
}
inline double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  return rel_error(a.data(), b.data(), std::min(a.size(), b.size()));
}

}  // namespace edgevl::test
