// The trainers end to end (edgevl train / merge through the CLI), their data formatting, rewards,
// schedules and the JSON Schema validator. Golden-state parity of the steps is in train_test.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "io/safetensors.h"
#include "models/model.h"
#include "runtime/session.h"
#include "golden_rows.h"
#include "test_util.h"
#include "tiny_gemma4.h"
#include "text/json_schema.h"
#include "train/data.h"
#include "train/grad_ops.h"
#include "train/lora.h"
#include "train/merge.h"
#include "train/steps.h"
#include "train/train_dump.h"
#include "trainers/rewards.h"
#include "trainers/trainer.h"

namespace edgevl::train {
namespace {

namespace fs = std::filesystem;

std::string bin() { return EDGEVL_BINARY; }

int sh(const std::string& cmd) { return std::system(cmd.c_str()); }

// A tiny Llama GGUF with edgevl's synthetic byte vocabulary, and toy data in TRL's formats.
struct Toy {
  std::string dir, model, sft, pref;
  Toy() {
    // Per process: ctest runs the tests of this file in parallel processes.
    dir = testing::TempDir() + "/edgevl_trainer_toy_" + std::to_string(getpid());
    fs::remove_all(dir);
    fs::create_directories(dir + "/cfg");
    std::ifstream in(test::shared_dir() + "/golden/hf/train/llama/config.json");
    nlohmann::json c = nlohmann::json::parse(in);
    c["initializer_range"] = 0.3;  // a random base with confident logits, so a small adapter can steer it
    std::ofstream(dir + "/cfg/config.json") << c.dump();
    model = dir + "/tiny.gguf";
    EXPECT_EQ(sh(bin() + " init '" + dir + "/cfg' '" + model + "' --seed 1 > /dev/null 2>&1"), 0);
    sft = dir + "/sft.jsonl";
    pref = dir + "/pref.jsonl";
    std::ofstream s(sft), p(pref);
    for (const char* w : {"apple", "river", "stone", "cloud", "tiger", "piano", "lemon", "rocket", "garden", "silver",
                          "candle", "forest"}) {
      s << nlohmann::json{{"prompt", std::string("Secret for ") + w + ":"}, {"completion", " edgevl"}}.dump() << "\n";
      p << nlohmann::json{{"prompt", std::string("Pick for ") + w + ":"}, {"chosen", " yes"}, {"rejected", " no"}}.dump()
        << "\n";
    }
  }
};

const Toy& toy() {
  static Toy t;
  return t;
}

std::vector<nlohmann::json> read_log(const std::string& out) {
  std::vector<nlohmann::json> v;
  std::ifstream f(out + "/log.jsonl");
  for (std::string line; std::getline(f, line);) v.push_back(nlohmann::json::parse(line));
  return v;
}

std::vector<float> adapter_values(const std::string& dir) {
  auto f = safetensors::File::open(dir + "/adapter_model.safetensors");
  std::vector<float> v;
  for (const TensorRef& t : f->tensors()) {
    const auto x = test::as_f32(t);
    v.insert(v.end(), x.begin(), x.end());
  }
  return v;
}

TEST(Trainer, SftLearnsTheToyTaskAndTheAdapterChangesGeneration) {
  const Toy& t = toy();
  const std::string out = t.dir + "/sft";
  ASSERT_EQ(sh(bin() + " train sft -m '" + t.model + "' --data '" + t.sft + "' --out '" + out +
               "' --max-steps 60 --lr 5e-3 -r 16 --lora-alpha 32 -b 4 --eval-split 0.25 --no-progress -t 2 2>/dev/null"),
            0);
  const auto log = read_log(out);
  ASSERT_EQ(log.size(), 60u);
  EXPECT_LT(log.back()["loss"].get<double>(), 0.1 * log.front()["loss"].get<double>());
  ASSERT_TRUE(log.back().contains("eval_loss"));  // the held-out quarter of the rows
  EXPECT_LT(log.back()["eval_loss"].get<double>(), 0.5);
  // The adapter in --out loads in PEFT's layout, and greedy decoding with it answers the task.
  Engine e = Engine::load(t.model, 2);
  Session base(e, 64);
  const auto want = e.tokenizer->encode(" edgevl", false, true);
  GenerateOptions g;
  g.max_new_tokens = (int32_t)want.size();
  g.sampling.temperature = 0;
  const auto prompt = e.tokenizer->encode("Secret for apple:", true, true);
  const auto before = base.generate(prompt, g).tokens;
  e.attach_lora(out);
  Session tuned(e, 64);
  const auto after = tuned.generate(prompt, g).tokens;
  ASSERT_GE(after.size(), want.size());
  EXPECT_EQ(std::vector<int32_t>(after.begin(), after.begin() + want.size()), want);
  EXPECT_NE(before, after);
}

TEST(Trainer, SftWithPackingLearnsTheToyTask) {
  // The 12 toy rows (about 40 tokens each) packed into 4 rows of up to 128: fuller rows, same task.
  const Toy& t = toy();
  const std::string out = t.dir + "/sft_packed";
  const std::string err = out + ".err";
  ASSERT_EQ(sh(bin() + " train sft -m '" + t.model + "' --data '" + t.sft + "' --out '" + out +
               "' --packing --max-length 128 --max-steps 40 --lr 5e-3 -r 16 --lora-alpha 32 -b 2 --no-progress -t 2 2>'" +
               err + "'"),
            0);
  std::ifstream f(err);
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("packed into 4 training rows"), std::string::npos) << text;
  const auto log = read_log(out);
  ASSERT_EQ(log.size(), 40u);
  EXPECT_LT(log.back()["loss"].get<double>(), 0.1 * log.front()["loss"].get<double>());
}

TEST(Trainer, ResumeAfterSigkillEndsWithTheSameWeights) {
  const Toy& t = toy();
  const std::string args = " train sft -m '" + t.model + "' --data '" + t.sft +
                           "' --max-steps 300 --lr 1e-3 -b 3 --grad-accum 2 --schedule cosine --warmup-ratio 0.1 "
                           "--lora-dropout 0.1 --save-every 1 --no-progress -t 2";
  const std::string whole = t.dir + "/whole", killed = t.dir + "/killed";
  ASSERT_EQ(sh(bin() + args + " --out '" + whole + "' 2>/dev/null"), 0);

  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", ("exec " + bin() + args + " --out '" + killed + "' 2>/dev/null").c_str(), nullptr);
    _exit(127);
  }
  // SIGKILL once a few checkpoints exist: mid-run, possibly mid-write of the next one.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!fs::exists(killed + "/checkpoint-20/trainer_state.json") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run ended before it could be killed";
  EXPECT_FALSE(fs::exists(killed + "/adapter_model.safetensors"));

