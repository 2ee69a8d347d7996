// SFT packing and the attention masks it needs: several examples in one row, each attending only
// to itself with its positions restarting at 0, must train exactly as the examples in rows of
// their own (checked on the golden checkpoints, against their unpacked forward); bidirectional
// image blocks (Gemma 4's large models); TRL's best-fit-decreasing placement.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/mmap.h"
#include "io/safetensors.h"
#include "golden_rows.h"
#include "models/model.h"
#include "test_util.h"
#include "train/data.h"
#include "train/grad_ops.h"
#include "train/lora.h"
#include "train/steps.h"
#include "train/train_dump.h"

namespace edgevl::train {
namespace {

// Rows of `b` (right-padded) as one packed row: their unpadded tokens back to back.
Batch pack_rows(const Batch& b) {
  Batch p;
  p.B = 1;
  for (int64_t i = 0; i < b.B; ++i)
    for (int64_t t = 0; t < b.T; ++t) {
      if (!b.attention_mask[i * b.T + t]) continue;
      p.input_ids.push_back(b.input_ids[i * b.T + t]);
      p.labels.push_back(t == 0 ? kIgnoreIndex : b.labels[i * b.T + t]);
      p.attention_mask.push_back(1);
      p.sequence_ids.push_back((int32_t)i);
    }
  p.T = (int64_t)p.input_ids.size();
  return p;
}

// The golden SFT batch of a case trained unpacked and packed: the packed row's logits are the
// unpacked rows' (each token where its row put it), and the loss and LoRA gradients agree. This
// rests on the sequence mask (RoPE sees only relative positions, so the restarted positions,
// which TRL's position_ids also give, change no number here).
void expect_packing_is_exact(const std::string& c) {
  const std::string dir = test::shared_dir() + "/golden/hf/train/" + c;
  auto golden = safetensors::File::open(dir + "/golden.safetensors");
  const Batch rows = read_batch(*golden);
  const Batch packed = pack_rows(rows);
  ASSERT_LT(packed.T, rows.B * rows.T) << "the golden batch has no padding to pack away";
  Context ctx(2);
  auto m = open_trainable(dir);
  LoraSet lora = LoraSet::load_peft(dir + "/lora_adapter", m->linear_modules());
  m->attach_lora(&lora);

  const float loss_rows = sft_step(ctx, *m, rows);
  const Tensor logits_rows = m->logits();
  std::vector<std::vector<float>> grads_rows;
  for (auto& [name, p] : lora.pairs) grads_rows.push_back(p.dA), grads_rows.push_back(p.dB);
  lora.zero_grad();
  const float loss_packed = sft_step(ctx, *m, packed);
  EXPECT_NEAR(loss_packed, loss_rows, 1e-6 * std::fabs(loss_rows));

  const int64_t V = m->logits().dim(-1);
  std::vector<float> ours, ref;
  for (int64_t i = 0, r = 0; i < rows.B; ++i)
    for (int64_t t = 0; t < rows.T; ++t) {
      if (!rows.attention_mask[i * rows.T + t]) continue;
      const float* a = m->logits().data() + r++ * V;
      const float* b = logits_rows.data() + (i * rows.T + t) * V;
      ours.insert(ours.end(), a, a + V);
      ref.insert(ref.end(), b, b + V);
    }
  EXPECT_LE(test::rel_error(ours, ref), 1e-5);
  size_t k = 0;
  double worst = 0;
  for (auto& [name, p] : lora.pairs) {
    worst = std::max(worst, test::rel_error(p.dA, grads_rows[k++]));
    worst = std::max(worst, test::rel_error(p.dB, grads_rows[k++]));
  }
  EXPECT_LE(worst, 1e-5) << "LoRA gradients, packed vs unpacked";
}

TEST(TrainPacking, LlamaPackedRowTrainsLikeSeparateRows) { expect_packing_is_exact("llama"); }

TEST(TrainPacking, Gemma4TextPackedRowTrainsLikeSeparateRows) {
  // Sliding and global layers, proportional RoPE, KV sharing: all follow the packed positions.
  expect_packing_is_exact("gemma4_text");
}

// The attention mask rules against a brute-force reading of HF's mask functions: a query sees a
// key when (causal AND in window) OR in its image group, AND the key is real AND in its sequence.
TEST(TrainPacking, KeyMaskRules) {
  nn::AttentionShape a;
  a.n_heads = a.n_kv_heads = 1;
  a.head_dim = 2;
  a.sliding_window = 3;
  const int64_t T = 9;
  const std::vector<uint8_t> valid = {1, 1, 1, 1, 1, 1, 1, 1, 0};
  const std::vector<int32_t> sequence = {0, 0, 0, 0, 0, 0, 1, 1, 1};
  const std::vector<int32_t> group = {-1, 0, 0, 0, 0, -1, -1, -1, -1};  // an image at 1..4
  const std::vector<float> q(T * 2, 0.0f), k(T * 2, 0.0f), v(T * 2, 1.0f);  // equal scores
  std::vector<float> probs(T * T), out(T * 2);
  attention_forward(a, q.data(), k.data(), v.data(), KeyMask{valid.data(), sequence.data(), group.data()}, 1, T,
                    probs.data(), out.data());
  for (int64_t i = 0; i < T; ++i) {
    std::vector<int> seen;
    for (int64_t j = 0; j < T; ++j) {
      const bool in_group = group[i] >= 0 && group[i] == group[j];
      const bool visible =
          valid[j] && sequence[i] == sequence[j] && (in_group || (j <= i && j > i - a.sliding_window));
      seen.push_back(visible);
    }
    const int n = std::count(seen.begin(), seen.end(), 1);
    ASSERT_GT(n, 0);
    for (int64_t j = 0; j < T; ++j)
      EXPECT_FLOAT_EQ(probs[i * T + j], seen[j] ? 1.0f / n : 0.0f) << "query " << i << " key " << j;
  }
}

TEST(TrainPacking, Gemma4BidirectionalImagesMatchInference) {
  // The vision-language golden checkpoint switched to the large models' image attention
  // (use_bidirectional_attention "vision": an image's soft tokens see each other in the sliding
  // layers). The training forward's logits for the full row (an image and a clip) must be the
  // inference forward's, which implements the same rule on its own, and must differ from the
  // causal model's.
  namespace fs = std::filesystem;
  const std::string src = test::shared_dir() + "/golden/hf/train/gemma4";
  const fs::path dir = testing::TempDir() + "/edgevl_bidi_gemma4_" + std::to_string(getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  nlohmann::json cfg = nlohmann::json::parse(read_text_file(src + "/config.json"));
  cfg["text_config"]["use_bidirectional_attention"] = "vision";
  std::ofstream(dir / "config.json") << cfg.dump();
  fs::create_symlink(src + "/model.safetensors", dir / "model.safetensors");
  auto golden = safetensors::File::open(src + "/golden.safetensors");
  const Batch b = read_batch(*golden);
  ASSERT_EQ(std::count(b.attention_mask.begin(), b.attention_mask.begin() + b.T, 1), b.T) << "row 0 is full";
  Context ctx(2);

  auto logits_of = [&](const std::string& model_dir) {
    auto m = open_trainable(model_dir);
    m->match_hf_eager_attention(true);
    m->forward(ctx, b);
    return std::vector<float>(m->logits().data(), m->logits().data() + b.T * m->logits().dim(-1));
  };
  const std::vector<float> train_bidi = logits_of(dir.string()), train_causal = logits_of(src);

  auto model = load_model(dir.string());
  model->match_hf_eager_attention(true);
  auto against = [&](const std::vector<float>& train_logits) {
    std::vector<float> ref(b.B * b.T * model->info().vocab_size, 0.0f);
    std::copy(train_logits.begin(), train_logits.end(), ref.begin());  // row 0, the full one
    return test::compare_unpadded_rows(*model, b, ref);
  };
  const auto same = against(train_bidi), other = against(train_causal);
  EXPECT_EQ(same.rows, 1);
  EXPECT_LE(same.worst, 1e-5);
  EXPECT_GT(other.worst, 1e-3) << "the images' bidirectional attention changed nothing";
  fs::remove_all(dir);
}

TEST(TrainPacking, BestFitDecreasing) {
  // Lengths 6, 5, 4, 3, 2 into rows of 8: 6 opens row A, 5 opens B, 4 opens C, 3 fits B best
  // (room 3), 2 fits A best (room 2): rows [6+2], [5+3], [4].
  std::vector<SftExample> ex;
  for (int n : {3, 6, 2, 5, 4}) {
    SftExample e;
    e.ids.assign(n, n);
    e.loss.assign(n, 1);
    ex.push_back(e);
  }
  const auto rows = pack_sft(ex, 8);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].ids, (std::vector<int32_t>{6, 6, 6, 6, 6, 6, 2, 2}));
  EXPECT_EQ(rows[0].sequence, (std::vector<int32_t>{0, 0, 0, 0, 0, 0, 1, 1}));
  EXPECT_EQ(rows[0].loss, (std::vector<uint8_t>{0, 1, 1, 1, 1, 1, 0, 1}));  // no target at a start
  EXPECT_EQ(rows[1].ids, (std::vector<int32_t>{5, 5, 5, 5, 5, 3, 3, 3}));
  EXPECT_EQ(rows[2].ids, (std::vector<int32_t>{4, 4, 4, 4}));
  // Collated: sequences per token (padding continues the last one), positions restart.
  const Batch b = collate_sft({&rows[0], &rows[2]});
  EXPECT_EQ(b.sequence_ids, (std::vector<int32_t>{0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(token_positions(b), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 0, 1, 0, 1, 2, 3, 4, 5, 6, 7}));
  ex[0].ids.assign(9, 1);
  ex[0].loss.assign(9, 1);
  test::expect_error([&] { pack_sft(ex, 8); }, "does not fit", "an example longer than a row");
}

}  // namespace
}  // namespace edgevl::train
