// Gemma 4 text decoder (HF modeling_gemma4.py: Gemma4TextModel / Gemma4ForCausalLM; llama.cpp arch
// "gemma4"). What differs from Gemma 3, each visible in forward():
//  - RMSNorm weights are used as stored (no 1 + w); V is RMS-normalised too, without a weight;
//  - attention scale 1 (the q/k norms take the place of 1/sqrt(d));
//  - head size and KV heads vary per layer; global layers use proportional RoPE;
//  - the last num_kv_shared_layers layers attend to an earlier layer's keys and values and keep
//    no cache of their own;
//  - per-layer embeddings (PLE) give each layer a gated residual input, and each layer's output
//    is multiplied by a stored scalar;
//  - a mixture of experts runs beside the dense MLP in the MoE variants (26B-A4B);
//  - final logit soft-capping.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "core/error.h"
#include "models/common/decoder.h"
#include "models/gemma4/gemma4.h"
#include "models/gemma4/audio_encoder.h"
#include "models/gemma4/gemma4_config.h"
#include "models/gemma4/gemma4_tables.h"
#include "models/gemma4/vision_encoder.h"
#include "models/weights.h"

namespace edgevl {

namespace {

using LayerWeights = Gemma4LayerWeights;
using ModelWeights = Gemma4Weights;

struct Scratch {
  Tensor x, xn, h, h2, q, k, v, attn, gate, up, ple, ple_in, ple_gate, router, expert_in, expert_out;
};

class Gemma4Model : public CausalLM {
 public:
  Gemma4Model(std::unique_ptr<ModelSource> src, Gemma4TextConfig cfg, const std::string& hf_prefix)
      : cfg_(std::move(cfg)), loader_(*src) {
    source_ = std::move(src);
    const Gemma4TextConfig& c = cfg_;
    if (!hf_prefix.empty()) loader_.set_hf_prefix("model.", hf_prefix);
    load_gemma4_text_weights(loader_, c, w_);
    register_weights(loader_.by_hf_name());
    make_gemma4_ropes(c, w_, rope_sliding_, rope_global_);
    // Gemma4TextScaledWordEmbedding: a float32 buffer sqrt(width), cast to the table's dtype in
    // HF; float32 here, which is what the float32 reference computes.
    embed_scale_ = (float)std::sqrt((double)c.hidden);
    ple_scale_ = (float)std::sqrt((double)c.ple_dim);

    info_.family = "gemma4";
    info_.architecture = source_->architecture();
    info_.vocab_size = c.vocab;
    info_.hidden = c.hidden;
    info_.n_layers = c.n_layers;
    info_.n_heads = c.n_heads;
    info_.n_kv_heads = c.layers[0].n_kv_heads;
    info_.head_dim = c.layers[0].head_dim;
    info_.ffn = c.layers[0].ffn;
    info_.max_positions = c.max_positions;
    info_.bos_id = c.bos_id;
    info_.eos_id = c.eos_id;
    info_.n_params = count_parameters();
  }

  // Gemma4ForConditionalGeneration: the towers and the placeholder ids of its config.json.
  void attach_media(const HfConfig& h) {
    tokens_ = gemma4_media_tokens(h);
    if (h.has("vision_config"))
      vision_ = std::make_unique<Gemma4VisionEncoder>(*source_, gemma4_vision_config_from_hf(h.sub("vision_config")),
                                                      cfg_.hidden);
    if (h.has("audio_config"))
      audio_ = std::make_unique<Gemma4AudioEncoder>(*source_, gemma4_audio_config_from_hf(h.sub("audio_config")),
                                                    cfg_.hidden);
    // Adapters (run --lora) may target the towers' linears too.
    if (vision_) register_weights(vision_->weights_by_hf_name());
    if (audio_) register_weights(audio_->weights_by_hf_name());
  }

