#include "train/model.h"

#include <algorithm>

#include "core/error.h"
#include "train/families.h"
#include "train/grad_ops.h"

namespace edgevl::train {

namespace {
// splitmix64: the dropout masks' generator (a counter hash, so masks are a function of the seed).
uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
}  // namespace

void TrainLinear::forward(Context& ctx, const float* x, int64_t rows, float* y) {
  if (clamps_input()) {
    clip_x.resize(rows * in());
    for (int64_t i = 0; i < rows * in(); ++i) clip_x[i] = std::min(std::max(x[i], in_min), in_max);
    x = clip_x.data();
  }
  ops::linear(ctx, *w, x, rows, y, bias ? bias->f32() : nullptr);
  if (lora) lora_forward(ctx, x, rows, y);
  if (clamps_output()) {
    out_inside.resize(rows * out());
    for (int64_t i = 0; i < rows * out(); ++i) {
      out_inside[i] = y[i] >= out_min && y[i] <= out_max;
      y[i] = std::min(std::max(y[i], out_min), out_max);
    }
  }
}

void TrainLinear::lora_forward(Context& ctx, const float* x, int64_t rows, float* y) {
  lora_u.resize(rows * lora->r);
  lora_keep.clear();
  lora_x.clear();
  if (lora->dropout > 0 && lora->training) {
    // Inverted dropout (torch.nn.Dropout) on the adapter's input: keep with probability 1 - p,
    // scaled by 1 / (1 - p).
    const int64_t n = rows * in();
    const float keep = 1.0f - lora->dropout;
    lora_keep.resize(n);
    lora_x.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      const float u = (float)(splitmix64(lora->dropout_seed) >> 40) * (1.0f / 16777216.0f);
      lora_keep[i] = u < keep ? 1.0f / keep : 0.0f;
      lora_x[i] = x[i] * lora_keep[i];
    }
    x = lora_x.data();
  }
  lora->forward(ctx, x, rows, lora_u.data(), y);
}

void TrainLinear::backward(Context& ctx, const float* x, const float* dy, int64_t rows, float* dx) {
  std::vector<float> dy_inside, dx_clamped;
  if (clamps_output()) {
    dy_inside.resize(rows * out());
    for (int64_t i = 0; i < rows * out(); ++i) dy_inside[i] = out_inside[i] ? dy[i] : 0.0f;
    dy = dy_inside.data();
  }
  float* dx_outer = dx;
  const float* x_outer = x;
  if (clamps_input()) {
    x = clip_x.data();
    if (dx) {
      dx_clamped.assign(rows * in(), 0.0f);
      dx = dx_clamped.data();
    }
  }
  unclamped_backward(ctx, x, dy, rows, dx);
  if (clamps_input() && dx_outer)
    for (int64_t i = 0; i < rows * in(); ++i)
      if (x_outer[i] >= in_min && x_outer[i] <= in_max) dx_outer[i] += dx_clamped[i];
}

void TrainLinear::unclamped_backward(Context& ctx, const float* x, const float* dy, int64_t rows, float* dx) {
  if (gw) linear_backward_weight(ctx, dy, x, rows, out(), in(), gw->grad.data());
  if (gb) linear_bias_backward(dy, rows, out(), gb->grad.data());
  if (lora && lora_keep.empty()) lora->backward(ctx, x, lora_u.data(), dy, rows, dx);
  if (lora && !lora_keep.empty()) {
    std::vector<float> dxl(dx ? rows * in() : 0, 0.0f);
    lora->backward(ctx, lora_x.data(), lora_u.data(), dy, rows, dx ? dxl.data() : nullptr);
    for (size_t i = 0; i < dxl.size(); ++i) dx[i] += dxl[i] * lora_keep[i];
  }
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
  int64_t n = 1;  // every element, whatever the rank (the vision position table is [2, N, D])
  for (int64_t d : w.shape) n *= d;
  p->grad.assign(n, 0.0f);
  BaseParam* r = p.get();
  params_.push_back(std::move(p));
  by_data_[w.data] = r;
  return r;
}

std::map<std::string, std::pair<int64_t, int64_t>> TrainableLM::linear_modules() {
  std::map<std::string, std::pair<int64_t, int64_t>> m;
  for (TrainLinear* p : adaptable_linears()) m[p->module] = {p->in(), p->out()};
  return m;
}

void TrainableLM::attach_lora(LoraSet* lora) {
  lora_ = lora;
  for (TrainLinear* p : adaptable_linears()) {
    p->lora = lora ? lora->find(p->module) : nullptr;
    EV_CHECK(!p->lora || (p->lora->in == p->in() && p->lora->out == p->out()), "lora: adapter of ", p->module,
             " has the wrong shape");
  }
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
  if (arch == "gemma4_text" || arch == "gemma4") return make_gemma4_trainable(std::move(src));
  fail(path, ": no training forward for architecture '", arch, "' yet (supported: llama, gemma4_text, gemma4)");
}

std::vector<int64_t> token_positions(const Batch& b) {
  std::vector<int64_t> pos(b.B * b.T);
  for (int64_t i = 0; i < b.B; ++i)
    for (int64_t t = 0, start = 0; t < b.T; ++t) {
      const int64_t r = i * b.T + t;
      if (!b.sequence_ids.empty() && t > 0 && b.sequence_ids[r] != b.sequence_ids[r - 1]) start = t;
      pos[r] = t - start;
    }
  return pos;
}

void check_batch(const Batch& b) {
  const int64_t N = b.B * b.T;
  EV_CHECK(b.B > 0 && b.T > 0 && (int64_t)b.input_ids.size() == N && (int64_t)b.attention_mask.size() == N &&
               (int64_t)b.labels.size() == N && (b.sequence_ids.empty() || (int64_t)b.sequence_ids.size() == N),
           "train: batch tensors disagree with its shape [", b.B, ", ", b.T, "]");
}

std::vector<int64_t> shifted_targets(const Batch& b) {
  std::vector<int64_t> t(b.B * b.T, kIgnoreIndex);
  for (int64_t i = 0; i < b.B; ++i)
    for (int64_t j = 0; j + 1 < b.T; ++j) t[i * b.T + j] = b.labels[i * b.T + j + 1];
  return t;
}

}  // namespace edgevl::train
