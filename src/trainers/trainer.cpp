#include "trainers/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>

#include "core/error.h"
#include "core/thread_pool.h"
#include "io/safetensors.h"
#include "runtime/session.h"
#include "train/grad_ops.h"
#include "train/steps.h"
#include "trainers/media_loader.h"
#include "trainers/rewards.h"

namespace edgevl::train {

namespace fs = std::filesystem;

double schedule_factor(const std::string& schedule, int64_t step, int64_t warmup, int64_t total) {
  if (step < warmup) return (double)step / (double)std::max<int64_t>(1, warmup);
  if (schedule == "constant") return 1.0;
  const double progress = (double)(step - warmup) / (double)std::max<int64_t>(1, total - warmup);
  if (schedule == "linear") return std::max(0.0, 1.0 - progress);
  if (schedule == "cosine") return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));
  fail("train: unknown schedule '", schedule, "' (linear, cosine, constant)");
}

namespace {

const char* method_name(Method m) { return m == Method::Sft ? "sft" : m == Method::Dpo ? "dpo" : "grpo"; }

std::string clock_text(double seconds) {
  const int64_t s = (int64_t)std::max(0.0, seconds);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", (long long)(s / 3600), (long long)(s / 60 % 60), (long long)(s % 60));
  else std::snprintf(buf, sizeof buf, "%lld:%02lld", (long long)(s / 60), (long long)(s % 60));
  return buf;
}

// What a step produced, for the log.
struct StepStats {
  double loss = 0, tokens = 0, reward = 0, accuracy = 0, completion_length = 0;
  int64_t groups = 0;
};

class Trainer {
 public:
  explicit Trainer(const TrainOptions& o) : o_(o), ctx_(o.threads > 0 ? o.threads : default_thread_count()) {
    EV_CHECK(!o_.out.empty(), "train: give --out DIR");
    EV_CHECK(o_.batch_size > 0 && o_.grad_accum > 0 && o_.epochs > 0, "train: batch size, accumulation and epochs must be positive");
    EV_CHECK(o_.eval_split >= 0 && o_.eval_split < 1, "train: --eval-split must be in [0, 1)");
    model_ = open_trainable(o_.model);
    model_->set_recompute(o_.recompute);
    tokenizer_ = load_tokenizer_for(o_.model);
    EV_CHECK(tokenizer_, o_.model, ": no tokenizer (tokenizer.json or a GGUF vocabulary) to read the data with");
    std::optional<text::ChatTemplate> tmpl;
    if (!o_.chat_template.empty()) {
      tmpl = text::ChatTemplate{};
      tmpl->source = read_text_file(o_.chat_template);
      tmpl->origin = o_.chat_template;
      if (auto own = text::find_chat_template(o_.model)) {
        tmpl->bos_token = own->bos_token;
        tmpl->eos_token = own->eos_token;
      }
    } else {
      tmpl = text::find_chat_template(o_.model);
    }
    format_ = std::make_unique<DataFormatter>(*tokenizer_, tmpl, o_.format);
    media_ = open_media_loader(o_.model);
    load_data();
    const int64_t per_epoch = ((int64_t)train_examples() + o_.batch_size - 1) / o_.batch_size;
    total_ = o_.max_steps > 0 ? o_.max_steps : (o_.epochs * per_epoch + o_.grad_accum - 1) / o_.grad_accum;
    warmup_ = o_.warmup_steps > 0 ? o_.warmup_steps : (int64_t)std::ceil(o_.warmup_ratio * total_);
    micro_per_epoch_ = per_epoch;
    for (const auto& spec : o_.rewards) rewards_.push_back(make_reward(spec));
    EV_CHECK(o_.method != Method::Grpo || !rewards_.empty(), "train grpo: give at least one --reward");
  }

  void run();

