#include "train/steps.h"

#include "core/error.h"
#include "train/grad_ops.h"

namespace edgevl::train {

namespace {

// Forward, then d loss / d logits from `loss_grad` (which returns the loss), then backward.
template <class LossGrad>
float forward_backward(Context& ctx, TrainableLM& m, const Batch& b, LossGrad&& loss_grad) {
  m.forward(ctx, b);
  Tensor dlogits({b.B * b.T, m.logits().dim(-1)});
  const float loss = loss_grad(m.logits(), dlogits);
  m.backward(ctx, dlogits);
  return loss;
}

// Runs `fn` with the adapter detached from the model (the reference policy).
template <class Fn>
void without_adapter(TrainableLM& m, LoraSet& lora, Fn&& fn) {
  m.attach_lora(nullptr);
  try {
    fn();
  } catch (...) {
    m.attach_lora(&lora);
    throw;
  }
  m.attach_lora(&lora);
}

}  // namespace

float sft_step(Context& ctx, TrainableLM& m, const Batch& b, int64_t num_items, float scale) {
  return forward_backward(ctx, m, b, [&](const Tensor& logits, Tensor& dlogits) {
    const float loss = causal_lm_loss(logits, b, &dlogits, num_items, &ctx.pool);
    if (scale != 1.0f) ops::scale(dlogits.data(), scale, dlogits.numel());
    return loss * scale;
  });
}

DpoStepResult dpo_step(Context& ctx, TrainableLM& m, LoraSet& lora, const PreferenceBatch& pb, double beta,
                       float scale, bool backward) {
  const Batch& b = pb.rows;
  EV_CHECK(b.B % 2 == 0, "DPO: a batch holds chosen and rejected rows of each pair");
  const auto targets = next_token_targets(b.input_ids, pb.completion_mask, b.B, b.T);
  auto sequence = [&](const std::vector<float>& tok) {
    std::vector<float> s(b.B, 0.0f);
    for (int64_t i = 0; i < b.B * b.T; ++i) s[i / b.T] += tok[i];
    return s;
  };
  DpoStepResult r;
  without_adapter(m, lora, [&] {
    m.forward(ctx, b);
    r.ref_token_logps = token_logps(m.logits(), targets, nullptr, &ctx.pool);
  });
  r.ref_logps = sequence(r.ref_token_logps);
  auto policy = [&](const Tensor& logits) {
    r.policy_token_logps = token_logps(logits, targets, nullptr, &ctx.pool);
    r.policy_logps = sequence(r.policy_token_logps);
    r.dpo = dpo_sigmoid_loss(r.policy_logps, r.ref_logps, beta);
  };
  if (!backward) {
    m.forward(ctx, b);
    policy(m.logits());
    return r;
  }
  forward_backward(ctx, m, b, [&](const Tensor& logits, Tensor& dlogits) {
    policy(logits);
    std::vector<float> dtok(b.B * b.T);
    for (int64_t i = 0; i < b.B * b.T; ++i) dtok[i] = r.dpo.dpolicy[i / b.T] * scale;
    target_logps_backward(logits.data(), targets.data(), b.B * b.T, logits.dim(-1), dtok.data(), dlogits.data(), &ctx.pool);
    return r.dpo.loss;
  });
  return r;
}

GrpoStepResult grpo_step(Context& ctx, TrainableLM& m, LoraSet& lora, const GrpoBatch& g, const GrpoOptions& o) {
  const int64_t G = g.G, P = g.P, C = g.C, T = P + C;
  EV_CHECK(G > 0 && C > 0 && (int64_t)g.prompt_ids.size() == G * P && (int64_t)g.completion_ids.size() == G * C &&
               (int64_t)g.prompt_mask.size() == G * P && (int64_t)g.completion_mask.size() == G * C &&
               (int64_t)g.advantages.size() == G,
           "GRPO: batch tensors disagree with its shape");
  Batch b;
  b.B = G;
  b.T = T;
  std::vector<uint8_t> scored(G * T, 0);
  for (int64_t i = 0; i < G; ++i) {
    b.input_ids.insert(b.input_ids.end(), g.prompt_ids.begin() + i * P, g.prompt_ids.begin() + (i + 1) * P);
    b.input_ids.insert(b.input_ids.end(), g.completion_ids.begin() + i * C, g.completion_ids.begin() + (i + 1) * C);
    b.attention_mask.insert(b.attention_mask.end(), g.prompt_mask.begin() + i * P, g.prompt_mask.begin() + (i + 1) * P);
    b.attention_mask.insert(b.attention_mask.end(), g.completion_mask.begin() + i * C,
                            g.completion_mask.begin() + (i + 1) * C);
    for (int64_t t = 0; t < C; ++t) scored[i * T + P + t] = 1;  // padding too: masked in the loss
  }
  b.labels.assign(G * T, kIgnoreIndex);
  b.images = g.images;
  b.audio = g.audio;
  const auto targets = next_token_targets(b.input_ids, scored, G, T);
  // Next-token rows [G, T] -> completion positions [G, C] (rows P-1 .. P+C-2).
  auto completion_part = [&](const std::vector<float>& v) {
    std::vector<float> out;
    for (int64_t i = 0; i < G; ++i) out.insert(out.end(), v.begin() + i * T + P - 1, v.begin() + i * T + P - 1 + C);
    return out;
  };
  double num_items = g.num_items;
  if (num_items <= 0)
    for (uint8_t x : g.completion_mask) num_items += x;
  std::vector<float> ref;
  if (o.beta != 0)
    without_adapter(m, lora, [&] {
      m.forward(ctx, b);
      ref = completion_part(token_logps(m.logits(), targets, nullptr, &ctx.pool));
    });
  GrpoStepResult r;
  forward_backward(ctx, m, b, [&](const Tensor& logits, Tensor& dlogits) {
    std::vector<float> entropies;
    const auto all = token_logps(logits, targets, &entropies, &ctx.pool);
    r.logps = completion_part(all);
    r.entropies = completion_part(entropies);
    r.grpo = grpo_loss(r.logps, {}, ref, g.advantages, g.completion_mask, C, num_items, o);
    std::vector<float> dall(G * T, 0.0f);
    for (int64_t i = 0; i < G; ++i)
      for (int64_t t = 0; t < C; ++t) dall[i * T + P - 1 + t] = r.grpo.dlogps[i * C + t];
    target_logps_backward(logits.data(), targets.data(), G * T, logits.dim(-1), dall.data(), dlogits.data(), &ctx.pool);
    return r.grpo.loss;
  });
  return r;
}

}  // namespace edgevl::train
