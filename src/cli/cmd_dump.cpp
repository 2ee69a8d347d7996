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

std::vector<float> read_f32(const safetensors::File& f, const std::string& name, std::vector<int64_t>& shape) {
  const TensorRef* t = f.find(name);
  EV_CHECK(t, f.path(), ": no tensor '", name, "'");
  EV_CHECK(t->dtype == DType::F32, f.path(), ": '", name, "' must be float32");
  shape = t->shape;
  std::vector<float> v(t->numel());
  std::memcpy(v.data(), t->data, v.size() * sizeof(float));
  return v;
}

std::vector<uint8_t> read_mask(const safetensors::File& f, const std::string& name, int64_t n) {
  const TensorRef* t = f.find(name);
  if (!t) return std::vector<uint8_t>(n, 1);
  EV_CHECK(t->numel() == n, f.path(), ": '", name, "' has ", t->numel(), " entries, expected ", n);
  std::vector<uint8_t> m(n);
  for (int64_t i = 0; i < n; ++i) {
    const size_t w = t->nbytes / n;  // BOOL/U8: 1 byte, I64: 8
    uint8_t any = 0;
    for (size_t b = 0; b < w; ++b) any |= t->data[i * w + b];
    m[i] = any != 0;
  }
  return m;
}

// Tower activations, per image/clip: stacked [items, rows, cols] when every item gave `rows`
// rows (per-patch / per-frame tensors), else concatenated [total, cols] (pooled soft tokens).
struct TowerTaps {
  struct Entry {
    int64_t cols = 0, items = 0, total_rows = 0;
    bool same_rows = true;
    int64_t rows = -1;
    std::vector<float> data;
  };
  std::map<std::string, Entry> entries;
  ActivationTap tap() {
    return [this](std::string_view name, const float* d, int64_t rows, int64_t cols) {
      Entry& e = entries[std::string(name)];
      e.cols = cols;
      e.same_rows = e.same_rows && (e.rows < 0 || e.rows == rows);
      e.rows = rows;
      e.items++;
      e.total_rows += rows;
      e.data.insert(e.data.end(), d, d + rows * cols);
    };
  }
  void write(safetensors::Writer& w, int64_t per_item_rows) const {
    for (const auto& [name, e] : entries) {
      if (e.same_rows && e.rows == per_item_rows) w.add_f32(name, {e.items, e.rows, e.cols}, e.data);
      else w.add_f32(name, {e.total_rows, e.cols}, e.data);
    }
  }
};

// Soft tokens of every image of pixel_values [N, P, V] + image_position_ids [N, P, 2].
std::vector<float> encode_images(Engine& engine, const safetensors::File& in, const std::string& prefix,
                                 TowerTaps* taps, int64_t& per_image_rows) {
  std::vector<int64_t> shape, pshape;
  const std::vector<float> px = read_f32(in, prefix + "pixel_values", shape);
  const std::vector<int64_t> pos = read_i64(in, prefix + "image_position_ids", pshape);
  EV_CHECK(shape.size() == 3 && pshape.size() == 3 && pshape[0] == shape[0] && pshape[1] == shape[1] && pshape[2] == 2,
           in.path(), ": ", prefix, "pixel_values must be [N, P, V] and image_position_ids [N, P, 2]");
  per_image_rows = shape[1];
  std::vector<float> soft;
  for (int64_t i = 0; i < shape[0]; ++i) {
    Tensor out;
    engine.model->encode_image(*engine.ctx, px.data() + i * shape[1] * shape[2], pos.data() + i * shape[1] * 2,
                               shape[1], out, taps ? taps->tap() : ActivationTap{});
    soft.insert(soft.end(), out.data(), out.data() + out.numel());
  }
  return soft;
}

// Soft tokens of every clip of input_features [N, T, bins] (+ input_features_mask [N, T]).
std::vector<float> encode_audio(Engine& engine, const safetensors::File& in, TowerTaps* taps) {
  std::vector<int64_t> shape;
  const std::vector<float> f = read_f32(in, "inputs.input_features", shape);
  EV_CHECK(shape.size() == 3, in.path(), ": inputs.input_features must be [N, frames, bins]");
  const std::vector<uint8_t> mask = read_mask(in, "inputs.input_features_mask", shape[0] * shape[1]);
  std::vector<float> soft;
  for (int64_t i = 0; i < shape[0]; ++i) {
    Tensor out;
    engine.model->encode_audio(*engine.ctx, f.data() + i * shape[1] * shape[2], mask.data() + i * shape[1], shape[1],
                               shape[2], out, taps ? taps->tap() : ActivationTap{});
    soft.insert(soft.end(), out.data(), out.data() + out.numel());
  }
  return soft;
}

