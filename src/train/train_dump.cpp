#include "train/train_dump.h"

#include <cstring>

#include "core/error.h"

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

std::vector<NamedTensor> train_dump(Context& ctx, const TrainDumpOptions& o, const Batch& batch) {
  std::vector<NamedTensor> out;
  auto add_logits = [&](const std::string& name, const Tensor& logits) {
    out.push_back({name, {batch.B, batch.T, logits.dim(-1)}, logits.vec()});
  };
  if (o.sft) {
    auto m = open_trainable(o.model);
    m->enable_base_grads();
    const float loss = m->forward(ctx, batch);
    m->backward(ctx);
    out.push_back({"sft.loss", {}, {loss}});
    add_logits("sft.logits", m->logits());
    for (const auto& p : m->base_params()) out.push_back({"sft.grad." + p->name, p->w->shape, p->grad});
  }
  if (!o.lora_dir.empty()) {
    auto m = open_trainable(o.model);
    LoraSet lora = LoraSet::load_peft(o.lora_dir, m->linear_modules());
    m->attach_lora(&lora);
    auto each_factor = [&](auto&& fn) {  // PEFT's parameter order: per module, A then B
      for (auto& [module, p] : lora.pairs) {
        fn(LoraSet::peft_name(module, 'A', "default"), std::vector<int64_t>{p.r, p.in}, p.A, p.dA);
        fn(LoraSet::peft_name(module, 'B', "default"), std::vector<int64_t>{p.out, p.r}, p.B, p.dB);
      }
    };
    float loss = m->forward(ctx, batch);
    m->backward(ctx);
    add_logits("lora.logits", m->logits());
    out.push_back({"lora.sft_loss", {}, {loss}});
    each_factor([&](const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>&,
                    const std::vector<float>& g) { out.push_back({"lora.grad." + name, shape, g}); });
    if (o.adamw_steps > 0) {
      // torch: for each step, zero_grad; loss = forward; backward; opt.step().
      AdamW opt(o.adamw);
      std::map<std::string, AdamWState> state;
      std::vector<float> losses;
      for (int64_t step = 0; step < o.adamw_steps; ++step) {
        if (step > 0) {
          m->zero_grad();
          loss = m->forward(ctx, batch);
          m->backward(ctx);
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
  }
  return out;
}

}  // namespace edgevl::train
