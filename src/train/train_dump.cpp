#include "train/train_dump.h"

#include <cstring>
#include <map>

#include "core/error.h"
#include "train/grad_ops.h"
#include "train/steps.h"

namespace edgevl::train {

namespace {

std::vector<int64_t> read_ints(const safetensors::File& f, const std::string& name, std::vector<int64_t>& shape) {
  const TensorRef* t = f.find(name);
  EV_CHECK(t, f.path(), ": no tensor '", name, "'");
  shape = t->shape;
  std::vector<int64_t> v(t->numel());
  for (int64_t i = 0; i < t->numel(); ++i) {
    if (t->dtype == DType::I64) {
      std::memcpy(&v[i], t->data + i * 8, 8);
    } else if (t->dtype == DType::I32) {
      int32_t x;
      std::memcpy(&x, t->data + i * 4, 4);
      v[i] = x;
    } else if (t->dtype == DType::BOOL || t->dtype == DType::U8) {
      v[i] = t->data[i];
    } else {
      fail(f.path(), ": '", name, "' must be an integer tensor");
    }
  }
  return v;
}

std::vector<float> read_floats(const safetensors::File& f, const std::string& name, int64_t n) {
  const TensorRef* t = f.find(name);
  EV_CHECK(t && t->dtype == DType::F32 && t->numel() == n, f.path(), ": '", name, "' must be F32 with ", n, " values");
  std::vector<float> v(n);
  std::memcpy(v.data(), t->data, n * sizeof(float));
  return v;
}

// pixel_values + image_position_ids, input_features + input_features_mask under `prefix`.
void read_media(const safetensors::File& f, const std::string& prefix, std::vector<BatchImage>& images,
                std::vector<BatchAudio>& audio) {
  if (const TensorRef* px = f.find(prefix + "pixel_values")) {
    EV_CHECK(px->shape.size() == 3, f.path(), ": ", prefix, "pixel_values must be [images, patches, values]");
    const int64_t n = px->shape[0], P = px->shape[1], V = px->shape[2];
    const std::vector<float> pixels = read_floats(f, prefix + "pixel_values", n * P * V);
    std::vector<int64_t> shape;
    const std::vector<int64_t> pos = read_ints(f, prefix + "image_position_ids", shape);
    EV_CHECK(shape == std::vector<int64_t>({n, P, 2}), f.path(), ": ", prefix, "image_position_ids must be [", n,
             ", ", P, ", 2]");
    for (int64_t i = 0; i < n; ++i)
      images.push_back({std::vector<float>(pixels.begin() + i * P * V, pixels.begin() + (i + 1) * P * V),
                        std::vector<int64_t>(pos.begin() + i * P * 2, pos.begin() + (i + 1) * P * 2), P});
  }
  if (const TensorRef* ft = f.find(prefix + "input_features")) {
    EV_CHECK(ft->shape.size() == 3, f.path(), ": ", prefix, "input_features must be [clips, frames, mel bins]");
    const int64_t n = ft->shape[0], F = ft->shape[1], M = ft->shape[2];
    const std::vector<float> feats = read_floats(f, prefix + "input_features", n * F * M);
    std::vector<int64_t> mask, shape;
    if (f.find(prefix + "input_features_mask")) {
      mask = read_ints(f, prefix + "input_features_mask", shape);
      EV_CHECK(shape == std::vector<int64_t>({n, F}), f.path(), ": ", prefix, "input_features_mask must be [", n,
               ", ", F, "]");
    }
    for (int64_t i = 0; i < n; ++i) {
      BatchAudio a;
      a.features.assign(feats.begin() + i * F * M, feats.begin() + (i + 1) * F * M);
      if (!mask.empty())
        for (int64_t t = 0; t < F; ++t) a.mask.push_back(mask[i * F + t] != 0);
      a.frames = F;
      audio.push_back(std::move(a));
    }
  }
}

}  // namespace

Batch read_batch(const safetensors::File& f, const std::string& prefix) {
  Batch b;
  std::vector<int64_t> shape, s2;
  const auto ids = read_ints(f, prefix + "input_ids", shape);
  EV_CHECK(shape.size() == 2 || shape.size() == 1, f.path(), ": ", prefix, "input_ids must be [B, T] or [T]");
  b.B = shape.size() == 2 ? shape[0] : 1;
  b.T = shape.back();
  b.input_ids.assign(ids.begin(), ids.end());
  b.labels = read_ints(f, prefix + "labels", s2);
  EV_CHECK(s2 == shape, f.path(), ": ", prefix, "labels and input_ids differ in shape");
  if (f.find(prefix + "attention_mask")) {
    const auto m = read_ints(f, prefix + "attention_mask", s2);
    EV_CHECK(s2 == shape, f.path(), ": ", prefix, "attention_mask and input_ids differ in shape");
    b.attention_mask.assign(m.begin(), m.end());
    for (uint8_t& x : b.attention_mask) x = x != 0;
  } else {
    b.attention_mask.assign(ids.size(), 1);
  }
  read_media(f, prefix, b.images, b.audio);
  return b;
}

namespace {

std::vector<uint8_t> read_mask(const safetensors::File& f, const std::string& name, const std::vector<int64_t>& shape) {
  std::vector<int64_t> s;
  const auto v = read_ints(f, name, s);
  EV_CHECK(s == shape, f.path(), ": '", name, "' does not match the ids' shape");
  std::vector<uint8_t> m(v.size());
  for (size_t i = 0; i < v.size(); ++i) m[i] = v[i] != 0;
  return m;
}

// Drops the last position of each row: [B, T] -> [B, T-1] (next-token quantities).
std::vector<float> drop_last(const std::vector<float>& v, int64_t B, int64_t T) {
  std::vector<float> o;
  for (int64_t i = 0; i < B; ++i) o.insert(o.end(), v.begin() + i * T, v.begin() + i * T + T - 1);
  return o;
}

PreferenceBatch read_preference_batch(const safetensors::File& in) {
  PreferenceBatch p;
  Batch& b = p.rows;
  std::vector<int64_t> shape;
  const auto ids = read_ints(in, "dpo.inputs.input_ids", shape);
  EV_CHECK(shape.size() == 2 && shape[0] % 2 == 0, in.path(), ": dpo.inputs.input_ids must be [2n, T]");
  b.B = shape[0];
  b.T = shape[1];
  b.input_ids.assign(ids.begin(), ids.end());
  b.attention_mask = read_mask(in, "dpo.inputs.attention_mask", shape);
  b.labels.assign(b.B * b.T, kIgnoreIndex);
  p.completion_mask = read_mask(in, "dpo.inputs.completion_mask", shape);
  read_media(in, "dpo.inputs.", b.images, b.audio);
  return p;
}

GrpoBatch read_grpo_batch(const safetensors::File& in) {
  GrpoBatch g;
  std::vector<int64_t> ps, cs, s;
  const auto prompt = read_ints(in, "grpo.inputs.prompt_ids", ps);
  const auto completion = read_ints(in, "grpo.inputs.completion_ids", cs);
  EV_CHECK(ps.size() == 2 && cs.size() == 2 && ps[0] == cs[0], in.path(),
           ": grpo.inputs prompt_ids / completion_ids must be [G, P] / [G, C]");
  g.G = ps[0];
  g.P = ps[1];
  g.C = cs[1];
  g.prompt_ids.assign(prompt.begin(), prompt.end());
  g.completion_ids.assign(completion.begin(), completion.end());
  g.prompt_mask = read_mask(in, "grpo.inputs.prompt_mask", ps);
  g.completion_mask = read_mask(in, "grpo.inputs.completion_mask", cs);
  g.advantages = read_floats(in, "grpo.inputs.advantages", g.G);
  const auto items = read_ints(in, "grpo.inputs.num_items_in_batch", s);
  EV_CHECK(items.size() == 1, in.path(), ": grpo.inputs.num_items_in_batch must be a scalar");
  g.num_items = (double)items[0];
  read_media(in, "grpo.inputs.", g.images, g.audio);
  return g;
}

}  // namespace

std::vector<NamedTensor> train_dump(Context& ctx, const TrainDumpOptions& o, const safetensors::File& in) {
  std::vector<NamedTensor> out;
  const bool has_sft = in.find(o.sft_prefix + "input_ids") != nullptr;
  const bool has_dpo = in.find("dpo.inputs.input_ids") != nullptr;
  const bool has_grpo = in.find("grpo.inputs.prompt_ids") != nullptr;
  EV_CHECK(has_sft || ((has_dpo || has_grpo) && !o.lora_dir.empty()), in.path(),
           ": no training inputs (", o.sft_prefix, "input_ids, or dpo.inputs.* / grpo.inputs.* with an adapter)");
  const Batch sft_batch = has_sft ? read_batch(in, o.sft_prefix) : Batch{};
  auto add_logits = [&](const std::string& name, const Tensor& logits) {
    out.push_back({name, {sft_batch.B, sft_batch.T, logits.dim(-1)}, logits.vec()});
  };
  if (o.sft && has_sft) {
    auto m = open_trainable(o.model);
    m->match_hf_eager_attention(true);
    m->enable_base_grads();
    const float loss = sft_step(ctx, *m, sft_batch);
    out.push_back({"sft.loss", {}, {loss}});
    add_logits("sft.logits", m->logits());
    for (const auto& p : m->base_params()) out.push_back({"sft.grad." + p->name, p->w->shape, p->grad});
  }
  if (o.lora_dir.empty()) return out;

  auto m = open_trainable(o.model);
  m->match_hf_eager_attention(true);
  LoraSet lora = LoraSet::load_peft(o.lora_dir, m->linear_modules());
  m->attach_lora(&lora);
  auto each_factor = [&](auto&& fn) {  // PEFT's parameter order: per module, A then B
    for (auto& [module, p] : lora.pairs) {
      fn(LoraSet::peft_name(module, 'A', "default"), std::vector<int64_t>{p.r, p.in}, p.A, p.dA);
      fn(LoraSet::peft_name(module, 'B', "default"), std::vector<int64_t>{p.out, p.r}, p.B, p.dB);
    }
  };
  // PEFT's parameters whose grad is not None: adapters the last forward and backward reached (not,
  // say, the audio tower's in a batch without audio).
  auto add_grads = [&](const std::string& prefix) {
    for (auto& [module, p] : lora.pairs) {
      if (!p.has_grad) continue;
      out.push_back({prefix + LoraSet::peft_name(module, 'A', "default"), {p.r, p.in}, p.dA});
      out.push_back({prefix + LoraSet::peft_name(module, 'B', "default"), {p.out, p.r}, p.dB});
    }
  };

  if (has_dpo) {
    const PreferenceBatch pb = read_preference_batch(in);
    const int64_t B = pb.rows.B, T = pb.rows.T;
    lora.zero_grad();
    const DpoStepResult r = dpo_step(ctx, *m, lora, pb, o.dpo_beta);
    out.push_back({"dpo.loss", {}, {r.dpo.loss}});
    out.push_back({"dpo.policy_token_logps", {B, T - 1}, drop_last(r.policy_token_logps, B, T)});
    out.push_back({"dpo.ref_token_logps", {B, T - 1}, drop_last(r.ref_token_logps, B, T)});
    out.push_back({"dpo.policy_logps", {B}, r.policy_logps});
    out.push_back({"dpo.ref_logps", {B}, r.ref_logps});
    out.push_back({"dpo.chosen_rewards", {B / 2}, r.dpo.chosen_rewards});
    out.push_back({"dpo.rejected_rewards", {B / 2}, r.dpo.rejected_rewards});
    add_grads("dpo.grad.");
  }

  if (has_grpo) {
    const GrpoBatch g = read_grpo_batch(in);
    if (const TensorRef* rw = in.find("grpo.rewards"); rw && rw->numel() == g.G)
      out.push_back({"grpo.advantages", {g.G},
                     group_advantages(read_floats(in, "grpo.rewards", g.G),
                                      o.num_generations > 0 ? o.num_generations : g.G)});
    lora.zero_grad();
    const GrpoStepResult r = grpo_step(ctx, *m, lora, g, o.grpo);
    out.push_back({"grpo.loss", {}, {r.grpo.loss}});
    out.push_back({"grpo.per_token_logps", {g.G, g.C}, r.logps});
    out.push_back({"grpo.entropies", {g.G, g.C}, r.entropies});
    out.push_back({"grpo.coef_1", {g.G, g.C}, r.grpo.coef_1});
    out.push_back({"grpo.per_token_loss", {g.G, g.C}, r.grpo.per_token_loss});
    add_grads("grpo.grad.");
  }

  if (!has_sft) return out;
  lora.zero_grad();
  float loss = sft_step(ctx, *m, sft_batch);
  add_logits("lora.logits", m->logits());
  out.push_back({"lora.sft_loss", {}, {loss}});
  add_grads("lora.grad.");
  if (o.adamw_steps > 0) {
    // torch: for each step, zero_grad; loss = forward; backward; opt.step().
    AdamW opt(o.adamw);
    std::map<std::string, AdamWState> state;
    std::vector<float> losses;
    for (int64_t step = 0; step < o.adamw_steps; ++step) {
      if (step > 0) {
        m->zero_grad();
        loss = sft_step(ctx, *m, sft_batch);
      }
      losses.push_back(loss);
      for (auto& [module, p] : lora.pairs) {
        if (!p.has_grad) continue;  // torch skips parameters whose grad is None
        const std::string a = LoraSet::peft_name(module, 'A', "default"), b = LoraSet::peft_name(module, 'B', "default");
        opt.update(p.A.data(), p.dA.data(), state[a], (int64_t)p.A.size());
        opt.update(p.B.data(), p.dB.data(), state[b], (int64_t)p.B.size());
      }
    }
    out.push_back({"lora.adamw.losses_before_step", {(int64_t)losses.size()}, losses});
    each_factor([&](const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>& w,
                    const std::vector<float>&) { out.push_back({"lora.adamw.final." + name, shape, w}); });
  }
  return out;
}

}  // namespace edgevl::train