// The row's placeholders take the next soft tokens of their kind (image, then audio cursors).
void place_soft_tokens(const std::vector<int32_t>& row, const MediaTokens& ids, int64_t D,
                       const std::vector<float>& image_soft, size_t& image_at, const std::vector<float>& audio_soft,
                       size_t& audio_at, std::vector<int32_t>& positions, std::vector<float>& embeds) {
  for (size_t t = 0; t < row.size(); ++t) {
    const bool image = ids.image >= 0 && row[t] == ids.image, audio = ids.audio >= 0 && row[t] == ids.audio;
    if (!image && !audio) continue;
    const std::vector<float>& src = image ? image_soft : audio_soft;
    size_t& at = image ? image_at : audio_at;
    EV_CHECK((at + 1) * D <= src.size(), "dump: the prompt has more ", image ? "image" : "audio",
             " placeholders than the inputs give soft tokens");
    positions.push_back((int32_t)t);
    embeds.insert(embeds.end(), src.begin() + at * D, src.begin() + (at + 1) * D);
    ++at;
  }
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
  cmd->add_option("--inputs", o->inputs,
                  "safetensors with inputs.input_ids [B,T], optionally inputs.pixel_values + image_position_ids, "
                  "inputs.input_features (+ _mask), and gen.inputs.*")
      ->required();
  cmd->add_option("--out", o->out, "Output safetensors: logits, hidden_states.NN, gen.* (float32)")->required();
  cmd->add_option("--generate", o->generate, "Also decode N tokens greedily from gen.inputs.input_ids");
  cmd->add_option("--suppress-tokens", o->suppress, "Comma-separated ids never chosen while decoding");
  add_thread_option(cmd, o->threads);
  cmd->footer(
      "Rows are evaluated one at a time from an empty cache. Positions whose attention_mask is 0 are never\n"
      "attended to but keep their place in the positions, as in Hugging Face transformers. Media inputs go\n"
      "through the model's towers (written as vision.*, image_hidden_states, audio.*, audio_hidden_states)\n"
      "and their soft tokens fill the image/audio placeholders of the rows in order. The model runs with\n"
      "HF's eager-attention numerics, as the goldens were made.");
  cmd->callback([o] {
    Engine engine = Engine::load(o->model, o->threads);
    engine.model->match_hf_eager_attention(true);
    auto in = safetensors::File::open(o->inputs);
    safetensors::Writer w;
    const MediaTokens media_ids = engine.model->media_tokens();
    const int64_t D = engine.model->info().hidden;
    std::vector<float> image_soft, audio_soft;
    TowerTaps vision_taps, audio_taps;
    int64_t patches = 0;
    if (in->find("inputs.pixel_values")) {
      image_soft = encode_images(engine, *in, "inputs.", &vision_taps, patches);
      vision_taps.write(w, patches);
      w.add_f32("image_hidden_states", {(int64_t)image_soft.size() / D, D}, image_soft);
    }
    if (in->find("inputs.input_features")) {
      audio_soft = encode_audio(engine, *in, &audio_taps);
      const int64_t frames = audio_taps.entries.count("audio.last_hidden_state")
                                 ? audio_taps.entries.at("audio.last_hidden_state").rows
                                 : -1;
      audio_taps.write(w, frames);
      w.add_f32("audio_hidden_states", {(int64_t)audio_soft.size() / D, D}, audio_soft);
    }
    size_t image_at = 0, audio_at = 0;
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
      std::vector<int32_t> positions;
      std::vector<float> embeds;
      place_soft_tokens(toks, media_ids, D, image_soft, image_at, audio_soft, audio_at, positions, embeds);
      req.embed_positions = positions;
      req.embeds = embeds.data();
      req.all_logits = true;
      req.tap = store;
      if (padded) req.key_mask = key_mask;
      Tensor logits;
      engine.model->forward(*engine.ctx, cache, req, logits);
      store("logits", logits.data(), logits.dim(0), V);
    }
    EV_CHECK(image_at * D == image_soft.size() && audio_at * D == audio_soft.size(), o->inputs,
             ": the rows have fewer placeholders than the media give soft tokens");
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
      MediaPrompt first{prompt, {}, {}};
      if (in->find("gen.inputs.pixel_values")) {
        int64_t unused = 0;
        const std::vector<float> gen_soft = encode_images(engine, *in, "gen.inputs.", nullptr, unused);
        size_t gi = 0, ga = 0;
        place_soft_tokens(prompt, media_ids, D, gen_soft, gi, {}, ga, first.embed_positions, first.embeds);
      }
      const Tensor* logits = &session.feed(first);
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
