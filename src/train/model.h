// What the trainers see of a model: a float32 forward over a padded batch that keeps the
// activations its backward needs, the backward, and the parameters with their gradients. A family
// implements it in a short file (train/llama.cpp) from the ops of train/grad_ops.h, loading its
// weights with the same tables as its inference forward (models/<family>).
#pragma once
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "models/gemma4/clipped_linear.h"
#include "models/source.h"
#include "models/weights.h"
#include "tensor/context.h"
#include "tensor/tensor.h"
#include "train/lora.h"

namespace edgevl::train {

// One image as the vision processor lays it out: pixel values [n_patches, 3·p²] in [0, 1] and
// patch positions [n_patches, 2] as (x, y), (-1, -1) for padding patches.
struct BatchImage {
  std::vector<float> pixels;
  std::vector<int64_t> positions;
  int64_t n_patches = 0;
};
// One audio clip as the feature extractor gives it: log-mel frames [frames, mel bins] and a mask
// (one byte per frame, nonzero = valid; empty = all valid).
struct BatchAudio {
  std::vector<float> features;
  std::vector<uint8_t> mask;
  int64_t frames = 0;
};

// A right- or left-padded batch as TRL's collators build it (transformers' names). A
// vision-language batch also carries its media, in the order of their placeholder runs in
// input_ids read row by row: the soft tokens of each image / clip fill its placeholders.
struct Batch {
  int64_t B = 0, T = 0;
  std::vector<int32_t> input_ids;       // [B*T]
  std::vector<uint8_t> attention_mask;  // [B*T], 0 = padding
  std::vector<int64_t> labels;          // [B*T], kIgnoreIndex (-100) = no loss (prompt, padding)
  std::vector<BatchImage> images;
  std::vector<BatchAudio> audio;
  // Packed rows (SFT packing): each token's sequence within its row ([B*T]; empty = one sequence
  // per row). A token attends only to its own sequence, whose positions start at 0.
  std::vector<int32_t> sequence_ids;
};

// Each token's position ([B*T]): its index in its row, or in its sequence in a packed row.
std::vector<int64_t> token_positions(const Batch& b);
// Checks the batch's tensors against its shape [B, T] (what = the caller, for the message).
void check_batch(const Batch& b);

// A base-model parameter with its float32 gradient (allocated by enable_base_grads).
struct BaseParam {
  std::string name;  // as the checkpoint names it (HF: "model.layers.0.self_attn.q_proj.weight")
  const WeightRef* w = nullptr;
  std::vector<float> grad;
};

// One projection (nn.Linear, optionally with a PEFT LoRA adapter): forward through the kernels
// for any base dtype; backward into the input, the LoRA factors and, for float32 bases being
// trained, the weight and bias.
struct TrainLinear {
  std::string module;  // HF module name: "model.layers.0.self_attn.q_proj"
  const WeightRef* w = nullptr;
  const WeightRef* bias = nullptr;  // null: none
  BaseParam* gw = nullptr;          // null: frozen
  BaseParam* gb = nullptr;
  LoraPair* lora = nullptr;
  std::vector<float> lora_u;     // x·Aᵀ of the last forward (x after dropout)
  std::vector<float> lora_keep;  // with dropout: the mask / (1 - p) applied to x, else empty
  std::vector<float> lora_x;     // with dropout: x · lora_keep
  // Gemma4ClippableLinear: the input and the output are clamped to these bounds (infinite: not
  // clamped). PEFT adapts the inner nn.Linear, so the adapter reads the clamped input and its
  // delta is clamped together with the base output.
  float in_min = -kUnbounded, in_max = kUnbounded, out_min = -kUnbounded, out_max = kUnbounded;
  std::vector<float> clip_x;       // the clamped input of the last forward (input bounds only)
  std::vector<uint8_t> out_inside;  // per output element of the last forward: inside its bounds
  static constexpr float kUnbounded = std::numeric_limits<float>::infinity();
  void set_bounds(const ClippedLinear& c) {
    in_min = c.in_min;
    in_max = c.in_max;
    out_min = c.out_min;
    out_max = c.out_max;
  }
  bool clamps_input() const { return in_min > -kUnbounded || in_max < kUnbounded; }
  bool clamps_output() const { return out_min > -kUnbounded || out_max < kUnbounded; }

