// nn building blocks against plain reference formulas.
#include <cmath>
#include <random>
#include <vector>

#include "nn/attention.h"
#include "nn/rope.h"
#include "test_util.h"

namespace edgevl::nn {
namespace {

// Reference attention for one query: softmax over visible keys of scale·q·k (soft-capped), · v.
std::vector<float> reference_attention(const AttentionShape& a, const std::vector<float>& q, int64_t T, int64_t pos0,
                                       const std::vector<float>& k, const std::vector<float>& v,
                                       const std::vector<uint8_t>& mask, const std::vector<int32_t>& groups = {}) {
  const int64_t H = a.n_heads, Hkv = a.n_kv_heads, Dh = a.head_dim, S = pos0 + T;
  auto visible = [&](int64_t pos, int64_t j) {
    const bool by_rule = j <= pos && (a.sliding_window == 0 || pos - j < a.sliding_window);
    const bool by_group = !groups.empty() && groups[pos] >= 0 && groups[j] == groups[pos];
    return (by_rule || by_group) && (mask.empty() || mask[j]);
  };
  std::vector<float> out(T * H * Dh, 0.0f);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t kvh = h / (H / Hkv), pos = pos0 + t;
      std::vector<double> w(S, 0.0);
      double mx = -1e300;
      bool any = false;
      for (int64_t j = 0; j < S; ++j) {
        if (!visible(pos, j)) continue;
        double d = 0;
        for (int64_t i = 0; i < Dh; ++i) d += (double)q[t * H * Dh + h * Dh + i] * k[j * Hkv * Dh + kvh * Dh + i];
        d *= a.scale;
        if (a.softcap > 0) d = a.softcap * std::tanh(d / a.softcap);
        w[j] = d;
        mx = std::max(mx, d);
        any = true;
      }
      double sum = 0;
      for (int64_t j = 0; j < S; ++j) {
        w[j] = !any ? 1.0 / S : visible(pos, j) ? std::exp(w[j] - mx) : 0.0;
        sum += w[j];
      }
      for (int64_t j = 0; j < S; ++j)
        for (int64_t i = 0; i < Dh; ++i)
          out[t * H * Dh + h * Dh + i] += (float)(w[j] / sum) * v[j * Hkv * Dh + kvh * Dh + i];
    }
  return out;
}

struct AttnCase {
  int64_t T, pos0, window;
  float softcap;
  bool padded;
  bool grouped = false;  // two runs of positions that also see each other both ways (images)
};

class AttentionTest : public ::testing::TestWithParam<AttnCase> {};

TEST_P(AttentionTest, MatchesReference) {
  const AttnCase c = GetParam();
  AttentionShape a;
  a.n_heads = 6;
  a.n_kv_heads = 2;
  a.head_dim = 16;
  a.scale = 0.25f;
  a.sliding_window = c.window;
  a.softcap = c.softcap;
  const int64_t S = c.pos0 + c.T, qw = a.n_heads * a.head_dim, kvw = a.n_kv_heads * a.head_dim;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  std::vector<float> q(c.T * qw), k(S * kvw), v(S * kvw), out(c.T * qw);
  for (auto* vec : {&q, &k, &v})
    for (float& x : *vec) x = nd(rng);
  std::vector<uint8_t> mask;
  if (c.padded) {  // left padding of 3 positions
    mask.assign(S, 1);
    for (int i = 0; i < 3; ++i) mask[i] = 0;
  }
  std::vector<int32_t> groups;
  if (c.grouped) {
    groups.assign(S, -1);
    for (int64_t p = c.pos0 + c.T / 4; p < c.pos0 + c.T / 2; ++p) groups[p] = 0;
    for (int64_t p = c.pos0 + 3 * c.T / 4; p < S; ++p) groups[p] = 1;
  }
  Context ctx(2);
  attention(ctx, a, q.data(), c.T, c.pos0, k.data(), v.data(), out.data(), mask.empty() ? nullptr : mask.data(),
            groups.empty() ? nullptr : groups.data());
  EXPECT_LE(test::rel_error(out, reference_attention(a, q, c.T, c.pos0, k, v, mask, groups)), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionTest,
                         ::testing::Values(AttnCase{1, 0, 0, 0, false}, AttnCase{1, 37, 0, 0, false},
                                           AttnCase{5, 10, 4, 0, false}, AttnCase{20, 0, 0, 0, false},
                                           AttnCase{300, 0, 0, 0, false}, AttnCase{40, 25, 8, 0, false},
                                           AttnCase{33, 0, 0, 30.0f, false}, AttnCase{20, 0, 0, 0, true},
                                           AttnCase{200, 0, 16, 0, true}, AttnCase{4, 0, 0, 0, true},
                                           AttnCase{40, 0, 4, 0, false, true}, AttnCase{12, 9, 0, 0, false, true},
                                           AttnCase{300, 0, 16, 0, true, true}));

TEST(Rope, RotationMatchesFormulaInBothLayouts) {
  RopeConfig cfg;
  cfg.theta = 10000;
  const int64_t Dh = 8;
  for (bool interleaved : {false, true}) {
    cfg.interleaved = interleaved;
    Rope rope(cfg, Dh);
    std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8}, y = x;
    rope.apply(y.data(), 1, Dh, 3);
    for (int64_t i = 0; i < Dh / 2; ++i) {
      const double ang = 3.0 / std::pow(10000.0, 2.0 * i / Dh);
      const int64_t a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + Dh / 2;
      EXPECT_NEAR(y[a], x[a] * std::cos(ang) - x[b] * std::sin(ang), 1e-5);
      EXPECT_NEAR(y[b], x[b] * std::cos(ang) + x[a] * std::sin(ang), 1e-5);
    }
  }
}

TEST(Rope, Llama3ScalingKeepsHighAndDividesLowFrequencies) {
  // Llama 3.1's published settings: factor 8, low 1, high 4, original context 8192.
  RopeConfig cfg;
  cfg.type = "llama3";
  cfg.theta = 500000;
  cfg.factor = 8;
  cfg.low_freq_factor = 1;
  cfg.high_freq_factor = 4;
  cfg.original_max_position = 8192;
  Rope scaled(cfg, 128);
  cfg.type = "default";
  Rope plain(cfg, 128);
  for (size_t i = 0; i < plain.inv_freq().size(); ++i) {
    const double wavelen = 2 * M_PI / plain.inv_freq()[i];
    if (wavelen < 8192.0 / 4) EXPECT_FLOAT_EQ(scaled.inv_freq()[i], plain.inv_freq()[i]);
    else if (wavelen > 8192.0) EXPECT_FLOAT_EQ(scaled.inv_freq()[i], plain.inv_freq()[i] / 8);
    else {
      const double smooth = (8192.0 / wavelen - 1) / 3;
      EXPECT_NEAR(scaled.inv_freq()[i], (1 - smooth) * plain.inv_freq()[i] / 8 + smooth * plain.inv_freq()[i],
                  1e-6 * plain.inv_freq()[i]);
    }
  }
}

}  // namespace
}  // namespace edgevl::nn