  // llama.cpp's split: a text GGUF plus the mmproj its converter writes, holding the vision tower
  // (clip.has_vision_encoder, gemma4v) and/or the audio tower (clip.has_audio_encoder, gemma4a).
  // Placeholder ids come from the text file's vocabulary, or the released Gemma 4 ids where it
  // lacks the strings (files written by `edgevl init`).
  void attach_mmproj(const std::string& path) override {
    auto src = ModelSource::open(path);
    EV_CHECK(src->is_gguf() && src->architecture() == "clip", path, ": not an mmproj GGUF (general.architecture '",
             src->architecture(), "', expected 'clip')");
    EV_CHECK(!mmproj_, path, ": the model already has an mmproj attached");
    const gguf::File& f = src->gguf();
    const bool has_vision = f.get_bool("clip.has_vision_encoder").value_or(false);
    const bool has_audio = f.get_bool("clip.has_audio_encoder").value_or(false);
    EV_CHECK(has_vision || has_audio, path, ": the mmproj has no vision or audio encoder");
    EV_CHECK(!(has_vision && vision_), path, ": the model already has a vision tower");
    EV_CHECK(!(has_audio && audio_), path, ": the model already has an audio tower");
    auto fits = [&](int64_t text_hidden, const char* tower) {
      EV_CHECK(text_hidden == cfg_.hidden, path, ": the ", tower, " tower projects to ", text_hidden,
               " dimensions; the text model has ", cfg_.hidden);
    };
    // Both towers are built before either is attached: a bad file leaves the model as it was.
    std::unique_ptr<Gemma4VisionEncoder> vision;
    std::unique_ptr<Gemma4AudioEncoder> audio;
    if (has_vision) {
      int64_t text_hidden = 0;
      Gemma4VisionConfig vc = gemma4_vision_config_from_mmproj(f, &text_hidden);
      fits(text_hidden, "vision");
      vision = std::make_unique<Gemma4VisionEncoder>(*src, std::move(vc), cfg_.hidden);
    }
    if (has_audio) {
      int64_t text_hidden = 0;
      Gemma4AudioConfig ac = gemma4_audio_config_from_mmproj(f, &text_hidden);
      fits(text_hidden, "audio");
      audio = std::make_unique<Gemma4AudioEncoder>(*src, std::move(ac), cfg_.hidden);
    }
    mmproj_ = std::move(src);
    std::vector<std::string> vocab;
    if (source_->is_gguf())
      vocab = source_->gguf().get_string_array("tokenizer.ggml.tokens").value_or(std::vector<std::string>{});
    auto id = [&](const char* piece, int32_t released) {
      for (size_t i = 0; i < vocab.size(); ++i)
        if (vocab[i] == piece) return (int32_t)i;
      return released < cfg_.vocab ? released : -1;
    };
    if (vision) {
      vision_ = std::move(vision);
      register_weights(vision_->weights_by_hf_name());
      if (tokens_.image < 0) {
        tokens_.image = id("<|image|>", 258880);
        tokens_.begin_image = id("<|image>", 255999);
        tokens_.end_image = id("<image|>", 258882);
      }
    }
    if (audio) {
      audio_ = std::move(audio);
      register_weights(audio_->weights_by_hf_name());
      if (tokens_.audio < 0) {
        tokens_.audio = id("<|audio|>", 258881);
        tokens_.begin_audio = id("<|audio>", 256000);
        tokens_.end_audio = id("<audio|>", 258883);
      }
    }
  }

  bool has_audio() const override { return audio_ != nullptr; }
  int64_t audio_mel_bins() const override { return audio_ ? audio_->config().n_mel : 0; }
  int64_t encode_audio(Context& ctx, const float* features, const uint8_t* mask, int64_t frames, int64_t bins,
                       Tensor& out, const ActivationTap& tap) override {
    if (!audio_) return CausalLM::encode_audio(ctx, features, mask, frames, bins, out, tap);
    EV_CHECK(bins == audio_->config().n_mel, "audio: features have ", bins, " mel bins, the audio tower takes ",
             audio_->config().n_mel, " (check the feature extractor's feature_size)");
    return audio_->encode(ctx, features, mask, frames, out, tap);
  }
  void match_hf_eager_attention(bool on) override {
    if (audio_) audio_->set_hf_eager_mask(on);
  }

  bool has_vision() const override { return vision_ != nullptr; }
  MediaTokens media_tokens() const override { return tokens_; }
  int64_t encode_image(Context& ctx, const float* pixels, const int64_t* positions, int64_t n_patches, Tensor& out,
                       const ActivationTap& tap) override {
    if (!vision_) return CausalLM::encode_image(ctx, pixels, positions, n_patches, out, tap);
    return vision_->encode(ctx, pixels, positions, n_patches, out, tap);
  }