  int64_t in() const { return w->cols(); }
  int64_t out() const { return w->rows(); }
  void forward(Context& ctx, const float* x, int64_t rows, float* y);
  // Activation checkpointing: remember where the adapter's dropout stream stands before a forward,
  // and go back there to recompute it with the same masks.
  void mark_dropout_stream() {
    if (lora) dropout_mark = lora->dropout_seed;
  }
  void rewind_dropout_stream() {
    if (lora) lora->dropout_seed = dropout_mark;
  }
  uint64_t dropout_mark = 0;
  // dx (optional) += ∂; weight/bias/LoRA gradients += ∂. `x` is the forward's input (before any
  // clamp); the clamps pass the gradient where their input was inside the bounds (torch.clamp).
  void backward(Context& ctx, const float* x, const float* dy, int64_t rows, float* dx);

 private:
  void lora_forward(Context& ctx, const float* x, int64_t rows, float* y);
  void unclamped_backward(Context& ctx, const float* x, const float* dy, int64_t rows, float* dx);
};

class TrainableLM {
 public:
  virtual ~TrainableLM() = default;
  // Every linear a LoRA adapter may target: HF module name -> {in, out}.
  std::map<std::string, std::pair<int64_t, int64_t>> linear_modules();
  // Routes the targeted projections through `lora` (null: detach). The set must outlive the model.
  void attach_lora(LoraSet* lora);
  // Runs the model over the batch (labels are not read) and keeps the activations the backward
  // needs; logits() then holds [B*T, V] (after any final soft-capping).
  virtual void forward(Context& ctx, const Batch& batch) = 0;
  // Backpropagates d loss / d logits [B*T, V] of the last forward, accumulating into the gradients.
  virtual void backward(Context& ctx, const Tensor& dlogits) = 0;
  // Activation checkpointing: keep only each layer's input through the forward and recompute the
  // layer in the backward (less memory, about one more forward of time). Error where unsupported.
  virtual void set_recompute(bool on) {
    EV_CHECK(!on, "train: this family has no activation checkpointing yet (supported: llama, gemma4_text)");
  }

  // Reproduce HF's eager-attention numerics where they differ from the model as intended (see
  // CausalLM::match_hf_eager_attention); the golden comparisons turn it on.
  virtual void match_hf_eager_attention(bool) {}

  // Gradients for every base parameter from now on (float32 weights only).
  void enable_base_grads();
  bool base_grads() const { return base_grads_; }
  const Tensor& logits() const { return logits_; }
  // In the checkpoint's order.
  const std::vector<std::unique_ptr<BaseParam>>& base_params() const { return params_; }
  void zero_grad();  // base and attached LoRA

 protected:
  // Registers a parameter (tied weights, seen twice, share one entry); returns it.
  BaseParam* param(const WeightRef& w);
  BaseParam* grad_of(const WeightRef& w) { return base_grads_ && !w.empty() ? param(w) : nullptr; }
  // Sets up the gradient slots of a projection (call again after enable_base_grads).
  void bind(TrainLinear& l) {
    l.gw = grad_of(*l.w);
    l.gb = l.bias ? grad_of(*l.bias) : nullptr;
  }

  Tensor logits_;
  LoraSet* lora_ = nullptr;
  bool base_grads_ = false;
  std::vector<std::unique_ptr<BaseParam>> params_;
  std::map<const void*, BaseParam*> by_data_;
  virtual void on_enable_base_grads() = 0;  // re-bind gradient slots
  // The projections an adapter may target (lm_head excluded, as PEFT's all-linear does).
  virtual std::vector<TrainLinear*> adaptable_linears() = 0;
};

// Opens a checkpoint (HF folder or GGUF) of a family that has a training forward (llama).
std::unique_ptr<TrainableLM> open_trainable(const std::string& path);

// labels shifted left by one: targets[b, t] = labels[b, t + 1], kIgnoreIndex at t = T-1.
std::vector<int64_t> shifted_targets(const Batch& b);

}  // namespace edgevl::train
