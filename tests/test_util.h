// Shared helpers for tests: where the golden files live and how to compare tensors.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <system_error>
#include <vector>

#include <unistd.h>

#include <gtest/gtest.h>

#include "core/error.h"
#include "io/tensor_ref.h"
#include "kernels/kernels.h"

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

// A fresh folder under the system temp directory, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("edgevl_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << path;
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// `f` must throw edgevl::Error whose one-line message contains `needle` (e.g. the file's name).
inline std::string expect_error(const std::function<void()>& f, const std::string& needle, const std::string& what) {
  try {
    f();
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find(needle), std::string::npos) << what << ": message does not name '" << needle << "': " << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << what << ": multi-line message: " << m;
    return m;
  }
  ADD_FAILURE() << what << ": no error";
  return "";
}

// A golden tensor as float32 (F32, I64 and BOOL tensors).
inline std::vector<float> as_f32(const TensorRef& t) {
  std::vector<float> v(t.numel());
  if (t.dtype == DType::F32) {
    std::memcpy(v.data(), t.data, v.size() * 4);
  } else if (t.dtype == DType::I64) {
    for (size_t i = 0; i < v.size(); ++i) {
      int64_t x;
      std::memcpy(&x, t.data + 8 * i, 8);
      v[i] = (float)x;
    }
  } else if (t.dtype == DType::BOOL) {
    for (size_t i = 0; i < v.size(); ++i) v[i] = t.data[i] ? 1.0f : 0.0f;
  } else {
    ADD_FAILURE() << t.name << ": unexpected dtype " << dtype_name(t.dtype);
  }
  return v;
}

inline std::vector<int32_t> as_ids(const TensorRef& t) {
  std::vector<float> f = as_f32(t);
  return std::vector<int32_t>(f.begin(), f.end());
}

// Every kernel set this CPU runs must meet the bar end to end (the scalar one is the reference).
inline std::vector<std::string> isas() {
  std::vector<std::string> r = {"scalar"};
  const CpuFeatures& f = cpu_features();
  if (f.avx2 && f.fma && f.f16c) r.push_back("avx2");
  if (f.avx512f && f.avx512bw && f.avx512vl) r.push_back("avx512");
  if (f.neon) r.push_back("neon");
  return r;
}

}  // namespace edgevl::test