  nn::KvCache new_cache(int64_t max_positions) const override {
    std::vector<int64_t> widths;
    for (int64_t l = 0; l < cfg_.n_layers; ++l)
      widths.push_back(cfg_.shared(l) ? 0 : cfg_.layers[l].n_kv_heads * cfg_.layers[l].head_dim);
    return nn::KvCache(std::move(widths), max_positions);
  }

  void forward(Context& ctx, nn::KvCache& cache, const ForwardRequest& req, Tensor& logits) override {
    const Gemma4TextConfig& c = cfg_;
    const int64_t T = (int64_t)req.tokens.size(), D = c.hidden;
    EV_CHECK(T > 0, "forward: no tokens");
    EV_CHECK(req.key_mask.empty() || (int64_t)req.key_mask.size() >= cache.size() + T, "forward: key_mask has ",
             req.key_mask.size(), " entries for ", cache.size() + T, " positions");
    cache.reserve_more(T);
    s_.x.resize({T, D});
    s_.xn.resize({T, D});
    s_.h.resize({T, D});
    embed(req, T);
    if (c.ple_dim > 0) per_layer_inputs(ctx, req, T);
    image_groups(req, cache.size(), T);
    if (req.tap) req.tap("hidden_states.00", s_.x.data(), T, D);
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const LayerWeights& w = w_.layers[l];
      ops::rms_norm(s_.x.data(), w.attn_norm.f32(), s_.xn.data(), T, D, c.rms_eps);
      attention(ctx, l, cache, T, req);
      ops::rms_norm(s_.h.data(), w.post_attn_norm.f32(), s_.h.data(), T, D, c.rms_eps);
      ops::add(s_.x.data(), s_.h.data(), T * D);

      ops::rms_norm(s_.x.data(), w.ffn_norm.f32(), s_.xn.data(), T, D, c.rms_eps);
      gated_mlp(ctx, c.act, c.layers[l].ffn, w.gate, w.up, w.down, s_.xn.data(), T, s_.gate, s_.up, s_.h.data());
      if (c.moe()) {
        // The experts read the residual stream before the MLP; their output joins the dense one.
        ops::rms_norm(s_.h.data(), w.post_ffn_norm_1.f32(), s_.h.data(), T, D, c.rms_eps);
        experts(ctx, w, T);
        ops::rms_norm(s_.h2.data(), w.post_ffn_norm_2.f32(), s_.h2.data(), T, D, c.rms_eps);
        ops::add(s_.h.data(), s_.h2.data(), T * D);
      }
      ops::rms_norm(s_.h.data(), w.post_ffn_norm.f32(), s_.h.data(), T, D, c.rms_eps);
      ops::add(s_.x.data(), s_.h.data(), T * D);

      if (c.ple_dim > 0) per_layer_residual(ctx, l, T);
      ops::scale(s_.x.data(), w.scalar.f32()[0], T * D);
      if (req.tap && l + 1 < c.n_layers) req.tap(hidden_state_name(l + 1), s_.x.data(), T, D);
    }
    ops::rms_norm(s_.x.data(), w_.final_norm.f32(), s_.xn.data(), T, D, c.rms_eps);
    if (req.tap) req.tap(hidden_state_name(c.n_layers), s_.xn.data(), T, D);
    cache.commit(T);
    const int64_t rows = req.all_logits ? T : 1;
    logits.resize({rows, c.vocab});
    ops::linear(ctx, w_.lm_head, s_.xn.row(T - rows), rows, logits.data());
    if (c.final_softcap > 0) ops::softcap(logits.data(), c.final_softcap, logits.numel());
  }

