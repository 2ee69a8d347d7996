// A tokenizer vocabulary in the shape GGUF stores it (`tokenizer.ggml.*`, as written by
// llama.cpp's convert_hf_to_gguf.py). gguf_tokenizer.cpp fills it from a GGUF file; tests and
// converters may fill it directly. make_vocab_tokenizer() validates it and builds the tokenizer.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "text/tokenizer.h"

namespace edgevl::text {

// tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
};

enum class VocabKind {
  // tokenizer.ggml.model "llama": SentencePiece BPE. Spaces become U+2581 (optionally one is
  // prepended), then the adjacent pair whose concatenation is the highest-scoring vocabulary
  // entry is merged until none is left; characters outside the vocabulary become <0xXX> tokens.
  Spm,
  // "gpt2": byte-level BPE. Text is split by the pre-tokenizer regex (tokenizer.ggml.pre), each
  // piece's bytes are mapped to GPT-2's printable byte alphabet, and merges apply by rank.
  ByteBpe,
  // "gemma4": BPE with merges by rank over U+2581-escaped text with <0xXX> byte fallback: the
  // Hugging Face tokenizer.json model of Gemma 3/4 (BPE, byte_fallback, Replace " " -> "▁").
  MergeBpe,
};

struct Vocab {
  VocabKind kind = VocabKind::Spm;
  std::string pre = "default";             // tokenizer.ggml.pre (ByteBpe regex choice)
  std::vector<std::string> tokens;         // required, id = index
  std::vector<float> scores;               // empty or one per token (Spm uses them)
  std::vector<TokenType> types;            // empty (all Normal) or one per token
  std::vector<std::string> merges;         // "left right", rank = index (ByteBpe, MergeBpe)
  int32_t bos = -1, eos = -1, unk = -1, pad = -1, eot = -1, eom = -1;
  std::optional<bool> add_bos, add_eos, add_space_prefix;  // unset: the model kind's default
};

// Validates (sizes, types, ids in range, merges referring to known tokens) and builds; throws
// Error. Non-fatal problems (unknown pre-tokenizer name, ignored out-of-range optional ids) go to
// `warnings`, or to stderr when it is null.
std::unique_ptr<Tokenizer> make_vocab_tokenizer(Vocab vocab, std::vector<std::string>* warnings = nullptr);

}  // namespace edgevl::text
