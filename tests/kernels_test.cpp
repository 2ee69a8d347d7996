// Kernel tests: (a) the reference quantizers reproduce llama-quantize's bytes on real GGUF files,
// (b) every SIMD table agrees with the scalar table over many shapes, (c) round-trip error bounds.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.h"
#include "core/fp16.h"
#include "io/gguf.h"
#include "kernels/kernels.h"
#include "kernels/quants.h"
#include "kernels/table.h"  // internal: to compare activation quantizers across tables
#include "test_util.h"

namespace edgevl {
namespace {

std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// ---- (a) bit-exactness against llama.cpp's files ----

struct GoldenCase {
  const char* name;
  const char* type;
};

void check_file_against_f32(const std::string& dir, const std::string& cname, const std::string& type) {
  const std::string qpath = dir + "/" + cname + "-" + type + ".gguf";
  const std::string fpath = dir + "/" + cname + "-F32.gguf";
  if (!std::filesystem::exists(qpath) || !std::filesystem::exists(fpath)) GTEST_SKIP() << "missing " << qpath;
  auto qf = gguf::File::open(qpath);
  auto ff = gguf::File::open(fpath);
  int checked = 0;
  for (const TensorRef& qt : qf->tensors()) {
    if (qt.dtype == DType::F32) continue;  // norms etc. stay float
    const TensorRef* ft = ff->find_tensor(qt.name);
    ASSERT_NE(ft, nullptr) << qt.name;
    ASSERT_EQ(ft->dtype, DType::F32) << qt.name;
    ASSERT_EQ(ft->shape, qt.shape) << qt.name;
    const int64_t k = qt.shape.back();
    const int64_t rows = qt.numel() / k;
    const size_t rb = row_bytes(qt.dtype, k);
    ASSERT_EQ(rb * rows, qt.nbytes) << qt.name;
    std::vector<uint8_t> out(rb);
    std::vector<float> row(k);
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(row.data(), ft->data + r * k * sizeof(float), k * sizeof(float));
      quantize_row(qt.dtype, row.data(), out.data(), k);
      if (std::memcmp(out.data(), qt.data + r * rb, rb) != 0) {
        size_t at = 0;
        while (out[at] == qt.data[r * rb + at]) ++at;
        FAIL() << type << " file: tensor " << qt.name << " (" << dtype_name(qt.dtype) << ") row " << r
               << " differs at byte " << at << ": ours " << int(out[at]) << ", llama.cpp "
               << int(qt.data[r * rb + at]);
      }
    }
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

class GoldenQuant : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(GoldenQuant, QuantizeRowMatchesLlamaQuantizeBytes) {
  const GoldenCase& c = GetParam();
  check_file_against_f32(test::golden_llamacpp(c.name), c.name, c.type);
}

INSTANTIATE_TEST_SUITE_P(
    Llamacpp, GoldenQuant,
    ::testing::Values(GoldenCase{"llama", "F16"}, GoldenCase{"llama", "Q8_0"}, GoldenCase{"llama", "Q4_0"},
                      GoldenCase{"llama", "Q4_1"}, GoldenCase{"llama", "Q5_0"}, GoldenCase{"llama", "Q5_1"},
                      GoldenCase{"llama", "Q4_K"}, GoldenCase{"llama", "Q5_K"}, GoldenCase{"llama", "Q6_K"},
                      GoldenCase{"llama256", "F16"}, GoldenCase{"llama256", "Q8_0"},
                      GoldenCase{"llama256", "Q4_0"}, GoldenCase{"llama256", "Q4_K"},
                      GoldenCase{"llama256", "Q5_K"}, GoldenCase{"llama256", "Q6_K"}),
    [](const auto& info) { return std::string(info.param.name) + "_" + info.param.type; });

// ---- scalar matmul against a float reference on dequantized weights ----

TEST(KernelsScalar, MatmulMatchesDequantizedReference) {
  Kernels kk = Kernels::select("scalar");
  ThreadPool pool(2);
  const int64_t m = 3, n = 5, k = 512;
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                  DType::Q5_1, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    auto wf = random_floats(n * k, 1), x = random_floats(m * k, 2);
    const size_t rb = row_bytes(t, k);
    std::vector<uint8_t> w(n * rb);
    std::vector<float> wd(n * k);
    for (int64_t j = 0; j < n; ++j) {
      quantize_row(t, wf.data() + j * k, w.data() + j * rb, k);
      dequantize_row(t, w.data() + j * rb, wd.data() + j * k, k);
    }
    std::vector<float> y(m * n), ref(m * n);
    MatmulArgs a{t, w.data(), rb, n, k, x.data(), k, m, y.data(), n};
    matmul(kk, pool, a);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t l = 0; l < k; ++l) s += (double)x[i * k + l] * wd[j * k + l];
        ref[i * n + j] = (float)s;
      }
    // Activation quantization costs ~1/127 per element (8-bit) or 2^-8 (bf16): relative to
    // the output's scale that is below 2%.
    const double tol = (t == DType::F32 || t == DType::F16) ? 1e-5 : 2e-2;
    EXPECT_LT(test::rel_error(y, ref), tol) << dtype_name(t);
  }
}

}  // namespace
}  // namespace edgevl