 private:
  // Token embeddings scaled by sqrt(hidden); soft tokens (already projected) replace theirs unscaled.
  void embed(const ForwardRequest& req, int64_t T) {
    const int64_t D = cfg_.hidden;
    embed_tokens(w_.embed, req.tokens, s_.x.data());
    ops::scale(s_.x.data(), embed_scale_, T * D);
    EV_CHECK(req.embed_positions.empty() || req.embeds, "forward: embed_positions without embeddings");
    for (size_t i = 0; i < req.embed_positions.size(); ++i) {
      const int32_t p = req.embed_positions[i];
      EV_CHECK(p >= 0 && p < T, "forward: soft-token position ", p, " is outside the ", T, " tokens");
      std::memcpy(s_.x.row(p), req.embeds + i * D, D * sizeof(float));
    }
  }

  // PLE inputs for every layer, [T, L*P]: (RMSNorm(proj(h0) / sqrt(hidden)) + E_ple[id] * sqrt(P)) / sqrt(2).
  // Soft-token positions look up the pad id, as HF's multimodal model does.
  void per_layer_inputs(Context& ctx, const ForwardRequest& req, int64_t T) {
    const Gemma4TextConfig& c = cfg_;
    const int64_t LP = c.n_layers * c.ple_dim;
    s_.ple.resize({T, LP});
    s_.ple_in.resize({T, LP});
    ops::linear(ctx, w_.ple_model_proj, s_.x.data(), T, s_.ple.data());
    ops::scale(s_.ple.data(), (float)(1.0 / std::sqrt((double)c.hidden)), T * LP);
    ops::rms_norm(s_.ple.data(), w_.ple_proj_norm.f32(), s_.ple.data(), T * c.n_layers, c.ple_dim, c.rms_eps);
    std::vector<int32_t> ids(req.tokens.begin(), req.tokens.end());
    for (int32_t p : req.embed_positions) ids[p] = c.pad_id;
    for (int64_t t = 0; t < T; ++t) {
      EV_CHECK(ids[t] >= 0 && ids[t] < c.ple_vocab, "token id ", ids[t], " is outside the per-layer vocabulary (",
               c.ple_vocab, " entries)");
      ops::embedding_row(w_.ple_embed, ids[t], s_.ple_in.row(t));
    }
    ops::scale(s_.ple_in.data(), ple_scale_, T * LP);
    ops::add(s_.ple.data(), s_.ple_in.data(), T * LP);
    ops::scale(s_.ple.data(), (float)(1.0 / std::sqrt(2.0)), T * LP);
  }

  // The large models' bidirectional images (HF create_causal_mask_mapping): each contiguous run of
  // image soft tokens in this request is one group; empty when the model or request has none.
  void image_groups(const ForwardRequest& req, int64_t pos0, int64_t T) {
    groups_.clear();
    if (!cfg_.bidirectional_images || tokens_.image < 0 || req.embed_positions.empty()) return;
    groups_.assign(pos0 + T, -1);
    int32_t next = 0;
    for (int64_t t = 0; t < T; ++t) {
      if (req.tokens[t] != tokens_.image) continue;
      const bool continues = t > 0 && req.tokens[t - 1] == tokens_.image;
      groups_[pos0 + t] = continues ? groups_[pos0 + t - 1] : next++;
    }
  }

  // x += RMSNorm(proj(act(gate(x)) * ple_l)).
  void per_layer_residual(Context& ctx, int64_t l, int64_t T) {
    const Gemma4TextConfig& c = cfg_;
    const LayerWeights& w = w_.layers[l];
    const int64_t P = c.ple_dim, D = c.hidden;
    s_.ple_gate.resize({T, P});
    s_.ple_in.resize({T, P});
    ops::linear(ctx, w.ple_gate, s_.x.data(), T, s_.ple_gate.data());
    for (int64_t t = 0; t < T; ++t) std::memcpy(s_.ple_in.row(t), s_.ple.row(t) + l * P, P * sizeof(float));
    ops::gated_act(c.act, s_.ple_gate.data(), s_.ple_in.data(), s_.ple_gate.data(), T * P);
    ops::linear(ctx, w.ple_proj, s_.ple_gate.data(), T, s_.h.data());
    ops::rms_norm(s_.h.data(), w.ple_norm.f32(), s_.h.data(), T, D, c.rms_eps);
    ops::add(s_.x.data(), s_.h.data(), T * D);
  }

