#include "train/model.h"

#include <algorithm>

#include "core/error.h"
#include "train/families.h"
#include "train/grad_ops.h"

namespace edgevl::train {

void TrainLinear::forward(Context& ctx, const float* x, int64_t rows, float* y) {
  ops::linear(ctx, *w, x, rows, y, bias ? bias->f32() : nullptr);
  if (lora) {
    lora_u.resize(rows * lora->r);
    lora->forward(ctx, x, rows, lora_u.data(), y);
  }
}

void TrainLinear::backward(Context& ctx, const float* x, const float* dy, int64_t rows, float* dx) {
  if (gw) linear_backward_weight(ctx, dy, x, rows, out(), in(), gw->grad.data());
  if (gb) linear_bias_backward(dy, rows, out(), gb->grad.data());
  if (lora) lora->backward(ctx, x, lora_u.data(), dy, rows, dx);
  if (dx) linear_backward_input(ctx, *w, dy, rows, dx);
}

BaseParam* TrainableLM::param(const WeightRef& w) {
  auto it = by_data_.find(w.data);
  if (it != by_data_.end()) return it->second;
  EV_CHECK(w.dtype == DType::F32, "train: gradients of '", w.name, "' (", dtype_name(w.dtype),
           ") are not supported; full fine-tuning needs float32 weights (use LoRA over quantized bases)");
  auto p = std::make_unique<BaseParam>();
  p->name = w.name;
  p->w = &w;
  p->grad.assign(w.rows() * w.cols(), 0.0f);
  BaseParam* r = p.get();
  params_.push_back(std::move(p));
  by_data_[w.data] = r;
  return r;
}

void TrainableLM::enable_base_grads() {
  base_grads_ = true;
  on_enable_base_grads();
}

void TrainableLM::zero_grad() {
  for (auto& p : params_) std::fill(p->grad.begin(), p->grad.end(), 0.0f);
  if (lora_) lora_->zero_grad();
}

std::unique_ptr<TrainableLM> open_trainable(const std::string& path) {
  auto src = ModelSource::open(path);
  const std::string arch = src->architecture();
  if (arch == "llama") return make_llama_trainable(std::move(src));
  if (arch == "gemma4_text" || (arch == "gemma4" && src->is_gguf())) return make_gemma4_text_trainable(std::move(src));
  fail(path, ": no training forward for architecture '", arch, "' yet (supported: llama, gemma4_text)");
}

std::vector<int64_t> shifted_targets(const Batch& b) {
  std::vector<int64_t> t(b.B * b.T, kIgnoreIndex);
  for (int64_t i = 0; i < b.B; ++i)
    for (int64_t j = 0; j + 1 < b.T; ++j) t[i * b.T + j] = b.labels[i * b.T + j + 1];
  return t;
}

}  // namespace edgevl::train
