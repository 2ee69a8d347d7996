// Gemma 4 mixture-of-experts (26B-A4B layout) through GGUF, both ways: the golden HF checkpoint
// ../shared/golden/hf/gemma4_text_moe (4 experts, top 2, three layers) converted by edgevl with
// llama.cpp's names, types and keys (conversion/gemma.py Gemma4Model; src/models/gemma4.cpp loads
// them), then loaded back:
//  - F32: every hidden state and the logits within 1e-4 of HF's, greedy tokens as HF's (a step
//    whose golden top-1/top-2 gap is under 1e-4 is a tie: there its logits are compared instead);
//  - F16 / Q8_0: logits within 1.5x llama.cpp's error on the same files, and the Q8_0 experts
//    computing what their rounded weights say;
//  - `edgevl init` writes the same layout, and its GGUF and HF outputs give the same logits;
//  - malformed files (a missing expert tensor or key, split gate/up) fail naming what is wrong.
#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "kernels/quants.h"
#include "models/layout.h"
#include "models/model.h"
#include "runtime/sampler.h"
#include "golden_rows.h"
#include "test_util.h"

namespace edgevl {
namespace {

using test::as_f32;
using test::as_ids;
using test::expect_error;
using test::golden_hf;
using test::isas;
using test::rel_error;
using test::run_rows;
using test::TempDir;

const std::string kCase = "gemma4_text_moe";


// One golden conversion per type, shared by the tests (the F32 file is also the malformed tests' base).
std::string converted(DType t) {
  static TempDir dir;
  static std::map<DType, std::string> done;
  auto it = done.find(t);
  if (it != done.end()) return it->second;
  const std::string path = dir.file(kCase + "-" + dtype_name(t) + ".gguf");
  convert_hf_to_gguf(golden_hf(kCase), path, t, 1);  // `edgevl quantize HF_FOLDER out.gguf TYPE`
  return done[t] = path;
}

std::vector<float> golden_logits() {
  auto golden = safetensors::File::open(golden_hf(kCase) + "/golden.safetensors");
  return as_f32(*golden->find("logits"));
}

std::vector<float> logits_of(const std::string& path, const std::string& isa) {
  auto golden = safetensors::File::open(golden_hf(kCase) + "/golden.safetensors");
  const TensorRef* ids = golden->find("inputs.input_ids");
  auto model = load_model(path);
  Context ctx(2, isa);
  return run_rows(*model, ctx, as_ids(*ids), ids->shape[0], ids->shape[1])["logits"];
}

// The file holds llama.cpp's MoE tensors (names, ggml shapes, types) and expert keys, and the F32
// weights are HF's bytes unchanged (no scale is folded, nothing transposed).
TEST(Gemma4MoeGguf, ConvertedLikeLlamaCpp) {
  const std::string path = converted(DType::F32);
  auto g = gguf::File::open(path);
  auto hf = safetensors::File::open(golden_hf(kCase) + "/model.safetensors");
  const HfConfig cfg = load_hf_config(golden_hf(kCase) + "/config.json");
  const int64_t E = cfg.get_int("num_experts", 0), I = cfg.get_int("moe_intermediate_size", 0);
  const int64_t D = cfg.get_int("hidden_size", 0), L = cfg.get_int("num_hidden_layers", 0);
  EXPECT_EQ(g->get_string("general.architecture"), "gemma4");
  EXPECT_EQ(g->get_int("gemma4.expert_count"), E);
  EXPECT_EQ(g->get_int("gemma4.expert_used_count"), cfg.get_int("top_k_experts", 0));
  EXPECT_EQ(g->get_int("gemma4.expert_feed_forward_length"), I);
  const std::vector<std::pair<std::string, std::string>> moe = {
      {"ffn_gate_inp.weight", "router.proj.weight"},
      {"ffn_gate_inp.scale", "router.scale"},
      {"ffn_down_exps.scale", "router.per_expert_scale"},
      {"ffn_gate_up_exps.weight", "experts.gate_up_proj"},
      {"ffn_down_exps.weight", "experts.down_proj"},
      {"pre_ffw_norm_2.weight", "pre_feedforward_layernorm_2.weight"},
      {"post_ffw_norm_1.weight", "post_feedforward_layernorm_1.weight"},
      {"post_ffw_norm_2.weight", "post_feedforward_layernorm_2.weight"},
  };
  for (int64_t l = 0; l < L; ++l)
    for (const auto& [gg, h] : moe) {
      const std::string gname = "blk." + std::to_string(l) + "." + gg;
      const std::string hname = "model.layers." + std::to_string(l) + "." + h;
      const TensorRef* a = g->find_tensor(gname);
      const TensorRef* b = hf->find(hname);
      ASSERT_TRUE(a && b) << gname << " / " << hname;
      EXPECT_EQ(a->dtype, DType::F32) << gname;
      EXPECT_EQ(a->shape, b->shape) << gname;  // edgevl order: ggml ne reversed ([D, 2I, E] -> {E, 2I, D})
      ASSERT_EQ(a->nbytes, b->nbytes) << gname;
      EXPECT_EQ(std::memcmp(a->data, b->data, a->nbytes), 0) << gname << " differs from " << hname;
    }
  EXPECT_EQ(g->find_tensor("blk.0.ffn_gate_up_exps.weight")->shape, (std::vector<int64_t>{E, 2 * I, D}));
  EXPECT_EQ(g->find_tensor("blk.0.ffn_down_exps.weight")->shape, (std::vector<int64_t>{E, D, I}));
  EXPECT_EQ(g->find_tensor("output.weight"), nullptr);  // tied
}

class Gemma4MoeGgufF32 : public ::testing::TestWithParam<std::string> {};

TEST_P(Gemma4MoeGgufF32, HiddenStatesLogitsAndGreedyTokens) {
  const std::string isa = GetParam();
  auto golden = safetensors::File::open(golden_hf(kCase) + "/golden.safetensors");
  auto model = load_model(converted(DType::F32));
  EXPECT_EQ(model->info().family, "gemma4");
  Context ctx(2, isa);
  const TensorRef* ids = golden->find("inputs.input_ids");
  auto acts = run_rows(*model, ctx, as_ids(*ids), ids->shape[0], ids->shape[1]);
  int compared = 0;
  for (const TensorRef& g : golden->tensors()) {
    if (g.name != "logits" && g.name.rfind("hidden_states.", 0) != 0) continue;
    ASSERT_TRUE(acts.count(g.name)) << g.name;
    EXPECT_LE(rel_error(acts[g.name], as_f32(g)), 1e-4) << isa << " " << g.name;
    ++compared;
  }
  EXPECT_EQ(compared, model->info().n_layers + 2);  // hidden_states.00..NN and logits

  // Greedy decoding on the golden trajectory (each step fed the golden token, so every step's
  // logits stay comparable): the argmax must be the golden token unless HF's own top two are
  // within 1e-4 there, and every step's logits within 1e-4 of HF's.
  const std::vector<int32_t> prompt = as_ids(*golden->find("gen.inputs.input_ids"));
  const std::vector<int32_t> expected = as_ids(*golden->find("gen.new_tokens"));
  const std::vector<float> steps = as_f32(*golden->find("gen.step_logits"));
  const int64_t V = model->info().vocab_size;
  ASSERT_EQ(steps.size(), expected.size() * V);
  nn::KvCache cache = model->new_cache((int64_t)(prompt.size() + expected.size()));
  std::vector<int32_t> feed = prompt;
  int ties = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    ForwardRequest req;
    req.tokens = feed;
    Tensor logits;
    model->forward(ctx, cache, req, logits);
    const float* ours = logits.row(logits.dim(0) - 1);
    const float* ref = steps.data() + i * V;
    EXPECT_LE(rel_error(ours, ref, V), 1e-4) << isa << " step " << i;
    std::vector<float> sorted(ref, ref + V);
    std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
    const int32_t got = argmax({ours, (size_t)V});
    if (sorted[0] - sorted[1] < 1e-4f) ++ties;
    else EXPECT_EQ(got, expected[i]) << isa << " step " << i;
    feed = {expected[i]};
  }
  if (ties > 0) std::printf("[ note     ] %s: %d near-tied golden steps compared by logits only\n", isa.c_str(), ties);
}

INSTANTIATE_TEST_SUITE_P(Golden, Gemma4MoeGgufF32, ::testing::ValuesIn(isas()));

// F16 and Q8_0 files, against the HF logits: the README's bar for rounded weights, at most 1.5x
// the error llama.cpp makes on the same file. llama.cpp (commit 3f545be, CPU, /tmp program over
// the C API, F32 KV cache) measured on the files this converter writes: F16 6.8e-3, Q8_0 0.239.
// Q8_0 is that large on this tiny random model because top-2 routing is discontinuous: rounding
// moves a few positions to another expert (in llama.cpp too); see Q8ExpertsComputeTheirRoundedWeights
// for the continuous check. The router stays F32, as llama.cpp's converter and llama-quantize keep
// ffn_gate_inp.weight.
struct RoundedCase {
  DType type;
  double llamacpp_err;
};
class Gemma4MoeGgufRounded : public ::testing::TestWithParam<std::tuple<RoundedCase, std::string>> {};

TEST_P(Gemma4MoeGgufRounded, LogitsWithinLlamaCppError) {
  const auto& [c, isa] = GetParam();
  const std::string path = converted(c.type);
  auto g = gguf::File::open(path);
  EXPECT_EQ(g->find_tensor("blk.1.ffn_gate_inp.weight")->dtype, DType::F32);
  EXPECT_EQ(g->find_tensor("blk.1.ffn_gate_up_exps.weight")->dtype, c.type);
  EXPECT_EQ(g->find_tensor("blk.1.ffn_down_exps.weight")->dtype, c.type);
  EXPECT_EQ(g->find_tensor("blk.1.ffn_down_exps.scale")->dtype, DType::F32);
  const std::vector<float> ours = logits_of(path, isa);
  const double err = rel_error(ours, golden_logits()), err_f32 = rel_error(ours, logits_of(converted(DType::F32), isa));
  std::printf("[ measured ] %s on %s: %.3g against HF (llama.cpp %.3g), %.3g against the F32 file\n",
              dtype_name(c.type), isa.c_str(), err, c.llamacpp_err, err_f32);
  EXPECT_LE(err, 1.5 * c.llamacpp_err) << dtype_name(c.type) << " " << isa;
}

INSTANTIATE_TEST_SUITE_P(Golden, Gemma4MoeGgufRounded,
                         ::testing::Combine(::testing::Values(RoundedCase{DType::F16, 6.8e-3},
                                                              RoundedCase{DType::Q8_0, 0.239}),
                                            ::testing::ValuesIn(isas())),
                         [](const auto& info) {
                           return std::string(dtype_name(std::get<0>(info.param).type)) + "_" +
                                  std::get<1>(info.param);
                         });

// The F32 file with the tensors `pick` selects rewritten: in Q8_0 (`dequantized` false), or as the
// F32 values those Q8_0 blocks hold (`dequantized` true). Every token is routed to every expert
// (expert_used_count = expert_count), which keeps the model continuous in its inputs.
std::string q8_variant(const TempDir& dir, const std::string& name, bool (*pick)(const std::string&),
                       bool dequantized) {
  auto in = gguf::File::open(converted(DType::F32));
  gguf::Writer w;
  w.copy_metadata(*in);
  w.set_u32("gemma4.expert_used_count", (uint32_t)*in->get_int("gemma4.expert_count"));
  for (const TensorRef& t : in->tensors()) {
    if (!pick(t.name)) {
      w.add_tensor(t.name, t.dtype, t.shape, t.data, t.nbytes);
      continue;
    }
    const int64_t cols = t.shape.back(), rows = t.numel() / cols;
    const size_t qrow = row_bytes(DType::Q8_0, cols);
    std::vector<uint8_t> q(qrow * rows), f(rows * cols * sizeof(float));
    for (int64_t r = 0; r < rows; ++r) {
      quantize_row(DType::Q8_0, reinterpret_cast<const float*>(t.data) + r * cols, q.data() + r * qrow, cols);
      dequantize_row(DType::Q8_0, q.data() + r * qrow, reinterpret_cast<float*>(f.data()) + r * cols, cols);
    }
    if (dequantized) w.add_tensor(t.name, DType::F32, t.shape, std::move(f));
    else w.add_tensor(t.name, DType::Q8_0, t.shape, std::move(q));
  }
  w.write(dir.file(name));
  return dir.file(name);
}

// The Q8_0 error above is dominated by routing: top-k selection is discontinuous, and on this
// tiny random model a few positions change experts when anything is rounded (llama.cpp's logits
// on the same file jump at the same kind of positions), so it cannot catch a subtle fault in the
// quantized expert path. This can: with every expert used (no selection to flip) and only the
// experts in Q8_0, the logits must be those of an F32 file holding the same rounded values, up to
// the activation rounding of the Q8_0 matmul (which llama.cpp does too). llama.cpp measured 2.3e-2
// for the same two files (and 1.5e-2 from ours on the Q8_0 one): the bound is 1.5x that.
TEST_P(Gemma4MoeGgufF32, Q8ExpertsComputeTheirRoundedWeights) {
  const std::string isa = GetParam();
  TempDir dir;
  auto experts = [](const std::string& n) { return n.ends_with("_exps.weight"); };
  const std::vector<float> q = logits_of(q8_variant(dir, "q.gguf", experts, false), isa);
  const std::vector<float> f = logits_of(q8_variant(dir, "f.gguf", experts, true), isa);
  const double err = rel_error(q, f);
  std::printf("[ measured ] %s: Q8_0 experts vs their values in F32, all experts routed: %.3g\n", isa.c_str(), err);
  EXPECT_LE(err, 1.5 * 2.3e-2) << isa;
}

// `edgevl init` writes the same tensors as the converter, and its GGUF and HF outputs of one seed
// hold the same weights, so they give the same logits (the GGUF adds only rope_freqs).
TEST(Gemma4MoeGguf, InitWritesTheSameLayout) {
  TempDir dir;
  InitOptions opt;
  opt.threads = 1;
  opt.seed = 3;
  opt.gguf = true;
  init_random_model(golden_hf(kCase) + "/config.json", dir.file("m.gguf"), opt);
  opt.gguf = false;
  init_random_model(golden_hf(kCase) + "/config.json", dir.file("hf"), opt);
  auto ours = gguf::File::open(dir.file("m.gguf"));
  auto conv = gguf::File::open(converted(DType::F32));
  EXPECT_EQ(ours->tensors().size(), conv->tensors().size());
  for (const TensorRef& t : conv->tensors()) {
    const TensorRef* o = ours->find_tensor(t.name);
    ASSERT_NE(o, nullptr) << t.name;
    EXPECT_EQ(o->shape, t.shape) << t.name;
    EXPECT_EQ(o->dtype, t.dtype) << t.name;
  }
  for (const char* k : {"gemma4.expert_count", "gemma4.expert_used_count", "gemma4.expert_feed_forward_length"})
    EXPECT_EQ(ours->get_int(k), conv->get_int(k)) << k;
  // At a block type, the routers stay F32 as llama.cpp keeps them (its converter and
  // llama-quantize): from init, and from HF through quantize.
  opt.gguf = true;
  opt.dtype = DType::Q8_0;
  init_random_model(golden_hf(kCase) + "/config.json", dir.file("q8.gguf"), opt);
  for (const std::string& f : {dir.file("q8.gguf"), converted(DType::Q8_0)}) {
    auto q = gguf::File::open(f);
    EXPECT_EQ(q->find_tensor("blk.0.ffn_gate_inp.weight")->dtype, DType::F32) << f;
    EXPECT_EQ(q->find_tensor("blk.0.ffn_gate_up_exps.weight")->dtype, DType::Q8_0) << f;
  }

  std::vector<int32_t> ids;
  for (int i = 0; i < 24; ++i) ids.push_back((i * 37 + 5) % 512);  // past the sliding window (8)
  Context ctx(1);
  auto a = load_model(dir.file("m.gguf"));
  auto b = load_model(dir.file("hf"));
  EXPECT_EQ(a->info().n_params - b->info().n_params, ours->find_tensor("rope_freqs.weight")->numel());
  auto la = run_rows(*a, ctx, ids, 1, (int64_t)ids.size())["logits"];
  auto lb = run_rows(*b, ctx, ids, 1, (int64_t)ids.size())["logits"];
  ASSERT_EQ(la.size(), ids.size() * 512);
  EXPECT_LE(rel_error(la, lb), 1e-6);
}

// A copy of the F32 file with tensors and keys left out or added.
std::string rewrite(const TempDir& dir, const std::string& name, const std::vector<std::string>& drop_tensors,
                    const std::vector<std::string>& drop_keys, bool split_gate_up = false) {
  auto in = gguf::File::open(converted(DType::F32));
  gguf::Writer w;
  for (const auto& [k, v] : in->metadata())
    if (std::find(drop_keys.begin(), drop_keys.end(), k) == drop_keys.end()) w.set(k, v);
  for (const TensorRef& t : in->tensors()) {
    if (std::find(drop_tensors.begin(), drop_tensors.end(), t.name) != drop_tensors.end()) continue;
    if (split_gate_up && t.name.ends_with("ffn_gate_up_exps.weight")) {
      // llama.cpp's other expert layout: ffn_gate_exps and ffn_up_exps, [E, I, D] each.
      const int64_t E = t.shape[0], I = t.shape[1] / 2, D = t.shape[2];
      const std::string blk = t.name.substr(0, t.name.find("ffn_gate_up_exps"));
      for (int half = 0; half < 2; ++half) {
        std::vector<uint8_t> bytes(E * I * D * sizeof(float));
        for (int64_t e = 0; e < E; ++e)
          std::memcpy(bytes.data() + e * I * D * 4, t.data + (e * 2 * I + half * I) * D * 4, I * D * 4);
        w.add_tensor(blk + (half ? "ffn_up_exps.weight" : "ffn_gate_exps.weight"), DType::F32, {E, I, D},
                     std::move(bytes));
      }
      continue;
    }
    w.add_tensor(t.name, t.dtype, t.shape, t.data, t.nbytes);
  }
  const std::string path = dir.file(name);
  w.write(path);
  return path;
}

TEST(Gemma4MoeGguf, MalformedFilesNameWhatIsWrong) {
  TempDir dir;
  for (const char* t : {"blk.1.ffn_down_exps.weight", "blk.2.ffn_gate_up_exps.weight", "blk.0.ffn_down_exps.scale",
                        "blk.1.ffn_gate_inp.scale", "blk.2.post_ffw_norm_2.weight"}) {
    const std::string path = rewrite(dir, "missing.gguf", {t}, {});
    expect_error([&] { load_model(path); }, std::string("missing weight '") + t + "'", t);
  }
  const std::string no_top_k = rewrite(dir, "no_top_k.gguf", {}, {"gemma4.expert_used_count"});
  expect_error([&] { load_model(no_top_k); }, "gemma4.expert_used_count", "no expert_used_count");
  const std::string no_count = rewrite(dir, "no_count.gguf", {}, {"gemma4.expert_count"});
  expect_error([&] { load_model(no_count); }, "gemma4.expert_count", "no expert_count");
  const std::string split = rewrite(dir, "split.gguf", {}, {}, true);
  expect_error([&] { load_model(split); }, "blk.0.ffn_gate_exps", "split gate/up experts");
  // A wrong expert width in the keys: the shape check names the tensor.
  auto in = gguf::File::open(converted(DType::F32));
  gguf::Writer w;
  for (const auto& [k, v] : in->metadata()) w.set(k, v);
  w.set_u32("gemma4.expert_feed_forward_length", 16);
  for (const TensorRef& t : in->tensors()) w.add_tensor(t.name, t.dtype, t.shape, t.data, t.nbytes);
  w.write(dir.file("wide.gguf"));
  expect_error([&] { load_model(dir.file("wide.gguf")); }, "blk.0.ffn_gate_up_exps.weight", "wrong expert width");
}

}  // namespace
}  // namespace edgevl