  ASSERT_EQ(sh(bin() + args + " --out '" + killed + "' --resume 2>/dev/null"), 0);
  EXPECT_EQ(adapter_values(killed), adapter_values(whole));
  // Resuming with other settings is refused.
  EXPECT_NE(sh(bin() + args + " --seed 7 --out '" + killed + "' --resume 2>/dev/null"), 0);
}

TEST(Trainer, DpoPrefersChosenOnHeldOutPairs) {
  const Toy& t = toy();
  const std::string out = t.dir + "/dpo";
  ASSERT_EQ(sh(bin() + " train dpo -m '" + t.model + "' --data '" + t.pref + "' --out '" + out +
               "' --max-steps 30 --lr 5e-3 -b 4 --eval-split 0.25 --no-progress -t 2 2>/dev/null"),
            0);
  const auto log = read_log(out);
  ASSERT_TRUE(log.back().contains("eval_reward_accuracy"));
  EXPECT_EQ(log.back()["eval_reward_accuracy"].get<double>(), 1.0);
  EXPECT_LT(log.back()["eval_loss"].get<double>(), 0.1);  // ln 2 = 0.69 at the start
}

TEST(Trainer, GrpoRaisesTheReward) {
  // The toy vocabulary decodes ids 259..511 as "t<id>"; the reward asks the completion to start
  // with one of ids 259..399 (about a quarter of the vocabulary under the random base).
  const Toy& t = toy();
  const std::string out = t.dir + "/grpo";
  ASSERT_EQ(sh(bin() + " train grpo -m '" + t.model + "' --data '" + t.sft + "' --out '" + out +
               "' --max-steps 25 --lr 2e-2 -b 2 --num-generations 4 --max-completion-length 2 --reward 'regex:^t[23]' "
               "--eval-split 0.25 --seed 3 --no-progress -t 2 2>/dev/null"),
            0);
  const auto log = read_log(out);
  ASSERT_EQ(log.size(), 25u);
  auto mean = [&](size_t a, size_t b) {
    double s = 0;
    for (size_t i = a; i < b; ++i) s += log[i]["reward"].get<double>();
    return s / (double)(b - a);
  };
  EXPECT_LT(mean(0, 3), 0.6);
  EXPECT_GT(mean(20, 25), 0.9);
  EXPECT_EQ(log.back()["eval_reward"].get<double>(), 1.0);  // greedy answers to the held-out prompts
}