  // s_.h = o_proj(attention(s_.xn)) for layer l; non-shared layers append their K/V to the cache.
  void attention(Context& ctx, int64_t l, nn::KvCache& cache, int64_t T, const ForwardRequest& req) {
    const Gemma4TextConfig& c = cfg_;
    const Gemma4LayerShape& s = c.layers[l];
    const LayerWeights& w = w_.layers[l];
    const int64_t H = c.n_heads, Hkv = s.n_kv_heads, Dh = s.head_dim, pos0 = cache.size();
    const nn::Rope& rope = s.sliding ? rope_sliding_ : rope_global_;
    s_.q.resize({T, H * Dh});
    s_.attn.resize({T, H * Dh});
    ops::linear(ctx, w.q, s_.xn.data(), T, s_.q.data());
    ops::rms_norm(s_.q.data(), w.q_norm.f32(), s_.q.data(), T * H, Dh, c.rms_eps);
    for (int64_t t = 0; t < T; ++t) rope.apply(s_.q.row(t), H, Dh, pos0 + t);
    if (!c.shared(l)) {
      s_.k.resize({T, Hkv * Dh});
      s_.v.resize({T, Hkv * Dh});
      ops::linear(ctx, w.k, s_.xn.data(), T, s_.k.data());
      if (s.v_from_k) std::memcpy(s_.v.data(), s_.k.data(), T * Hkv * Dh * sizeof(float));
      else ops::linear(ctx, w.v, s_.xn.data(), T, s_.v.data());
      ops::rms_norm(s_.k.data(), w.k_norm.f32(), s_.k.data(), T * Hkv, Dh, c.rms_eps);
      ops::rms_norm(s_.v.data(), nullptr, s_.v.data(), T * Hkv, Dh, c.rms_eps);
      for (int64_t t = 0; t < T; ++t) {
        rope.apply(s_.k.row(t), Hkv, Dh, pos0 + t);
        std::memcpy(cache.k(l, pos0 + t), s_.k.row(t), Hkv * Dh * sizeof(float));
        std::memcpy(cache.v(l, pos0 + t), s_.v.row(t), Hkv * Dh * sizeof(float));
      }
    }
    nn::AttentionShape a;
    a.n_heads = H;
    a.n_kv_heads = Hkv;
    a.head_dim = Dh;
    a.scale = 1.0f;
    a.sliding_window = s.sliding ? c.sliding_window : 0;
    const int32_t* groups = s.sliding && !groups_.empty() ? groups_.data() : nullptr;
    nn::attention(ctx, a, s_.q.data(), T, pos0, cache.k(s.kv_source), cache.v(s.kv_source), s_.attn.data(),
                  req.key_mask.empty() ? nullptr : req.key_mask.data(), groups);
    ops::linear(ctx, w.o, s_.attn.data(), T, s_.h.data());
  }