 private:
  // Training mode with the dropout masks of micro-batch k (the same after --resume).
  void train_mode(int64_t k) { lora_.set_mode(true, o_.seed * 0x2545F4914F6CDD1Dull + (uint64_t)k); }
  void load_data();
  // Rows of micro-batch k (k counts micro-batches from the start of training): epoch k / per
  // epoch, in a permutation seeded by the seed and the epoch.
  std::vector<size_t> micro_rows(int64_t k);
  StepStats train_step(int64_t step);
  std::map<std::string, double> evaluate();
  // `files`: the prompt's media, preprocessed (prompt_files).
  std::vector<std::vector<int32_t>> sample(const PromptExample& p, const Batch& files, int64_t n, uint64_t seed,
                                           float temperature);
  // A prompt's media preprocessed once, for the sampler and every completion's training row.
  Batch prompt_files(const PromptExample& p) const {
    Batch files;
    for (const MediaRef& m : p.media) media_->append(m, files);
    return files;
  }
  // The prompt with its media's soft tokens from the inference model (its adapter attached).
  MediaPrompt media_prompt(const PromptExample& p, const Batch& files);
  void save_checkpoint(int64_t step);
  int64_t restore_checkpoint();
  nlohmann::json fingerprint() const;
  // The factors of every adapter this step's backwards reached (torch: grad is not None; an
  // adapter on a tower the step's batches did not use is neither clipped nor updated).
  template <class Fn>
  void each_factor(Fn&& fn) {
    for (auto& [module, p] : lora_.pairs) {
      if (!p.has_grad) continue;
      fn(LoraSet::peft_name(module, 'A', "default"), p.A, p.dA);
      fn(LoraSet::peft_name(module, 'B', "default"), p.B, p.dB);
    }
  }

  TrainOptions o_;
  Context ctx_;
  std::unique_ptr<TrainableLM> model_;
  std::unique_ptr<text::Tokenizer> tokenizer_;
  std::unique_ptr<DataFormatter> format_;
  std::unique_ptr<MediaLoader> media_;  // vision-language models: images / audio in the rows
  LoraSet lora_;
  AdamW opt_;
  std::map<std::string, AdamWState> opt_state_;
  std::vector<std::unique_ptr<Reward>> rewards_;
  // GRPO samples with the inference model, the adapter riding on it (AttachedLora).
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<AttachedLora> sampler_lora_;