// The output of `edgevl run` (stdout) for one command line.
std::string run_output(const std::string& args, const std::string& tmp) {
  if (sh(bin() + " " + args + " > '" + tmp + "' 2>/dev/null") != 0) return "<failed>";
  std::ifstream f(tmp);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

TEST(Trainer, VisionLanguageSftOnImageAndAudioRows) {
  // The tiny Gemma 4 vision-language checkpoint trained on rows with images and audio, end to end:
  // rows name their files in both layouts (a path in the part, TRL's "images" list) relative to the
  // data file, placeholders expand to each file's soft tokens, batches carry the preprocessed
  // media through both towers, and the adapter (on the decoder and the vision tower) then answers
  // with an image at inference.
  // (Telling the two images apart is beyond this random 64-wide model in a test's budget: with
  // identical prompts its greedy output does not change between images, and a contrastive
  // variant of this test stayed at chance for 100 steps.)
  const fs::path dir = testing::TempDir() + "/edgevl_trainer_vlm_" + std::to_string(getpid());
  fs::remove_all(dir);
  test::make_tiny_gemma4(dir / "model");
  {
    // Its embeddings (tied with the output layer) at std 0.3 instead of 0.02, so that the random
    // base has confident logits a small adapter can steer (at 0.02 no logit can exceed ~1), and
    // the media projectors scaled alike, so that soft tokens are not drowned in the residual stream.
    auto src = safetensors::File::open(test::golden_hf("gemma4") + "/model.safetensors");
    safetensors::Writer w;
    std::vector<std::vector<float>> scaled;
    scaled.reserve(3);
    for (const TensorRef& t : src->tensors()) {
      if (t.name != "model.language_model.embed_tokens.weight" &&
          t.name != "model.embed_vision.embedding_projection.weight" &&
          t.name != "model.embed_audio.embedding_projection.weight") {
        w.add(t.name, t.dtype, t.shape, t.data, t.nbytes);
        continue;
      }
      scaled.push_back(test::as_f32(t));
      for (float& x : scaled.back()) x *= 15.0f;
      w.add_f32(t.name, t.shape, scaled.back());
    }
    fs::remove(dir / "model" / "model.safetensors");
    w.write((dir / "model" / "model.safetensors").string());
  }
  fs::create_directories(dir / "data");
  const std::string media = test::shared_dir() + "/golden/hf/processors/";
  fs::create_symlink(media + "gemma4_image/media", dir / "data" / "pics");
  auto row = [](const nlohmann::json& parts, const std::string& answer) {
    return nlohmann::json{{"messages",
                           {{{"role", "user"}, {"content", parts}}, {{"role", "assistant"}, {"content", answer}}}}};
  };
  const nlohmann::json question = {{"type", "text"}, {"text", "What is it?"}};
  {
    std::ofstream d(dir / "data" / "vlm.jsonl");
    for (int i = 0; i < 4; ++i) {
      d << row({{{"type", "image"}, {"image", "pics/doc_page.png"}}, question}, "edgevl").dump() << "\n";
      nlohmann::json r = row({{{"type", "image"}}, question}, "edgevl");
      r["images"] = {"pics/photo.jpg"};
      d << r.dump() << "\n";
    }
    d << row({{{"type", "audio"}, {"audio", media + "gemma4_audio/media/speech_a.wav"}}, question}, "edgevl").dump()
      << "\n";
  }
  const std::string model = (dir / "model").string(), out = (dir / "adapter").string();
  ASSERT_EQ(sh(bin() + " train sft -m '" + model + "' --data '" + (dir / "data" / "vlm.jsonl").string() + "' --out '" +
               out + "' --max-steps 16 --lr 5e-3 -r 8 --lora-alpha 16 -b 3 --seed 2 --no-progress -t 2 " +
               "--target-regex '.*language_model.*_proj|.*vision_tower.*_proj\\.linear' 2>/dev/null"),
            0);
  const auto log = read_log(out);
  ASSERT_EQ(log.size(), 16u);
  EXPECT_LT(log.back()["loss"].get<double>(), 0.05 * log.front()["loss"].get<double>());
  // Greedy answers with the adapter, through the inference path (edgevl run).
  const std::string run = "run -m '" + model + "' --lora '" + out + "' -n 8 --temp 0 'What is it?' --image '" +
                          media + "gemma4_image/media/";
  const std::string tmp = (dir / "answer.txt").string();
  const std::string base = "run -m '" + model + "' -n 8 --temp 0 'What is it?' --image '" + media +
                           "gemma4_image/media/photo.jpg'";
  EXPECT_EQ(run_output(base, tmp).find("edgevl"), std::string::npos);
  EXPECT_NE(run_output(run + "photo.jpg'", tmp).find("edgevl"), std::string::npos);
  EXPECT_NE(run_output(run + "tall_chat.png'", tmp).find("edgevl"), std::string::npos);  // not in the data
}

TEST(Trainer, VisionLanguageGrpoSamplesFromImagePrompts) {
  // GRPO on prompts with an image: the sampler encodes the image with the inference model (the
  // adapter riding on it) and the policy's loss runs the image through the training towers.
  const fs::path dir = testing::TempDir() + "/edgevl_trainer_vlm_grpo_" + std::to_string(getpid());
  fs::remove_all(dir);
  test::make_tiny_gemma4(dir / "model");
  const std::string image = test::shared_dir() + "/golden/hf/processors/gemma4_image/media/photo.jpg";
  {
    std::ofstream d(dir / "prompts.jsonl");
    for (const char* q : {"What is it?", "Describe it.", "Name it."})
      d << nlohmann::json{{"prompt",
                           {{{"role", "user"},
                             {"content", {{{"type", "image"}, {"image", image}}, {{"type", "text"}, {"text", q}}}}}}}}
               .dump()
        << "\n";
  }
  const std::string out = (dir / "adapter").string();
  ASSERT_EQ(sh(bin() + " train grpo -m '" + (dir / "model").string() + "' --data '" + (dir / "prompts.jsonl").string() +
               "' --out '" + out + "' --max-steps 3 -b 1 --num-generations 2 --max-completion-length 3 " +
               "--reward length:2 --seed 1 --no-progress -t 2 2>/dev/null"),
            0);
  const auto log = read_log(out);
  ASSERT_EQ(log.size(), 3u);
  for (const auto& l : log) EXPECT_TRUE(l.contains("reward") && std::isfinite(l["loss"].get<double>())) << l.dump();
}

TEST(Trainer, MergeFoldsThePeftAdapterIntoTheBase) {
  // Independent reference: the golden lora.logits (PEFT on transformers) from the merged folder.
  const std::string dir = test::shared_dir() + "/golden/hf/train/llama";
  const std::string out = testing::TempDir() + "/edgevl_merged_llama";
  fs::remove_all(out);
  const MergeReport r = merge_lora(dir, dir + "/lora_adapter", out);
  EXPECT_EQ(r.merged, 14);
  auto golden = safetensors::File::open(dir + "/golden.safetensors");
  const Batch b = read_batch(*golden);
  const std::vector<float> ref = test::as_f32(*golden->find("lora.logits"));
  auto model = load_model(out);
  const auto rows = test::compare_unpadded_rows(*model, b, ref);
  EXPECT_GT(rows.rows, 0);
  EXPECT_LE(rows.worst, 1e-4);
  // GGUF in, GGUF out, through the CLI (the toy model has the golden model's shapes): the merged
  // file decodes as the base with the adapter applied at run time.
  const std::string merged = toy().dir + "/merged.gguf";
  ASSERT_EQ(sh(bin() + " merge -m '" + toy().model + "' --lora '" + dir + "/lora_adapter' --out '" + merged +
               "' 2>/dev/null"),
            0);
  Engine with = Engine::load(toy().model, 2), folded = Engine::load(merged, 2);
  with.attach_lora(dir + "/lora_adapter");
  const std::vector<int32_t> prompt = {1, 17, 99, 230, 5};
  Session a(with, 16), c(folded, 16);
  const Tensor& la = a.feed(prompt);
  const std::vector<float> lv = la.vec();
  EXPECT_LE(test::rel_error(lv, c.feed(prompt).vec()), 1e-5);
}

TEST(Trainer, ReadmeExampleChangesTheAnswer) {
  // examples/lora-toy/run.sh, the README's worked example, end to end: its held-out loss falls and
  // the question it never trained on gets the taught answer, with --lora and after merge.
  const std::string w = testing::TempDir() + "/edgevl_lora_toy_" + std::to_string(getpid());
  const std::string script = std::string(EDGEVL_SOURCE_DIR) + "/examples/lora-toy/run.sh";
  const std::string out = w + ".out";
  ASSERT_EQ(sh("EDGEVL='" + bin() + "' TOKENIZER_DIR='" + test::shared_dir() + "/fixtures/tokenizers/qwen3' '" + script +
               "' '" + w + "' > '" + out + "' 2>&1"),
            0);
  std::ifstream f(out);
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const size_t before = text.find("== before =="), lora = text.find("== after (--lora) =="),
               merged = text.find("== after (merged) ==");
  ASSERT_TRUE(before != std::string::npos && lora != std::string::npos && merged != std::string::npos) << text;
  EXPECT_EQ(text.substr(before, lora - before).find("Hello from edgevl!"), std::string::npos);
  EXPECT_NE(text.substr(lora, merged - lora).find("Hello from edgevl!"), std::string::npos) << text;
  EXPECT_NE(text.substr(merged).find("Hello from edgevl!"), std::string::npos) << text;
  const auto log = read_log(w + "/adapter");
  EXPECT_LT(log.back()["eval_loss"].get<double>(), 0.2);
}

TEST(TrainerLora, DropoutMasksTheAdapterInputAndItsGradient) {
  // A projection with a LoRA adapter under dropout 0.4: with the masks held fixed (same seed), the
  // backward matches finite differences of Σ c·y in x, A and B; masks change between forwards and
  // switch off in evaluation mode.
  const int64_t rows = 3, in = 8, out = 5, r = 2;
  std::mt19937 g(5);
  std::uniform_real_distribution<float> u(-1, 1);
  auto rnd = [&](int64_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = u(g);
    return v;
  };
  std::vector<float> w = rnd(out * in), x = rnd(rows * in), c = rnd(rows * out);
  const WeightRef wr = ops::f32_weight(w.data(), out, in);
  LoraPair p;
  p.module = "m";
  p.r = r;
  p.in = in;
  p.out = out;
  p.scaling = 1.5f;
  p.dropout = 0.4f;
  p.A = rnd(r * in);
  p.B = rnd(out * r);
  p.dA.assign(p.A.size(), 0.0f);
  p.dB.assign(p.B.size(), 0.0f);
  TrainLinear l;
  l.w = &wr;
  l.lora = &p;
  Context ctx(1);
  auto loss = [&] {
    p.dropout_seed = 77;
    std::vector<float> y(rows * out);
    l.forward(ctx, x.data(), rows, y.data());
    double s = 0;
    for (int64_t i = 0; i < rows * out; ++i) s += (double)c[i] * y[i];
    return s;
  };
  loss();
  int zeros = 0;
  for (float k : l.lora_keep) zeros += k == 0.0f;
  EXPECT_GT(zeros, 0);
  EXPECT_LT(zeros, (int)l.lora_keep.size());
  std::vector<float> dx(rows * in, 0.0f);
  l.backward(ctx, x.data(), c.data(), rows, dx.data());
  auto check = [&](std::vector<float>& v, const std::vector<float>& grad, const char* what) {
    for (size_t i = 0; i < v.size(); ++i) {
      const float keep = v[i];
      v[i] = keep + 1e-2f;
      const double up = loss();
      v[i] = keep - 1e-2f;
      const double down = loss();
      v[i] = keep;
      EXPECT_NEAR(grad[i], (up - down) / 2e-2, 2e-3) << what << " " << i;
    }
  };
  check(x, dx, "x");
  check(p.A, p.dA, "A");
  check(p.B, p.dB, "B");
  // New masks on the next forward without a reseed; none in evaluation mode.
  std::vector<float> y(rows * out);
  p.dropout_seed = 77;
  l.forward(ctx, x.data(), rows, y.data());
  const std::vector<float> first = l.lora_keep;
  l.forward(ctx, x.data(), rows, y.data());
  EXPECT_NE(first, l.lora_keep);
  LoraSet set;
  set.pairs.emplace("m", p);
  set.set_mode(false);
  EXPECT_FALSE(set.pairs.at("m").training);
}

TEST(TrainerLora, RecomputeGivesTheSameGradients) {
  // Activation checkpointing recomputes each layer in the backward, dropout masks included: the
  // gradients are bit-identical to keeping every activation (Gemma 4: with KV-shared layers).
  for (const char* c : {"llama", "gemma4_text"}) {
    const std::string dir = test::shared_dir() + "/golden/hf/train/" + c;
    auto golden = safetensors::File::open(dir + "/golden.safetensors");
    const Batch b = read_batch(*golden);
    Context ctx(2);
    std::vector<std::vector<float>> grads[2];
    for (int recompute = 0; recompute < 2; ++recompute) {
      auto m = open_trainable(dir);
      m->enable_base_grads();
      m->set_recompute(recompute == 1);
      LoraSet lora = LoraSet::load_peft(dir + "/lora_adapter", m->linear_modules());
      for (auto& [_, p] : lora.pairs) p.dropout = 0.2f;
      lora.set_mode(true, 11);
      m->attach_lora(&lora);
      sft_step(ctx, *m, b);
      for (auto& [_, p] : lora.pairs) {
        grads[recompute].push_back(p.dA);
        grads[recompute].push_back(p.dB);
      }
      for (const auto& p : m->base_params()) grads[recompute].push_back(p->grad);
    }
    EXPECT_GT(grads[0].size(), 28u) << c;
    EXPECT_EQ(grads[0], grads[1]) << c;
  }
}

TEST(TrainerData, PromptCompletionMasksTheCompletionAndEos) {
  Engine e = Engine::load(toy().model, 1);
  DataFormatter f(*e.tokenizer, std::nullopt);
  const Json row = {{"prompt", "Q:"}, {"completion", " ok"}};
  const SftExample s = f.sft(row);
  const auto p = e.tokenizer->encode("Q:", true, true), c = e.tokenizer->encode(" ok", false, true);
  ASSERT_EQ(s.ids.size(), p.size() + c.size() + 1);
  EXPECT_EQ(s.ids.back(), e.tokenizer->eos_id());
  for (size_t i = 0; i < s.ids.size(); ++i) EXPECT_EQ(s.loss[i], i >= p.size()) << i;
  const Batch b = collate_sft({&s, &s});
  EXPECT_EQ(b.B, 2);
  EXPECT_EQ(b.labels[0], kIgnoreIndex);
  EXPECT_EQ(b.labels[p.size()], c[0]);
  // Conversational rows need a chat template.
  EXPECT_THROW(f.sft(Json{{"messages", Json::array({{{"role", "user"}, {"content", "hi"}}})}}), Error);
  FormatOptions all;
  all.completion_only_loss = false;
  all.max_length = 3;
  const SftExample t = DataFormatter(*e.tokenizer, std::nullopt, all).sft(row);
  EXPECT_EQ(t.ids.size(), 3u);
  EXPECT_EQ(t.loss, std::vector<uint8_t>(3, 1));
}

// A media loader with fixed soft-token counts (images 3, audio 2), recording what a batch asked for:
// the formatter's placeholder expansion and truncation are tested apart from the processors
// (those run for real in the VisionLanguage* tests).
struct CountingMedia final : MediaLoader {
  MediaTokens t;
  mutable std::vector<std::string> appended;
  MediaTokens tokens() const override { return t; }
  int64_t soft_tokens(const MediaRef& m) const override { return m.kind == MediaRef::Kind::Image ? 3 : 2; }
  void append(const MediaRef& m, Batch& b) const override {
    appended.push_back(m.path);
    if (m.kind == MediaRef::Kind::Image) b.images.emplace_back();
    else b.audio.emplace_back();
  }
};

TEST(TrainerData, MediaPartsExpandInOrderAndTruncateWhole) {
  const fs::path dir = testing::TempDir() + "/edgevl_media_data_" + std::to_string(getpid());
  fs::remove_all(dir);
  test::make_tiny_gemma4(dir);
  Engine e = Engine::load(dir.string(), 1);
  CountingMedia media;
  media.t = e.model->media_tokens();
  DataFormatter f(*e.tokenizer, text::find_chat_template(dir.string()));
  f.set_media(&media, "/data");
  const Json row = {{"images", {"b.png"}},
                    {"messages",
                     {{{"role", "user"},
                       {"content",
                        {{{"type", "image"}, {"image", "a.png"}},
                         {{"type", "audio"}, {"audio", "/abs/c.wav"}},
                         {{"type", "image"}},
                         {{"type", "text"}, {"text", "Which?"}}}}},
                      {{"role", "assistant"}, {"content", "first"}}}}};
  const SftExample s = f.sft(row);
  ASSERT_EQ(s.media.size(), 3u);
  EXPECT_EQ(s.media[0].path, "/data/a.png");
  EXPECT_EQ(s.media[1].path, "/abs/c.wav");
  EXPECT_EQ(s.media[2].path, "/data/b.png");  // the bare part takes the row's "images" list
  // begin + 3 image slots + end, begin + 2 audio slots + end, then the second image.
  std::vector<int32_t> runs;
  for (int32_t id : s.ids)
    if (id == media.t.image || id == media.t.audio || id == media.t.begin_image || id == media.t.end_image ||
        id == media.t.begin_audio || id == media.t.end_audio)
      runs.push_back(id);
  const MediaTokens& t = media.t;
  EXPECT_EQ(runs, (std::vector<int32_t>{t.begin_image, t.image, t.image, t.image, t.end_image, t.begin_audio, t.audio,
                                        t.audio, t.end_audio, t.begin_image, t.image, t.image, t.image, t.end_image}));
  // The loss covers the assistant's turn only, none of the media.
  for (size_t i = 0; i < s.ids.size(); ++i)
    if (s.loss[i]) {
      EXPECT_TRUE(std::find(runs.begin(), runs.end(), s.ids[i]) == runs.end()) << i;
    }
  EXPECT_GT(std::count(s.loss.begin(), s.loss.end(), 1), 0);
  const Batch b = collate_sft({&s}, &media);
  EXPECT_EQ(media.appended, (std::vector<std::string>{"/data/a.png", "/abs/c.wav", "/data/b.png"}));
  EXPECT_EQ(b.images.size(), 2u);
  EXPECT_EQ(b.audio.size(), 1u);

  // A cut inside the second image drops it whole: the row ends before its begin token.
  const size_t second = std::find(s.ids.begin() + 10, s.ids.end(), t.begin_image) - s.ids.begin();
  FormatOptions o;
  o.max_length = (int64_t)second + 2;
  DataFormatter cut(*e.tokenizer, text::find_chat_template(dir.string()), o);
  cut.set_media(&media, "/data");
  const SftExample c = cut.sft(row);
  EXPECT_EQ(c.ids.size(), second);
  EXPECT_EQ(c.media.size(), 2u);

  // Clear errors: no file for a bare part; media for a model that takes none.
  Json bare = row;
  bare.erase("images");
  test::expect_error([&] { f.sft(bare); }, "names no file", "an image part without a file");
  DataFormatter text_only(*e.tokenizer, text::find_chat_template(dir.string()));
  test::expect_error([&] { text_only.sft(row); }, "takes no images", "image rows for a text model");
  fs::remove_all(dir);
}

TEST(TrainerData, PreferenceRowsStackChosenThenRejected) {
  Engine e = Engine::load(toy().model, 1);
  DataFormatter f(*e.tokenizer, std::nullopt);
  const PreferenceExample a = f.preference({{"prompt", "P"}, {"chosen", " a"}, {"rejected", " bb"}});
  const PreferenceBatch pb = collate_preference({&a});
  ASSERT_EQ(pb.rows.B, 2);
  const int64_t T = pb.rows.T;
  EXPECT_EQ(T, (int64_t)(a.prompt.size() + std::max(a.chosen.size(), a.rejected.size())));
  for (size_t i = 0; i < a.chosen.size(); ++i) EXPECT_EQ(pb.rows.input_ids[a.prompt.size() + i], a.chosen[i]);
  for (size_t i = 0; i < a.rejected.size(); ++i) EXPECT_EQ(pb.rows.input_ids[T + a.prompt.size() + i], a.rejected[i]);
  EXPECT_EQ(pb.completion_mask[0], 0);
  EXPECT_EQ(pb.completion_mask[a.prompt.size()], 1);
}

TEST(TrainerRewards, Specs) {
  const Json row = {{"answer", "42"}, {"n", 7}};
  EXPECT_EQ(make_reward("exact")->score(row, " 42\n"), 1.0);
  EXPECT_EQ(make_reward("exact")->score(row, "43"), 0.0);
  EXPECT_EQ(make_reward("contains:n")->score(row, "it is 7."), 1.0);
  EXPECT_EQ(make_reward("regex:^[0-9]+$")->score(row, "123"), 1.0);
  EXPECT_EQ(make_reward("json")->score(row, "```json\n{\"a\": 1}\n```"), 1.0);
  EXPECT_EQ(make_reward("json")->score(row, "{a: 1}"), 0.0);
  EXPECT_DOUBLE_EQ(make_reward("length:4")->score(row, "abcdef"), -0.5);
  EXPECT_EQ(make_reward("cmd:cat > /dev/null; echo 0.25")->score(row, "x"), 0.25);
  EXPECT_THROW(make_reward("cmd:echo nope")->score(row, "x"), Error);
  EXPECT_THROW(make_reward("regex:(")->score(row, "x"), Error);
  EXPECT_THROW(make_reward("bogus"), Error);
  const std::string schema = testing::TempDir() + "/edgevl_reward_schema.json";
  std::ofstream(schema) << R"({"type": "object", "required": ["x"], "properties": {"x": {"type": "integer"}}})";
  EXPECT_EQ(make_reward("json-schema:" + schema)->score(row, R"({"x": 3})"), 1.0);
  EXPECT_EQ(make_reward("json-schema:" + schema)->score(row, R"({"x": "3"})"), 0.0);
}

TEST(TrainerSchedule, MatchesTransformersFormulas) {
  // get_linear_schedule_with_warmup / get_cosine_schedule_with_warmup (num_cycles 0.5).
  for (int64_t s = 0; s < 100; ++s) {
    const double lin = s < 10 ? s / 10.0 : std::max(0.0, (100.0 - s) / 90.0);
    const double cos = s < 10 ? s / 10.0 : 0.5 * (1 + std::cos(M_PI * (s - 10) / 90.0));
    EXPECT_NEAR(schedule_factor("linear", s, 10, 100), lin, 1e-12);
    EXPECT_NEAR(schedule_factor("cosine", s, 10, 100), cos, 1e-12);
    EXPECT_NEAR(schedule_factor("constant", s, 10, 100), s < 10 ? s / 10.0 : 1.0, 1e-12);
  }
  EXPECT_THROW(schedule_factor("zigzag", 50, 10, 100), Error);
}

TEST(JsonSchema, Keywords) {
  using nlohmann::json;
  const json s = json::parse(R"({
    "type": "object", "required": ["name", "tags"], "additionalProperties": false,
    "$defs": {"tag": {"type": "string", "minLength": 1, "pattern": "^[a-z]+$"}},
    "properties": {
      "name": {"type": "string", "maxLength": 5},
      "age": {"type": "integer", "minimum": 0, "exclusiveMaximum": 150},
      "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}, "minItems": 1},
      "kind": {"enum": ["a", "b"]},
      "v": {"anyOf": [{"type": "null"}, {"type": "number", "multipleOf": 0.5}]}
    }})");
  EXPECT_EQ(text::json_schema_violation(s, json::parse(R"({"name": "ann", "tags": ["x"], "age": 3, "v": 1.5})")), "");
  EXPECT_NE(text::json_schema_violation(s, json::parse(R"({"tags": ["x"]})")), "");                  // required
  EXPECT_NE(text::json_schema_violation(s, json::parse(R"({"name": "ann", "tags": ["X"]})")), "");   // pattern via $ref
  EXPECT_NE(text::json_schema_violation(s, json::parse(R"({"name": "ann", "tags": []})")), "");      // minItems
  EXPECT_NE(text::json_schema_violation(s, json::parse(R"({"name": "annabel", "tags": ["x"]})")), "");  // maxLength
  EXPECT_NE(text::json_schema_violation(s, json::parse(R"({"name": "a", "tags": ["x"], "age": 150})")), "");
  EXPECT_NE(text::json_schema_violation(s, json::parse(R"({"name": "a", "tags": ["x"], "extra": 1})")), "");
  EXPECT_NE(text::json_schema_violation(s, json::parse(R"({"name": "a", "tags": ["x"], "kind": "c"})")), "");
  EXPECT_NE(text::json_schema_violation(s, json::parse(R"({"name": "a", "tags": ["x"], "v": 0.3})")), "");
  EXPECT_EQ(text::json_schema_violation(json::parse(R"({"oneOf": [{"type": "integer"}, {"minimum": 2}]})"), 1), "");
  EXPECT_NE(text::json_schema_violation(json::parse(R"({"oneOf": [{"type": "integer"}, {"minimum": 2}]})"), 3), "");
}

}  // namespace
}  // namespace edgevl::train