  // s_.h2 = sum over each token's top-k experts of weight * expert(RMSNorm_2(x)) (Gemma4TextRouter +
  // Gemma4TextExperts). The router sees RMSNorm(x) * scale / sqrt(hidden), softmaxes over all
  // experts, keeps the top k, renormalises them and multiplies by the per-expert scale.
  void experts(Context& ctx, const LayerWeights& w, int64_t T) {
    const Gemma4TextConfig& c = cfg_;
    const int64_t D = c.hidden, E = c.n_experts, K = c.top_k, I = c.moe_ffn;
    s_.router.resize({T, E});
    ops::rms_norm(s_.x.data(), nullptr, s_.xn.data(), T, D, c.rms_eps);
    const float root = (float)(1.0 / std::sqrt((double)D));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < D; ++i) s_.xn.row(t)[i] *= w.router_scale.f32()[i] * root;
    ops::linear(ctx, w.router, s_.xn.data(), T, s_.router.data());
    std::vector<std::vector<std::pair<int64_t, float>>> routed(E);  // per expert: (token, weight)
    std::vector<int64_t> order(E);
    for (int64_t t = 0; t < T; ++t) {
      float* p = s_.router.row(t);
      ops::softmax(p, E);
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + K, order.end(), [&](int64_t a, int64_t b) {
        return p[a] > p[b] || (p[a] == p[b] && a < b);
      });
      float sum = 0;
      for (int64_t k = 0; k < K; ++k) sum += p[order[k]];
      for (int64_t k = 0; k < K; ++k)
        routed[order[k]].push_back({t, p[order[k]] / sum * w.expert_scale.f32()[order[k]]});
    }
    ops::rms_norm(s_.x.data(), w.pre_ffn_norm_2.f32(), s_.xn.data(), T, D, c.rms_eps);
    s_.h2.resize({T, D});
    std::fill(s_.h2.data(), s_.h2.data() + T * D, 0.0f);
    for (int64_t e = 0; e < E; ++e) {
      const int64_t n = (int64_t)routed[e].size();
      if (n == 0) continue;
      s_.expert_in.resize({n, D});
      s_.expert_out.resize({n, D});
      for (int64_t i = 0; i < n; ++i) std::memcpy(s_.expert_in.row(i), s_.xn.row(routed[e][i].first), D * sizeof(float));
      gated_mlp(ctx, c.act, I, w.experts_gate_up.rows_slice(e * 2 * I, I),
                w.experts_gate_up.rows_slice(e * 2 * I + I, I), w.experts_down.rows_slice(e * D, D),
                s_.expert_in.data(), n, s_.gate, s_.up, s_.expert_out.data());
      for (int64_t i = 0; i < n; ++i)
        ops::add_scaled(s_.h2.row(routed[e][i].first), s_.expert_out.row(i), routed[e][i].second, D);
    }
  }

  int64_t count_parameters() const {
    int64_t n = 0;
    auto add = [&](const WeightRef& r) {
      if (r.empty()) return;
      int64_t k = 1;
      for (int64_t d : r.shape) k *= d;
      n += k;
    };
    for (const auto& s : gemma4_model_table(cfg_)) add(w_.*(s.slot));
    if (w_.lm_head.data == w_.embed.data) n -= cfg_.vocab * cfg_.hidden;
    for (int64_t l = 0; l < cfg_.n_layers; ++l)
      for (const auto& s : gemma4_layer_table(cfg_, l)) add(w_.layers[l].*(s.slot));
    return n;
  }

  Gemma4TextConfig cfg_;
  WeightLoader loader_;
  MediaTokens tokens_;
  std::vector<int32_t> groups_;  // per position of the current forward: image group or -1
  std::unique_ptr<ModelSource> mmproj_;  // outlives vision_ (declared first), which maps it
  std::unique_ptr<Gemma4VisionEncoder> vision_;
  std::unique_ptr<Gemma4AudioEncoder> audio_;
  ModelWeights w_;
  nn::Rope rope_sliding_, rope_global_;
  float embed_scale_ = 1.0f, ple_scale_ = 1.0f;
  Scratch s_;
};

}  // namespace

MediaTokens gemma4_media_tokens(const HfConfig& h) {
  MediaTokens t;
  t.image = (int32_t)h.get_int("image_token_id", -1);
  t.begin_image = (int32_t)h.get_int("boi_token_id", -1);
  t.end_image = (int32_t)h.get_int("eoi_token_id", -1);
  t.audio = (int32_t)h.get_int("audio_token_id", -1);
  t.begin_audio = (int32_t)h.get_int("boa_token_id", -1);
  t.end_audio = (int32_t)h.get_int("eoa_token_id", h.get_int("eoa_token_index", -1));
  return t;
}

std::unique_ptr<CausalLM> make_gemma4(std::unique_ptr<ModelSource> src) {
  if (src->is_gguf()) {
    Gemma4TextConfig cfg = gemma4_text_config_from_gguf(src->gguf());
    return std::make_unique<Gemma4Model>(std::move(src), std::move(cfg), "");
  }
  // Gemma4ForConditionalGeneration nests the text config and keeps the decoder under
  // model.language_model.
  const HfConfig& hf = src->hf();
  const bool nested = hf.get_string("model_type", "") == "gemma4";
  Gemma4TextConfig cfg = gemma4_text_config_from_hf(nested ? hf.sub("text_config") : hf);
  const HfConfig top = hf;
  auto model = std::make_unique<Gemma4Model>(std::move(src), std::move(cfg), nested ? "model.language_model." : "");
  if (nested) model->attach_media(top);
  return model;
}

}  // namespace edgevl
