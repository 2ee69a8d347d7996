// edgevl dump: run the model on golden inputs and write every named activation, for
// layer-by-layer comparison with the reference (names as in ../shared/golden/hf/README.md).
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "runtime/session.h"

namespace edgevl::cli {

namespace {

std::vector<int64_t> read_i64(const safetensors::File& f, const std::string& name, std::vector<int64_t>& shape) {
  const TensorRef* t = f.find(name);
  EV_CHECK(t, f.path(), ": no tensor '", name, "'");
  EV_CHECK(t->dtype == DType::I64 || t->dtype == DType::I32, f.path(), ": '", name, "' must be int64 or int32");
  shape = t->shape;
  std::vector<int64_t> v(t->numel());
  for (int64_t i = 0; i < t->numel(); ++i) {
    if (t->dtype == DType::I64) std::memcpy(&v[i], t->data + i * 8, 8);
    else {
      int32_t x;
      std::memcpy(&x, t->data + i * 4, 4);
      v[i] = x;
    }
  }
  return v;
}

}  // namespace

void add_dump(CLI::App& app) {
  struct Opts {
    std::string model, inputs, out, suppress;
    int threads = 0, generate = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("dump", "Write the activations computed for golden inputs (layer-by-layer checks)");
  cmd->add_option("-m,--model", o->model, "Model folder or .gguf file")->required();
  cmd->add_option("--inputs", o->inputs, "safetensors with inputs.input_ids [B,T] (and gen.inputs.input_ids)")->required();
  cmd->add_option("--out", o->out, "Output safetensors: logits, hidden_states.NN, gen.* (float32)")->required();
  cmd->add_option("--generate", o->generate, "Also decode N tokens greedily from gen.inputs.input_ids");
  cmd->add_option("--suppress-tokens", o->suppress, "Comma-separated ids never chosen while decoding");
  add_thread_option(cmd, o->threads);
  cmd->footer(
      "Rows are evaluated one at a time from an empty cache. Positions whose attention_mask is 0 are never\n"
      "attended to but keep their place in the positions, as in Hugging Face transformers.");
  cmd->callback([o] {
    Engine engine = Engine::load(o->model, o->threads);
    auto in = safetensors::File::open(o->inputs);
    std::vector<int64_t> shape;
    std::vector<int64_t> ids = read_i64(*in, "inputs.input_ids", shape);
    EV_CHECK(shape.size() == 2, o->inputs, ": inputs.input_ids must be [B, T]");
    const int64_t B = shape[0], T = shape[1];
    std::vector<int64_t> mask(ids.size(), 1);
    if (in->find("inputs.attention_mask")) {
      std::vector<int64_t> mshape;
      mask = read_i64(*in, "inputs.attention_mask", mshape);
      EV_CHECK(mshape == shape, o->inputs, ": attention_mask shape differs from input_ids");
    }
    std::map<std::string, std::pair<int64_t, std::vector<float>>> acts;  // name -> (cols, [B*T*cols])
    const int64_t V = engine.model->info().vocab_size;
    for (int64_t b = 0; b < B; ++b) {
      // The whole row is computed, padding included, with padded keys hidden: HF's semantics.
      std::vector<int32_t> toks(ids.begin() + b * T, ids.begin() + (b + 1) * T);
      std::vector<uint8_t> key_mask(T);
      bool padded = false;
      for (int64_t t = 0; t < T; ++t) {
        key_mask[t] = mask[b * T + t] != 0;
        padded |= !key_mask[t];
      }
      auto store = [&](std::string_view name, const float* data, int64_t rows, int64_t cols) {
        auto& [c, buf] = acts[std::string(name)];
        if (buf.empty()) {
          c = cols;
          buf.assign(B * T * cols, 0.0f);
        }
        std::memcpy(&buf[b * T * cols], data, rows * cols * sizeof(float));
      };
      ForwardRequest req;
      nn::KvCache cache = engine.model->new_cache(T);
      req.tokens = toks;
      req.all_logits = true;
      req.tap = store;
      if (padded) req.key_mask = key_mask;
      Tensor logits;
      engine.model->forward(*engine.ctx, cache, req, logits);
      store("logits", logits.data(), logits.dim(0), V);
    }
    safetensors::Writer w;
    for (auto& [name, cb] : acts) w.add_f32(name, {B, T, cb.first}, cb.second);

    if (o->generate > 0) {
      std::vector<int64_t> gshape;
      std::vector<int64_t> gids = read_i64(*in, "gen.inputs.input_ids", gshape);
      EV_CHECK(gshape.size() == 2 && gshape[0] == 1, o->inputs, ": gen.inputs.input_ids must be [1, P]");
      std::vector<int32_t> prompt(gids.begin(), gids.end());
      GenerateOptions g;
      g.max_new_tokens = o->generate;
      g.sampling.temperature = 0;
      g.stop_at_eog = false;
      if (!o->suppress.empty()) g.sampling.suppress = parse_id_list(o->suppress);
      Session session(engine, (int64_t)prompt.size() + o->generate);
      std::vector<float> step_logits;
      std::vector<int64_t> new_tokens;
      const Tensor* logits = &session.feed(prompt);
      for (int i = 0; i < o->generate; ++i) {
        const float* row = logits->row(logits->dim(0) - 1);
        step_logits.insert(step_logits.end(), row, row + V);
        int32_t id = argmax({row, (size_t)V}, g.sampling.suppress);
        new_tokens.push_back(id);
        if (i + 1 < o->generate) logits = &session.feed({id});
      }
      w.add_i64("gen.new_tokens", {1, (int64_t)new_tokens.size()}, new_tokens);
      w.add_f32("gen.step_logits", {(int64_t)new_tokens.size(), 1, V}, step_logits);
    }
    w.write(o->out);
  });
}

}  // namespace edgevl::cli
