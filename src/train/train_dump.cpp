#include "train/train_dump.h"

#include <cstring>
#include <map>

#include "core/error.h"
#include "train/grad_ops.h"

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

// Forward, then d loss / d logits from `loss_grad` (which returns the loss), then backward.
template <class LossGrad>
float forward_backward(Context& ctx, TrainableLM& m, const Batch& b, LossGrad&& loss_grad) {
  m.forward(ctx, b);
  Tensor dlogits({b.B * b.T, m.logits().dim(-1)});
  const float loss = loss_grad(m.logits(), dlogits);
  m.backward(ctx, dlogits);
  return loss;
}

// Drops the last position of each row: [B, T] -> [B, T-1] (next-token quantities).
std::vector<float> drop_last(const std::vector<float>& v, int64_t B, int64_t T) {
  std::vector<float> o;
  for (int64_t i = 0; i < B; ++i) o.insert(o.end(), v.begin() + i * T, v.begin() + i * T + T - 1);
  return o;
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
  auto sft_loss = [&](const Tensor& logits, Tensor& dlogits) { return causal_lm_loss(logits, sft_batch, &dlogits); };
  if (o.sft && has_sft) {
    auto m = open_trainable(o.model);
    m->enable_base_grads();
    const float loss = forward_backward(ctx, *m, sft_batch, sft_loss);
    out.push_back({"sft.loss", {}, {loss}});
    add_logits("sft.logits", m->logits());
    for (const auto& p : m->base_params()) out.push_back({"sft.grad." + p->name, p->w->shape, p->grad});
  }
  if (o.lora_dir.empty()) return out;

  auto m = open_trainable(o.model);
  LoraSet lora = LoraSet::load_peft(o.lora_dir, m->linear_modules());
  m->attach_lora(&lora);
  auto each_factor = [&](auto&& fn) {  // PEFT's parameter order: per module, A then B
    for (auto& [module, p] : lora.pairs) {
      fn(LoraSet::peft_name(module, 'A', "default"), std::vector<int64_t>{p.r, p.in}, p.A, p.dA);
      fn(LoraSet::peft_name(module, 'B', "default"), std::vector<int64_t>{p.out, p.r}, p.B, p.dB);
    }
  };
  auto add_grads = [&](const std::string& prefix) {
    each_factor([&](const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>&,
                    const std::vector<float>& g) { out.push_back({prefix + name, shape, g}); });
  };

  if (has_dpo) {
    // Rows [prompt_i + chosen_i..., prompt_i + rejected_i...]; the reference is the base with the
    // adapter disabled (DPOTrainer with ref_model=None under PEFT).
    Batch b;
    std::vector<int64_t> shape;
    const auto ids = read_ints(in, "dpo.inputs.input_ids", shape);
    EV_CHECK(shape.size() == 2 && shape[0] % 2 == 0, in.path(), ": dpo.inputs.input_ids must be [2n, T]");
    b.B = shape[0];
    b.T = shape[1];
    b.input_ids.assign(ids.begin(), ids.end());
    b.attention_mask = read_mask(in, "dpo.inputs.attention_mask", shape);
    b.labels.assign(b.B * b.T, kIgnoreIndex);
    const auto targets = next_token_targets(b.input_ids, read_mask(in, "dpo.inputs.completion_mask", shape), b.B, b.T);
    auto sequence_logps = [&](const std::vector<float>& tok) {
      std::vector<float> s(b.B, 0.0f);
      for (int64_t i = 0; i < b.B * b.T; ++i) s[i / b.T] += tok[i];
      return s;
    };
    m->attach_lora(nullptr);
    m->forward(ctx, b);
    const std::vector<float> ref_tok = token_logps(m->logits(), targets);
    m->attach_lora(&lora);
    lora.zero_grad();
    std::vector<float> pol_tok;
    DpoResult r;
    forward_backward(ctx, *m, b, [&](const Tensor& logits, Tensor& dlogits) {
      pol_tok = token_logps(logits, targets);
      r = dpo_sigmoid_loss(sequence_logps(pol_tok), sequence_logps(ref_tok), o.dpo_beta);
      std::vector<float> dtok(b.B * b.T);
      for (int64_t i = 0; i < b.B * b.T; ++i) dtok[i] = r.dpolicy[i / b.T];
      target_logps_backward(logits.data(), targets.data(), b.B * b.T, logits.dim(-1), dtok.data(), dlogits.data());
      return r.loss;
    });
    const int64_t n = b.B / 2;
    out.push_back({"dpo.loss", {}, {r.loss}});
    out.push_back({"dpo.policy_token_logps", {b.B, b.T - 1}, drop_last(pol_tok, b.B, b.T)});
    out.push_back({"dpo.ref_token_logps", {b.B, b.T - 1}, drop_last(ref_tok, b.B, b.T)});
    out.push_back({"dpo.policy_logps", {b.B}, sequence_logps(pol_tok)});
    out.push_back({"dpo.ref_logps", {b.B}, sequence_logps(ref_tok)});
    out.push_back({"dpo.chosen_rewards", {n}, r.chosen_rewards});
    out.push_back({"dpo.rejected_rewards", {n}, r.rejected_rewards});
    add_grads("dpo.grad.");
  }

  if (has_grpo) {
    // GRPOTrainer._compute_loss: prompts (left-padded) + completions (right-padded), the logits of
    // the last C positions before each completion token.
    std::vector<int64_t> ps, cs;
    const auto prompt = read_ints(in, "grpo.inputs.prompt_ids", ps);
    const auto completion = read_ints(in, "grpo.inputs.completion_ids", cs);
    EV_CHECK(ps.size() == 2 && cs.size() == 2 && ps[0] == cs[0], in.path(),
             ": grpo.inputs prompt_ids / completion_ids must be [G, P] / [G, C]");
    const int64_t G = ps[0], P = ps[1], C = cs[1];
    const auto prompt_mask = read_mask(in, "grpo.inputs.prompt_mask", ps);
    const auto completion_mask = read_mask(in, "grpo.inputs.completion_mask", cs);
    Batch b;
    b.B = G;
    b.T = P + C;
    std::vector<uint8_t> scored(G * b.T, 0);
    for (int64_t g = 0; g < G; ++g) {
      for (int64_t t = 0; t < P; ++t) {
        b.input_ids.push_back((int32_t)prompt[g * P + t]);
        b.attention_mask.push_back(prompt_mask[g * P + t]);
      }
      for (int64_t t = 0; t < C; ++t) {
        b.input_ids.push_back((int32_t)completion[g * C + t]);
        b.attention_mask.push_back(completion_mask[g * C + t]);
        scored[g * b.T + P + t] = 1;  // every completion position, padding too (masked in the loss)
      }
    }
    b.labels.assign(G * b.T, kIgnoreIndex);
    const auto targets = next_token_targets(b.input_ids, scored, G, b.T);
    // [G, T] next-token rows -> [G, C] completion positions (rows P-1 .. P+C-2).
    auto completion_part = [&](const std::vector<float>& v) {
      std::vector<float> o;
      for (int64_t g = 0; g < G; ++g) o.insert(o.end(), v.begin() + g * b.T + P - 1, v.begin() + g * b.T + P - 1 + C);
      return o;
    };
    std::vector<int64_t> s;
    const auto items = read_ints(in, "grpo.inputs.num_items_in_batch", s);
    EV_CHECK(items.size() == 1, in.path(), ": grpo.inputs.num_items_in_batch must be a scalar");
    const TensorRef* adv = in.find("grpo.inputs.advantages");
    EV_CHECK(adv && adv->dtype == DType::F32 && adv->numel() == G, in.path(), ": grpo.inputs.advantages must be F32 [G]");
    std::vector<float> advantages(G);
    std::memcpy(advantages.data(), adv->data, G * sizeof(float));
    if (const TensorRef* rw = in.find("grpo.rewards"); rw && rw->dtype == DType::F32 && rw->numel() == G) {
      std::vector<float> rewards(G);
      std::memcpy(rewards.data(), rw->data, G * sizeof(float));
      out.push_back({"grpo.advantages", {G}, group_advantages(rewards, o.num_generations > 0 ? o.num_generations : G)});
    }
    std::vector<float> ref_logps;
    if (o.grpo.beta != 0) {
      m->attach_lora(nullptr);
      m->forward(ctx, b);
      ref_logps = completion_part(token_logps(m->logits(), targets));
      m->attach_lora(&lora);
    }
    lora.zero_grad();
    GrpoResult r;
    std::vector<float> logps, entropies;
    forward_backward(ctx, *m, b, [&](const Tensor& logits, Tensor& dlogits) {
      std::vector<float> ent;
      const auto all = token_logps(logits, targets, &ent);
      logps = completion_part(all);
      entropies = completion_part(ent);
      r = grpo_loss(logps, {}, ref_logps, advantages, completion_mask, C, (double)items[0], o.grpo);
      std::vector<float> dall(G * b.T, 0.0f);
      for (int64_t g = 0; g < G; ++g)
        for (int64_t t = 0; t < C; ++t) dall[g * b.T + P - 1 + t] = r.dlogps[g * C + t];
      target_logps_backward(logits.data(), targets.data(), G * b.T, logits.dim(-1), dall.data(), dlogits.data());
      return r.loss;
    });
    out.push_back({"grpo.loss", {}, {r.loss}});
    out.push_back({"grpo.per_token_logps", {G, C}, logps});
    out.push_back({"grpo.entropies", {G, C}, entropies});
    out.push_back({"grpo.coef_1", {G, C}, r.coef_1});
    out.push_back({"grpo.per_token_loss", {G, C}, r.per_token_loss});
    add_grads("grpo.grad.");
  }

  if (!has_sft) return out;
  lora.zero_grad();
  float loss = forward_backward(ctx, *m, sft_batch, sft_loss);
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
        loss = forward_backward(ctx, *m, sft_batch, sft_loss);
      }
      losses.push_back(loss);
      opt.begin_step();
      each_factor([&](const std::string& name, const std::vector<int64_t>&, std::vector<float>& w,
                      const std::vector<float>& g) { opt.update(w.data(), g.data(), state[name], (int64_t)w.size()); });
    }
    out.push_back({"lora.adamw.losses_before_step", {(int64_t)losses.size()}, losses});
    each_factor([&](const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>& w,
                    const std::vector<float>&) { out.push_back({"lora.adamw.final." + name, shape, w}); });
  }
  return out;
}

}  // namespace edgevl::train