  std::vector<Json> train_rows_, eval_rows_;
  // Examples a training epoch goes through (packed rows count once each).
  size_t train_examples() const {
    return o_.method == Method::Sft ? sft_train_.size() : o_.method == Method::Dpo ? pref_train_.size() : prompt_train_.size();
  }
  std::vector<SftExample> sft_train_, sft_eval_;
  std::vector<PreferenceExample> pref_train_, pref_eval_;
  std::vector<PromptExample> prompt_train_, prompt_eval_;
  int64_t total_ = 0, warmup_ = 0, micro_per_epoch_ = 1;
  int64_t cached_epoch_ = -1;
  std::vector<size_t> perm_;
};

void Trainer::load_data() {
  std::vector<Json> rows = read_jsonl(o_.data);
  if (!o_.eval_data.empty()) {
    eval_rows_ = read_jsonl(o_.eval_data);
    train_rows_ = std::move(rows);
  } else {
    std::vector<size_t> idx(rows.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::mt19937_64 rng(o_.seed ^ 0x5eed);
    std::shuffle(idx.begin(), idx.end(), rng);
    const size_t n_eval = (size_t)std::floor(o_.eval_split * rows.size());
    for (size_t i = 0; i < idx.size(); ++i) (i < n_eval ? eval_rows_ : train_rows_).push_back(rows[idx[i]]);
  }
  EV_CHECK(!train_rows_.empty(), o_.data, ": no training rows left after the evaluation split");
  // Media paths are relative to the file a row came from.
  const std::string eval_file = o_.eval_data.empty() ? o_.data : o_.eval_data;
  auto tokenize = [&](const std::vector<Json>& src, auto& dst, auto fmt) {
    format_->set_media(media_.get(), fs::path(&src == &eval_rows_ ? eval_file : o_.data).parent_path().string());
    for (size_t i = 0; i < src.size(); ++i) {
      try {
        dst.push_back(fmt(src[i]));
      } catch (const Error& e) {
        fail(&src == &eval_rows_ ? eval_file : o_.data, ": row ", i + 1, ": ", e.what());
      }
    }
  };
  switch (o_.method) {
    case Method::Sft:
      tokenize(train_rows_, sft_train_, [&](const Json& r) { return format_->sft(r); });
      tokenize(eval_rows_, sft_eval_, [&](const Json& r) { return format_->sft(r); });
      if (o_.packing) {
        sft_train_ = pack_sft(sft_train_, o_.format.max_length);
        sft_eval_ = pack_sft(sft_eval_, o_.format.max_length);
      }
      break;
    case Method::Dpo:
      tokenize(train_rows_, pref_train_, [&](const Json& r) { return format_->preference(r); });
      tokenize(eval_rows_, pref_eval_, [&](const Json& r) { return format_->preference(r); });
      break;
    case Method::Grpo:
      tokenize(train_rows_, prompt_train_, [&](const Json& r) { return format_->prompt(r); });
      tokenize(eval_rows_, prompt_eval_, [&](const Json& r) { return format_->prompt(r); });
      break;
  }
}

std::vector<size_t> Trainer::micro_rows(int64_t k) {
  const int64_t epoch = k / micro_per_epoch_, i = k % micro_per_epoch_;
  if (epoch != cached_epoch_) {
    perm_.resize(train_examples());
    std::iota(perm_.begin(), perm_.end(), 0);
    std::mt19937_64 rng(o_.seed + 1000003ull * (uint64_t)epoch);
    std::shuffle(perm_.begin(), perm_.end(), rng);
    cached_epoch_ = epoch;
  }
  const size_t b = i * o_.batch_size, e = std::min(perm_.size(), (size_t)((i + 1) * o_.batch_size));
  return {perm_.begin() + b, perm_.begin() + e};
}

MediaPrompt Trainer::media_prompt(const PromptExample& p, const Batch& files) {
  MediaPrompt mp;
  mp.tokens = p.prompt;
  if (p.media.empty()) return mp;
  CausalLM& model = *engine_->model;
  const MediaTokens ids = model.media_tokens();
  size_t next_image = 0, next_audio = 0;
  Tensor soft;
  int32_t kind = -1;  // the placeholder id of the file being placed
  int64_t used = 0;   // its soft tokens placed so far
  for (size_t t = 0; t < mp.tokens.size(); ++t) {
    const int32_t id = mp.tokens[t];
    if (id != ids.image && id != ids.audio) continue;
    if (kind != id || used == soft.dim(0)) {  // the next file (the data formatter sized each run)
      EV_CHECK(kind < 0 || used == soft.dim(0), "train grpo: a placeholder run is shorter than its file's ",
               soft.dim(0), " soft tokens");
      kind = id;
      if (id == ids.image) {
        EV_CHECK(next_image < files.images.size(), "train grpo: more image placeholders than images");
        const BatchImage& im = files.images[next_image++];
        model.encode_image(*engine_->ctx, im.pixels.data(), im.positions.data(), im.n_patches, soft);
      } else {
        EV_CHECK(next_audio < files.audio.size(), "train grpo: more audio placeholders than clips");
        const BatchAudio& a = files.audio[next_audio++];
        model.encode_audio(*engine_->ctx, a.features.data(), a.mask.empty() ? nullptr : a.mask.data(), a.frames,
                           (int64_t)a.features.size() / a.frames, soft);
      }
      used = 0;
    }
    mp.embed_positions.push_back((int32_t)t);
    mp.embeds.insert(mp.embeds.end(), soft.row(used), soft.row(used) + soft.dim(1));
    ++used;
  }
  EV_CHECK((kind < 0 || used == soft.dim(0)) && next_image == files.images.size() && next_audio == files.audio.size(),
           "train grpo: the prompt's placeholders do not match its media");
  return mp;
}

std::vector<std::vector<int32_t>> Trainer::sample(const PromptExample& p, const Batch& files, int64_t n,
                                                  uint64_t seed, float temperature) {
  if (!engine_) {
    engine_ = std::make_unique<Engine>(Engine::load(o_.model, ctx_.pool.size()));
    sampler_lora_ = std::make_unique<AttachedLora>(*engine_->model, lora_);
  }
  // Soft tokens once per call: the towers' adapters (if any) change only between steps.
  const MediaPrompt prompt = media_prompt(p, files);
  std::vector<std::vector<int32_t>> out;
  for (int64_t i = 0; i < n; ++i) {
    Session s(*engine_, (int64_t)prompt.tokens.size() + o_.max_completion_length + 1);
    GenerateOptions g;
    g.max_new_tokens = (int32_t)o_.max_completion_length;
    g.sampling.temperature = temperature;  // TRL's defaults: no top-k / top-p / min-p
    g.sampling.top_k = 0;
    g.sampling.top_p = 1.0f;
    g.sampling.min_p = 0.0f;
    g.sampling.seed = seed * 0x9E3779B97F4A7C15ull + (uint64_t)i;
    GenerateResult r = prompt.embed_positions.empty() ? s.generate(prompt.tokens, g) : s.generate(prompt, g);
    if (r.eog_token >= 0) r.tokens.push_back(r.eog_token);  // TRL keeps the EOS in the completion
    out.push_back(std::move(r.tokens));
  }
  return out;
}

StepStats Trainer::train_step(int64_t step) {
  StepStats st;
  lora_.zero_grad();
  const float scale = 1.0f / (float)o_.grad_accum;
  switch (o_.method) {
    case Method::Sft: {
      std::vector<Batch> batches;
      int64_t items = 0;
      for (int64_t j = 0; j < o_.grad_accum; ++j) {
        std::vector<const SftExample*> rows;
        for (size_t i : micro_rows(step * o_.grad_accum + j)) rows.push_back(&sft_train_[i]);
        batches.push_back(collate_sft(rows, media_.get()));
        for (int64_t t : shifted_targets(batches.back())) items += t != kIgnoreIndex;
      }
      // transformers normalises by the label tokens of the whole accumulated batch.
      for (size_t j = 0; j < batches.size(); ++j) {
        const Batch& b = batches[j];
        train_mode(step * o_.grad_accum + (int64_t)j);
        st.loss += sft_step(ctx_, *model_, b, std::max<int64_t>(items, 1));
        st.tokens += (double)std::count(b.attention_mask.begin(), b.attention_mask.end(), 1);
      }
      break;
    }
    case Method::Dpo: {
      for (int64_t j = 0; j < o_.grad_accum; ++j) {
        std::vector<const PreferenceExample*> rows;
        for (size_t i : micro_rows(step * o_.grad_accum + j)) rows.push_back(&pref_train_[i]);
        const PreferenceBatch b = collate_preference(rows, media_.get());
        train_mode(step * o_.grad_accum + j);
        const DpoStepResult r = dpo_step(ctx_, *model_, lora_, b, o_.dpo_beta, scale);
        st.loss += r.dpo.loss * scale;
        for (size_t i = 0; i < r.dpo.chosen_rewards.size(); ++i)
          st.accuracy += (r.dpo.chosen_rewards[i] > r.dpo.rejected_rewards[i]) * scale / r.dpo.chosen_rewards.size();
        st.tokens += 2.0 * (double)std::count(b.rows.attention_mask.begin(), b.rows.attention_mask.end(), 1);
      }
      break;
    }
    case Method::Grpo: {
      // Generate and score every micro-batch of the step first: the dapo loss divides by the
      // completion tokens of the whole step.
      std::vector<GrpoBatch> batches;
      double items = 0;
      for (int64_t j = 0; j < o_.grad_accum; ++j) {
        const auto rows = micro_rows(step * o_.grad_accum + j);
        GrpoBatch g;
        const int64_t G = o_.num_generations;
        std::vector<std::vector<int32_t>> prompts, completions;
        std::vector<float> rewards;
        for (size_t r = 0; r < rows.size(); ++r) {
          const PromptExample& p = prompt_train_[rows[r]];
          const uint64_t seed = o_.seed + 7919ull * (uint64_t)(step * o_.grad_accum + j) + 104729ull * r;
          const Batch files = prompt_files(p);
          for (auto& c : sample(p, files, G, seed, o_.temperature)) {
            const std::string text = tokenizer_->decode(c, true);
            double score = 0;
            for (const auto& fn : rewards_) score += fn->score(p.row, text);
            rewards.push_back((float)score);
            prompts.push_back(p.prompt);
            // Every completion's row carries its prompt's files.
            g.images.insert(g.images.end(), files.images.begin(), files.images.end());
            g.audio.insert(g.audio.end(), files.audio.begin(), files.audio.end());
            st.completion_length += (double)c.size();
            if (c.empty()) c.push_back(tokenizer_->eos_id() >= 0 ? tokenizer_->eos_id() : 0);  // one scored position
            completions.push_back(std::move(c));
          }
        }
        g.G = (int64_t)prompts.size();
        for (const auto& p : prompts) g.P = std::max<int64_t>(g.P, (int64_t)p.size());
        for (const auto& c : completions) g.C = std::max<int64_t>(g.C, (int64_t)c.size());
        g.prompt_ids.assign(g.G * g.P, 0);
        g.prompt_mask.assign(g.G * g.P, 0);
        g.completion_ids.assign(g.G * g.C, 0);
        g.completion_mask.assign(g.G * g.C, 0);
        for (int64_t i = 0; i < g.G; ++i) {
          const int64_t pad = g.P - (int64_t)prompts[i].size();  // prompts left-padded
          for (size_t t = 0; t < prompts[i].size(); ++t) {
            g.prompt_ids[i * g.P + pad + t] = prompts[i][t];
            g.prompt_mask[i * g.P + pad + t] = 1;
          }
          for (size_t t = 0; t < completions[i].size(); ++t) {
            g.completion_ids[i * g.C + t] = completions[i][t];
            g.completion_mask[i * g.C + t] = 1;
          }
        }
        g.advantages = group_advantages(rewards, G);
        for (float r : rewards) st.reward += r;
        st.groups += g.G;
        for (uint8_t m : g.completion_mask) items += m;
        st.tokens += (double)std::count(g.prompt_mask.begin(), g.prompt_mask.end(), 1) + items;
        batches.push_back(std::move(g));
      }
      for (size_t j = 0; j < batches.size(); ++j) {
        GrpoBatch& g = batches[j];
        train_mode(step * o_.grad_accum + (int64_t)j);
        g.num_items = items;
        st.loss += grpo_step(ctx_, *model_, lora_, g, o_.grpo).grpo.loss;
      }
      st.reward /= std::max<int64_t>(1, st.groups);
      st.completion_length /= std::max<int64_t>(1, st.groups);
      break;
    }
  }
  return st;
}

std::map<std::string, double> Trainer::evaluate() {
  std::map<std::string, double> m;
  lora_.set_mode(false);  // no dropout
  switch (o_.method) {
    case Method::Sft: {
      if (sft_eval_.empty()) break;
      double sum = 0, count = 0;
      for (size_t i = 0; i < sft_eval_.size(); i += o_.batch_size) {
        std::vector<const SftExample*> rows;
        for (size_t j = i; j < std::min(sft_eval_.size(), i + o_.batch_size); ++j) rows.push_back(&sft_eval_[j]);
        const Batch b = collate_sft(rows, media_.get());
        model_->forward(ctx_, b);
        int64_t n = 0;
        for (int64_t t : shifted_targets(b)) n += t != kIgnoreIndex;
        sum += causal_lm_loss(model_->logits(), b, nullptr, 0, &ctx_.pool) * (double)n;
        count += (double)n;
      }
      m["eval_loss"] = count > 0 ? sum / count : 0.0;
      break;
    }
    case Method::Dpo: {
      if (pref_eval_.empty()) break;
      double loss = 0, acc = 0, n = 0;
      for (size_t i = 0; i < pref_eval_.size(); i += o_.batch_size) {
        std::vector<const PreferenceExample*> rows;
        for (size_t j = i; j < std::min(pref_eval_.size(), i + o_.batch_size); ++j) rows.push_back(&pref_eval_[j]);
        const DpoStepResult r = dpo_step(ctx_, *model_, lora_, collate_preference(rows, media_.get()), o_.dpo_beta, 1.0f, false);
        loss += r.dpo.loss * (double)rows.size();
        for (size_t k = 0; k < rows.size(); ++k) acc += r.dpo.chosen_rewards[k] > r.dpo.rejected_rewards[k];
        n += (double)rows.size();
      }
      m["eval_loss"] = loss / n;
      m["eval_reward_accuracy"] = acc / n;
      break;
    }
    case Method::Grpo: {
      if (prompt_eval_.empty()) break;
      double reward = 0;
      for (const PromptExample& p : prompt_eval_) {
        const auto c = sample(p, prompt_files(p), 1, o_.seed, 0.0f);  // greedy
        for (const auto& fn : rewards_) reward += fn->score(p.row, tokenizer_->decode(c[0], true));
      }
      m["eval_reward"] = reward / (double)prompt_eval_.size();
      break;
    }
  }
  return m;
}

nlohmann::json Trainer::fingerprint() const {
  return {{"method", method_name(o_.method)}, {"model", o_.model},         {"data", o_.data},
          {"batch_size", o_.batch_size},      {"grad_accum", o_.grad_accum}, {"seed", o_.seed},
          {"total_steps", total_},           {"lr", o_.adamw.lr},           {"schedule", o_.schedule},
          {"warmup_steps", warmup_},         {"lora_r", o_.lora.r},         {"lora_alpha", o_.lora.alpha},
          {"packing", o_.packing},           {"max_length", o_.format.max_length}};
}

void Trainer::save_checkpoint(int64_t step) {
  const fs::path final_dir = fs::path(o_.out) / ("checkpoint-" + std::to_string(step));
  const fs::path tmp = fs::path(o_.out) / (".checkpoint-" + std::to_string(step) + ".tmp");
  fs::remove_all(tmp);
  lora_.save_peft(tmp.string(), o_.model);
  safetensors::Writer w;
  std::vector<std::vector<float>> keep;  // the writer borrows its data until write()
  nlohmann::json param_steps = nlohmann::json::object();
  for (auto& [name, s] : opt_state_) {
    w.add("exp_avg." + name, DType::F32, {(int64_t)s.m.size()}, s.m.data(), s.m.size() * sizeof(float));
    w.add("exp_avg_sq." + name, DType::F32, {(int64_t)s.v.size()}, s.v.data(), s.v.size() * sizeof(float));
    param_steps[name] = s.step;
  }
  w.write((tmp / "optimizer.safetensors").string());
  nlohmann::json state = {{"step", step}, {"optimizer_steps", param_steps}, {"run", fingerprint()}};
  {
    std::ofstream f(tmp / "trainer_state.json");
    f << state.dump(2) << "\n";
    EV_CHECK(f.good(), (tmp / "trainer_state.json").string(), ": write failed");
  }
  fs::remove_all(final_dir);
  fs::rename(tmp, final_dir);
  // Keep the newest save_total_limit checkpoints.
  std::vector<int64_t> steps;
  for (const auto& e : fs::directory_iterator(o_.out)) {
    const std::string n = e.path().filename().string();
    if (e.is_directory() && n.rfind("checkpoint-", 0) == 0) steps.push_back(std::stoll(n.substr(11)));
  }
  std::sort(steps.begin(), steps.end());
  for (size_t i = 0; o_.save_total_limit > 0 && i + o_.save_total_limit < steps.size(); ++i)
    fs::remove_all(fs::path(o_.out) / ("checkpoint-" + std::to_string(steps[i])));
}

int64_t Trainer::restore_checkpoint() {
  int64_t best = -1;
  if (fs::exists(o_.out))
    for (const auto& e : fs::directory_iterator(o_.out)) {
      const std::string n = e.path().filename().string();
      if (e.is_directory() && n.rfind("checkpoint-", 0) == 0 && fs::exists(e.path() / "trainer_state.json") &&
          n.find_first_not_of("0123456789", 11) == std::string::npos && n.size() > 11)
        best = std::max<int64_t>(best, std::stoll(n.substr(11)));
    }
  if (best < 0) return 0;
  const fs::path dir = fs::path(o_.out) / ("checkpoint-" + std::to_string(best));
  const nlohmann::json state = nlohmann::json::parse(read_text_file((dir / "trainer_state.json").string()), nullptr, false);
  EV_CHECK(!state.is_discarded() && state.contains("run"), (dir / "trainer_state.json").string(), ": unreadable");
  EV_CHECK(state["run"] == fingerprint(), dir.string(), ": this checkpoint belongs to a run with other settings (",
           state["run"].dump(), "); resume with the same options or use another --out");
  lora_ = LoraSet::load_peft(dir.string(), model_->linear_modules());
  auto f = safetensors::File::open((dir / "optimizer.safetensors").string());
  for (const TensorRef& t : f->tensors()) {
    const bool m = t.name.rfind("exp_avg.", 0) == 0;
    const std::string name = t.name.substr(m ? 8 : 11);
    auto& dst = m ? opt_state_[name].m : opt_state_[name].v;
    dst.resize(t.numel());
    std::memcpy(dst.data(), t.data, t.numel() * sizeof(float));
  }
  const nlohmann::json& param_steps = state["optimizer_steps"];
  EV_CHECK(param_steps.is_object(), (dir / "trainer_state.json").string(), ": optimizer_steps must map parameters to ",
           "their step counts");
  for (auto& [name, s] : opt_state_) {
    EV_CHECK(param_steps.contains(name) && param_steps[name].is_number_integer(), (dir / "trainer_state.json").string(),
             ": no step count for ", name);
    s.step = param_steps[name].get<int64_t>();
  }
  return state["step"].get<int64_t>();
}

void Trainer::run() {
  fs::create_directories(o_.out);
  lora_ = LoraSet::create(o_.lora, model_->linear_modules(), o_.seed);
  opt_ = AdamW(o_.adamw);
  int64_t start = 0;
  if (o_.resume) {
    start = restore_checkpoint();
    if (start > 0) std::fprintf(stderr, "edgevl train: resuming from %s/checkpoint-%lld\n", o_.out.c_str(), (long long)start);
  }
  model_->attach_lora(&lora_);
  if (o_.packing)
    std::fprintf(stderr, "edgevl train: packed into %zu training rows and %zu held out of up to %lld tokens\n",
                 sft_train_.size(), sft_eval_.size(), (long long)o_.format.max_length);
  std::fprintf(stderr,
               "edgevl train %s: %zu training rows, %zu held out; %lld steps (batch %lld x %lld accumulation); LoRA r=%lld "
               "on %zu linears (%lld parameters)\n",
               method_name(o_.method), train_rows_.size(), eval_rows_.size(), (long long)total_,
               (long long)o_.batch_size, (long long)o_.grad_accum, (long long)o_.lora.r, lora_.pairs.size(),
               (long long)lora_.num_parameters());
  std::ofstream log(fs::path(o_.out) / "log.jsonl", std::ios::app);
  const bool tty = o_.progress && isatty(2);
  const auto t0 = std::chrono::steady_clock::now();
  double tokens = 0;
  const int64_t save_every = o_.save_every > 0 ? o_.save_every : std::max<int64_t>(1, micro_per_epoch_ / o_.grad_accum);
  const int64_t eval_every = o_.eval_every > 0 ? o_.eval_every : save_every;
  for (int64_t step = start; step < total_; ++step) {
    const auto step_t0 = std::chrono::steady_clock::now();
    const StepStats st = train_step(step);
    // Clip the global gradient norm (torch.nn.utils.clip_grad_norm_), then step AdamW.
    double sq = 0;
    each_factor([&](const std::string&, std::vector<float>&, std::vector<float>& g) {
      for (float x : g) sq += (double)x * x;
    });
    const double norm = std::sqrt(sq);
    if (o_.max_grad_norm > 0 && norm > o_.max_grad_norm) {
      const float c = (float)(o_.max_grad_norm / (norm + 1e-6));
      each_factor([&](const std::string&, std::vector<float>&, std::vector<float>& g) {
        for (float& x : g) x *= c;
      });
    }
    const double lr = o_.adamw.lr * schedule_factor(o_.schedule, step, warmup_, total_);
    opt_.set_lr(lr);
    each_factor([&](const std::string& name, std::vector<float>& w, std::vector<float>& g) {
      opt_.update(w.data(), g.data(), opt_state_[name], (int64_t)w.size());
    });

    tokens += st.tokens;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int64_t done = step + 1 - start;
    const double eta = elapsed / (double)done * (double)(total_ - step - 1);
    nlohmann::json rec = {{"step", step + 1},
                          {"loss", st.loss},
                          {"lr", lr},
                          {"grad_norm", norm},
                          {"tokens", st.tokens},
                          {"step_seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - step_t0).count()},
                          {"tokens_per_second", tokens / std::max(elapsed, 1e-9)}};
    if (o_.method == Method::Dpo) rec["reward_accuracy"] = st.accuracy;
    if (o_.method == Method::Grpo) {
      rec["reward"] = st.reward;
      rec["completion_length"] = st.completion_length;
    }
    const bool last = step + 1 == total_;
    if ((step + 1) % eval_every == 0 || last)
      for (const auto& [k, v] : evaluate()) rec[k] = v;
    log << rec.dump() << "\n" << std::flush;
    char line[320];
    int n = std::snprintf(line, sizeof line, "step %lld/%lld | loss %.4f | lr %.2e | %.0f tok/s | ETA %s",
                          (long long)(step + 1), (long long)total_, st.loss, lr, tokens / std::max(elapsed, 1e-9),
                          clock_text(eta).c_str());
    if (o_.method == Method::Grpo) n += std::snprintf(line + n, sizeof line - n, " | reward %.3f", st.reward);
    if (o_.method == Method::Dpo) n += std::snprintf(line + n, sizeof line - n, " | acc %.2f", st.accuracy);
    for (const char* k : {"eval_loss", "eval_reward", "eval_reward_accuracy"})
      if (rec.contains(k)) n += std::snprintf(line + n, sizeof line - n, " | %s %.4f", k, rec[k].get<double>());
    if (tty) std::fprintf(stderr, "\r\033[K%s", line);
    if ((step + 1) % std::max<int64_t>(1, o_.log_every) == 0 || last || rec.contains("eval_loss") || rec.contains("eval_reward"))
      tty ? (void)std::fputc('\n', stderr) : (void)std::fprintf(stderr, "%s\n", line);
    if ((step + 1) % save_every == 0 || last) save_checkpoint(step + 1);
  }
  lora_.save_peft(o_.out, o_.model);
  std::fprintf(stderr, "edgevl train: adapter written to %s (run it with: edgevl run -m %s --lora %s)\n",
               o_.out.c_str(), o_.model.c_str(), o_.out.c_str());
}

}  // namespace

void train(const TrainOptions& opts) { Trainer(opts).run(); }

}  // namespace edgevl::train