namespace edgevl {
namespace {

// ---- (b) every SIMD table against the scalar table ----

std::vector<std::string> simd_isas() {
  std::vector<std::string> out;
  for (const char* name : {"avx2", "avx512", "neon"}) {
    try {
      Kernels::select(name);
      out.push_back(name);
    } catch (const Error&) {
    }
  }
  return out;
}

const DType kWeightTypes[] = {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1,
                              DType::Q5_0, DType::Q5_1, DType::Q4_K, DType::Q5_K, DType::Q6_K};

// SIMD vs scalar differ only in float summation order (activations quantize to the same bytes,
// checked below), so the bound is float rounding over k terms, relative to the output's scale.
double simd_tolerance(DType t, int64_t k) {
  (void)t;
  return 2e-6 * std::sqrt((double)k) + 1e-6;
}

struct Weights {
  std::vector<uint8_t> bytes;
  size_t row_bytes = 0;
};
Weights make_weights(DType t, int64_t n, int64_t k, uint32_t seed, size_t pad = 0) {
  Weights w;
  w.row_bytes = row_bytes(t, k) + pad;  // padding exercises w_row_bytes > packed row size
  w.bytes.assign(n * w.row_bytes + 64, 0);
  auto f = random_floats(n * k, seed);
  for (int64_t j = 0; j < n; ++j) quantize_row(t, f.data() + j * k, w.bytes.data() + j * w.row_bytes, k);
  return w;
}

TEST(KernelsSimd, MatmulMatchesScalarAllTypesAndShapes) {
  const auto isas = simd_isas();
  if (isas.empty()) GTEST_SKIP() << "no SIMD table on this machine";
  Kernels ref = Kernels::select("scalar");
  ThreadPool pool(2);
  const int64_t ms[] = {1, 2, 3, 7, 16, 33};
  const int64_t ns[] = {1, 15, 16, 34};
  for (DType t : kWeightTypes) {
    const int64_t bs = dtype_info_or_die(t).block_size;
    const int64_t kb = std::max<int64_t>(bs, 256);  // K-quant activations need 256 anyway
    std::vector<int64_t> ks = {kb, 2 * kb, 3 * kb};
    if (bs < kb) ks.push_back(kb + bs);  // an odd number of blocks (decode kernels pair them)
    for (int64_t k : ks) {
      for (int64_t n : ns) {
        Weights w = make_weights(t, n, k, 11 + n, n % 2 ? 8 : 0);
        for (int64_t m : ms) {
          const int64_t ldx = k + 3, ldy = n + 5;  // strided rows
          auto x = random_floats(m * ldx, 7 + m);
          std::vector<float> y0(m * ldy, -1.f);
          MatmulArgs a{t, w.bytes.data(), w.row_bytes, n, k, x.data(), ldx, m, y0.data(), ldy};
          matmul(ref, pool, a);
          for (const auto& isa : isas) {
            Kernels kk = Kernels::select(isa);
            std::vector<float> y1(m * ldy, -1.f);
            a.y = y1.data();
            matmul(kk, pool, a);
            double err = 0, scale = 0;
            for (int64_t i = 0; i < m; ++i)
              for (int64_t j = 0; j < n; ++j) {
                err = std::max(err, (double)std::fabs(y1[i * ldy + j] - y0[i * ldy + j]));
                scale = std::max(scale, (double)std::fabs(y0[i * ldy + j]));
              }
            EXPECT_LE(err, simd_tolerance(t, k) * scale + 1e-30)
                << isa << " " << dtype_name(t) << " m=" << m << " n=" << n << " k=" << k;
            // Padding between output rows is never written.
            for (int64_t i = 0; i < m; ++i)
              for (int64_t j = n; j < ldy && i * ldy + j < (int64_t)y1.size(); ++j)
                ASSERT_EQ(y1[i * ldy + j], -1.f) << isa << " " << dtype_name(t) << " wrote past n";
          }
        }
      }
    }
  }
}

// Weights repacked at load (repack_for_matmul) give the GGUF-layout result of the same table and
// the scalar reference's within its tolerance: n not a multiple of the 16-row group (and enough
// groups that decode tasks take several), odd and even block counts, decode (m = 1) and
// panel-sized m with a remainder tile. Tables without a repacked layout return empty; the
// AVX-512 table must repack Q4_0 and Q8_0 (so neither silently falls back to the GGUF rows).
TEST(KernelsSimd, RepackedMatmulMatchesGgufLayout) {
  Kernels ref = Kernels::select("scalar");
  EXPECT_EQ(repack_for_matmul(ref, DType::Q4_0, nullptr, 0, 16, 32).data, nullptr);
  ThreadPool pool(2);
  int covered = 0;
  for (const auto& isa : simd_isas()) {
    Kernels kk = Kernels::select(isa);
    for (DType t : kWeightTypes) {
      int repacked = 0;
      for (int64_t k : {32, 64, 96, 256, 352, 2048}) {
        if (k % dtype_info_or_die(t).block_size != 0) continue;
        for (int64_t n : {1, 15, 16, 17, 40, 67, 300}) {
          if (n == 300 && k > 256) continue;  // keeps the scalar reference quick
          Weights w = make_weights(t, n, k, 5 + n, 0);
          PackedWeight p = repack_for_matmul(kk, t, w.bytes.data(), w.row_bytes, n, k);
          if (!p.data) continue;
          ++covered;
          ++repacked;
          if (p.layout == WeightLayout::Q4_0x16 || p.layout == WeightLayout::Q8_0x16) {
            // The GGUF bytes of whole 16-row groups and pairs of blocks (nothing else is added).
            const int64_t nb2 = (k / 32 + 1) / 2 * 2;
            EXPECT_EQ(p.bytes, size_t((n + 15) / 16 * 16) * row_bytes(t, nb2 * 32)) << isa << " " << dtype_name(t);
          }
          for (int64_t m : {1, 2, 3, 5, 8, 13, 16, 33}) {
            const int64_t ldx = k + 1, ldy = n + 2;
            auto x = random_floats(m * ldx, 3 + m);
            std::vector<float> y0(m * ldy, -1.f), y1(m * ldy, -1.f), yr(m * ldy, -1.f);
            MatmulArgs a{t, w.bytes.data(), w.row_bytes, n, k, x.data(), ldx, m, y0.data(), ldy};
            matmul(kk, pool, a);
            a.y = yr.data();
            matmul(ref, pool, a);  // the packed pointer is ignored by a table without the layout
            a.packed = p.data.get();
            a.layout = p.layout;
            a.y = yr.data();
            matmul(ref, pool, a);
            a.w = nullptr;  // the repacked copy alone suffices for its own table
            a.y = y1.data();
            matmul(kk, pool, a);
            double err = 0, err_ref = 0, scale = 0;
            for (int64_t i = 0; i < m; ++i)
              for (int64_t j = 0; j < n; ++j) {
                err = std::max(err, (double)std::fabs(y1[i * ldy + j] - y0[i * ldy + j]));
                err_ref = std::max(err_ref, (double)std::fabs(y1[i * ldy + j] - yr[i * ldy + j]));
                scale = std::max(scale, (double)std::fabs(yr[i * ldy + j]));
              }
            const std::string at = isa + " " + dtype_name(t) + " m=" + std::to_string(m) + " n=" + std::to_string(n) +
                                   " k=" + std::to_string(k);
            EXPECT_LE(err, simd_tolerance(t, k) * scale + 1e-30) << at;
            EXPECT_LE(err_ref, simd_tolerance(t, k) * scale + 1e-30) << at;
            for (int64_t i = 0; i < m; ++i)
              for (int64_t j = n; j < ldy && i * ldy + j < (int64_t)y1.size(); ++j)
                ASSERT_EQ(y1[i * ldy + j], -1.f) << at << ": wrote past n";
          }
        }
      }
      if (isa == "avx512" && (t == DType::Q4_0 || t == DType::Q8_0)) {
        EXPECT_GT(repacked, 0) << dtype_name(t);
      }
    }
  }
  if (covered == 0) GTEST_SKIP() << "no table with a repacked layout on this machine";
}

TEST(KernelsSimd, ActivationQuantizersAreByteIdentical) {
  // The SIMD tables quantize activations to the same bytes as the reference (including roundf's
  // ties away from zero), so matmul results differ only by float summation order.
  for (const auto& isa : simd_isas()) {
    Kernels kk = Kernels::select(isa);
    for (DType t : kWeightTypes) {
      const auto& wk = kk.table().w[kern::weight_slot(t)];
      const auto& rk = Kernels::select("scalar").table().w[kern::weight_slot(t)];
      ASSERT_EQ(wk.act_type, rk.act_type);
      const int64_t k = 512;
      auto x = random_floats(k, 3);
      x[5] = 0.5f * x[7];  // exact ties appear in practice (e.g. x = d * (n + 0.5))
      std::vector<uint8_t> a(row_bytes(wk.act_type, k)), b(a.size());
      wk.quantize_act(x.data(), a.data(), k);
      rk.quantize_act(x.data(), b.data(), k);
      EXPECT_EQ(a, b) << isa << " " << dtype_name(t) << " -> " << dtype_name(wk.act_type);
      // A block of zeros and a block with a tie.
      std::vector<float> z(k, 0.f);
      for (int i = 0; i < 32; ++i) z[64 + i] = (i - 16) * 0.5f;
      wk.quantize_act(z.data(), a.data(), k);
      rk.quantize_act(z.data(), b.data(), k);
      EXPECT_EQ(a, b) << isa << " " << dtype_name(t) << " (zeros/ties)";
    }
  }
}

TEST(KernelsSimd, DotF32OddLengthsAndUnalignedPointers) {
  Kernels ref = Kernels::select("scalar");
  auto buf_a = random_floats(1100, 5), buf_b = random_floats(1100, 6);
  for (const auto& isa : simd_isas()) {
    Kernels kk = Kernels::select(isa);
    for (int64_t n : {0, 1, 3, 15, 16, 17, 63, 64, 65, 127, 1000, 1031}) {
      for (int off : {0, 1, 3}) {
        const float* a = buf_a.data() + off;
        const float* b = buf_b.data() + (off ? off + 2 : 0);
        const float r = dot_f32(ref, a, b, n), s = dot_f32(kk, a, b, n);
        double mag = 0;
        for (int64_t i = 0; i < n; ++i) mag += std::fabs(a[i] * b[i]);
        EXPECT_NEAR(s, r, 1e-6 * mag + 1e-7) << isa << " n=" << n << " off=" << off;
      }
    }
  }
}

TEST(KernelsSimd, SoftmaxF32MatchesScalarWithMaskedEntries) {
  Kernels ref = Kernels::select("scalar");
  auto buf = random_floats(2400, 9);
  for (auto& x : buf) x *= 30.0f;  // a wide range of exponents, some below exp's underflow
  for (const auto& isa : simd_isas()) {
    Kernels kk = Kernels::select(isa);
    for (int64_t n : {1, 3, 15, 16, 17, 63, 64, 65, 1000, 2304, 2399}) {
      for (int off : {0, 1}) {
        std::vector<float> a(buf.begin() + off, buf.begin() + off + n);
        for (int64_t i = 0; i < n; i += 7) a[i] = -INFINITY;  // masked keys
        std::vector<float> b = a;
        const bool ra = softmax_f32(ref, a.data(), n), rb = softmax_f32(kk, b.data(), n);
        ASSERT_EQ(ra, rb);
        ASSERT_EQ(ra, n > 1) << isa << " n=" << n;  // n = 1: the only key is masked
        if (!ra) continue;
        double sum = 0;
        for (int64_t i = 0; i < n; ++i) {
          EXPECT_NEAR(b[i], a[i], 1e-6 * a[i] + 1e-9) << isa << " n=" << n << " i=" << i;
          if (i % 7 == 0) {
            EXPECT_EQ(b[i], 0.0f);
          }
          sum += b[i];
        }
        EXPECT_NEAR(sum, 1.0, 1e-5);
      }
    }
    std::vector<float> all_masked(20, -INFINITY);
    EXPECT_FALSE(softmax_f32(kk, all_masked.data(), 20));
    EXPECT_EQ(all_masked[3], -INFINITY);
  }
}

TEST(KernelsSimd, GeluTanhMulMatchesScalar) {
  Kernels ref = Kernels::select("scalar");
  auto g = random_floats(1100, 12), u = random_floats(1100, 13);
  for (auto& x : g) x *= 12.0f;  // both tails (tanh saturates, exp underflows)
  for (const auto& isa : simd_isas()) {
    Kernels kk = Kernels::select(isa);
    for (int64_t n : {1, 15, 16, 17, 1000, 1031}) {
      std::vector<float> a(n), b(n);
      gelu_tanh_mul_f32(ref, g.data(), u.data(), a.data(), n);
      gelu_tanh_mul_f32(kk, g.data(), u.data(), b.data(), n);
      for (int64_t i = 0; i < n; ++i)
        EXPECT_NEAR(b[i], a[i], 2e-6 * std::fabs(a[i]) + 1e-7 * std::fabs(g[i] * u[i]) + 1e-30) << isa << " " << i;
    }
    std::vector<float> inplace(g.begin(), g.begin() + 100), want(100);
    gelu_tanh_mul_f32(ref, g.data(), u.data(), want.data(), 100);
    gelu_tanh_mul_f32(kk, inplace.data(), u.data(), inplace.data(), 100);
    for (int i = 0; i < 100; ++i) EXPECT_NEAR(inplace[i], want[i], 2e-6 * std::fabs(want[i]) + 1e-7);
  }
}

TEST(Kernels, SelectHonoursOverrideAndEnv) {
  EXPECT_EQ(Kernels::select("scalar").isa(), Isa::Scalar);
  EXPECT_THROW(Kernels::select("sse9"), Error);
  setenv("EDGEVL_ISA", "scalar", 1);
  EXPECT_EQ(Kernels::select().isa(), Isa::Scalar);
  unsetenv("EDGEVL_ISA");
  const CpuFeatures& f = cpu_features();
  if (f.avx512f && f.avx512vnni && f.avx512bw && f.avx512vl) {
    EXPECT_EQ(Kernels::select().isa(), Isa::Avx512);
  }
}

TEST(Kernels, MatmulRejectsBadArguments) {
  Kernels kk = Kernels::select("scalar");
  ThreadPool pool(1);
  std::vector<uint8_t> w(1024);
  std::vector<float> x(64), y(4);
  MatmulArgs a{DType::Q8_0, w.data(), 34, 1, 48, x.data(), 48, 1, y.data(), 1};  // k not a block multiple
  EXPECT_THROW(matmul(kk, pool, a), Error);
  a.wtype = DType::I32;
  a.k = 32;
  EXPECT_THROW(matmul(kk, pool, a), Error);
}

// ---- (c) round-trip error bounds ----

TEST(Quants, RoundTripErrorBounds) {
  // RMS error relative to the data's RMS for N(0,1) rows, a little above what each format
  // gives (bits per weight: 8.5, 6.56, 5.5-6, 4.5-5, ~4.5).
  struct Bound {
    DType t;
    double rel_rms;
  } bounds[] = {{DType::F16, 5e-4},  {DType::BF16, 4e-3}, {DType::Q8_0, 6e-3}, {DType::Q8_K, 9e-3},
                {DType::Q6_K, 2e-2}, {DType::Q5_0, 5e-2}, {DType::Q5_1, 4e-2}, {DType::Q5_K, 4e-2},
                {DType::Q4_0, 0.1},  {DType::Q4_1, 9e-2}, {DType::Q4_K, 9e-2}};
  const int64_t k = 4096;
  auto x = random_floats(k, 9);
  for (const Bound& b : bounds) {
    std::vector<uint8_t> q(row_bytes(b.t, k));
    std::vector<float> y(k);
    quantize_row(b.t, x.data(), q.data(), k);
    dequantize_row(b.t, q.data(), y.data(), k);
    double e = 0, s = 0;
    for (int64_t i = 0; i < k; ++i) {
      e += (x[i] - y[i]) * (x[i] - y[i]);
      s += x[i] * x[i];
    }
    EXPECT_LT(std::sqrt(e / s), b.rel_rms) << dtype_name(b.t);
    EXPECT_GT(std::sqrt(e / s), b.rel_rms / 20) << dtype_name(b.t) << ": suspiciously exact";
    // Zeros stay zeros, and nothing produces NaN.
    std::vector<float> z(k, 0.f);
    quantize_row(b.t, z.data(), q.data(), k);
    dequantize_row(b.t, q.data(), y.data(), k);
    for (float v : y) ASSERT_EQ(v, 0.f) << dtype_name(b.t);
  }
}

}  // namespace
}  // namespace edgevl
