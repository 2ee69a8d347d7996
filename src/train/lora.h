// LoRA adapters (PEFT's LoraLayer): y = W x + scaling · B (A x), A [r, in], B [out, r], scaling
// alpha / r (alpha / sqrt(r) with use_rslora), dropout 0. Stored in PEFT's layout: a folder with
// adapter_config.json and adapter_model.safetensors whose tensors are named
// `base_model.model.<module>.lora_A.weight` / `.lora_B.weight` (in memory PEFT inserts the adapter
// name: `...lora_A.default.weight`, the name its optimizer and the goldens use).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "models/model.h"
#include "tensor/context.h"
#include "tensor/tensor.h"

namespace edgevl::train {

struct LoraConfig {
  int64_t r = 8;
  double alpha = 8;
  double dropout = 0;
  bool use_rslora = false;
  std::vector<std::string> target_modules;  // module-name suffixes ("q_proj"), PEFT's list form
  std::string target_regex;                 // PEFT's string form: a full-match regex; "" if list form
  double scaling() const;
  // PEFT's rule: a module name matches a list entry when equal to it or ending in "." + entry.
  bool targets(const std::string& module) const;
};

LoraConfig read_lora_config(const std::string& adapter_dir);

// One adapted linear: the factors, their gradients and the activations the backward needs.
struct LoraPair {
  std::string module;  // HF module name, "model.layers.0.self_attn.q_proj"
  int64_t r = 0, in = 0, out = 0;
  float scaling = 1.0f;
  float dropout = 0.0f;       // PEFT's lora_dropout on the adapter's input, in training only
  bool training = true;
  uint64_t dropout_seed = 0;  // the dropout masks of a forward are a function of this
  std::vector<float> A, B;    // [r, in], [out, r]
  std::vector<float> dA, dB;  // gradients, same shapes
  bool has_grad = false;      // a backward reached it since zero_grad (torch: grad is not None)

  // y[rows, out] += scaling · (x·Aᵀ)·Bᵀ; u [rows, r] = x·Aᵀ is kept for the backward.
  void forward(Context& ctx, const float* x, int64_t rows, float* u, float* y) const;
  // dA, dB += ∂; dx[rows, in] += ∂ (dx may be null).
  void backward(Context& ctx, const float* x, const float* u, const float* dy, int64_t rows, float* dx);
};

// Every adapter of a model, by module name.
class LoraSet {
 public:
  LoraConfig config;
  std::map<std::string, LoraPair> pairs;

  // The adapter of `module`, or null.
  LoraPair* find(const std::string& module);
  void zero_grad();
  // Training mode (dropout on) or evaluation; `seed` fixes the dropout masks of the next forwards
  // (the trainers pass one per micro-batch, so a resumed run draws the same masks).
  void set_mode(bool training, uint64_t seed = 0);
  int64_t num_parameters() const;

  // Reads a PEFT folder. `expected` (module -> {in, out}) lists the linears of the model the
  // config targets; every one must have its A and B, of the right shapes.
  static LoraSet load_peft(const std::string& adapter_dir,
                           const std::map<std::string, std::pair<int64_t, int64_t>>& expected);
  // A fresh adapter on every linear of `modules` the config targets, as PEFT initialises it:
  // A kaiming-uniform (a = sqrt(5), i.e. U(±1/sqrt(in))), B zeros, so the model starts unchanged.
  static LoraSet create(const LoraConfig& config,
                        const std::map<std::string, std::pair<int64_t, int64_t>>& modules, uint64_t seed);
  // Writes a PEFT folder (adapter_config.json + adapter_model.safetensors, float32, PEFT's names),
  // which PeftModel.from_pretrained and load_peft read. Files are replaced atomically.
  void save_peft(const std::string& adapter_dir, const std::string& base_model = "") const;
  // PEFT's tensor names: "base_model.model.<module>.lora_A.weight"; with adapter_name
  // "default": "base_model.model.<module>.lora_A.default.weight".
  static std::string peft_name(const std::string& module, char which, const std::string& adapter_name = "");
};

// An adapter applied to an inference model (`edgevl run --lora`): every targeted weight of the
// model carries a LowRankDelta over the set's factors until this object is destroyed.
class AttachedLora {
 public:
  AttachedLora(CausalLM& model, const std::string& adapter_dir);
  // Borrows `set` (which must outlive this): the model follows its factors as they are trained.
  AttachedLora(CausalLM& model, const LoraSet& set);
  ~AttachedLora();
  AttachedLora(const AttachedLora&) = delete;
  AttachedLora& operator=(const AttachedLora&) = delete;
  const LoraSet& set() const { return *set_; }

 private:
  void attach(CausalLM& model);

  LoraSet owned_;
  const LoraSet* set_;
  std::map<std::string, LowRankDelta> deltas_;
  std::vector<WeightRef*> targets_;
};

// The linears of an inference model an adapter may target: HF module name -> {in, out}.
std::map<std::string, std::pair<int64_t, int64_t>> linear_modules(const CausalLM& model);

}  // namespace edgevl::train
