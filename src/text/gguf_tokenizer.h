// Builds a Tokenizer from the vocabulary llama.cpp's converter stores in a GGUF file
// (`tokenizer.ggml.*` keys). Supported `tokenizer.ggml.model` values:
//   "llama"  SentencePiece BPE by scores with <0xXX> byte fallback (Llama 2, Gemma 1-3, Granite)
//   "gpt2"   byte-level BPE with merges and a `tokenizer.ggml.pre` regex (Llama 3, Qwen2/3/3.5, ...)
//   "gemma4" BPE with merges over U+2581-escaped text with byte fallback (Gemma 4)
// Anything else ("bert", "t5", "rwkv", "none", ...) is an Error naming the model.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "text/tokenizer.h"
#include "text/vocab.h"

namespace edgevl::text {

// Reads and validates the tokenizer metadata; throws Error("gguf tokenizer: <path>: ...").
Vocab read_gguf_vocab(const gguf::File& file);

// read_gguf_vocab + make_vocab_tokenizer. Warnings (e.g. an unknown pre-tokenizer, which falls
// back to the GPT-2 pattern) go to `warnings`, or to stderr when it is null.
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const gguf::File& file, std::vector<std::string>* warnings = nullptr);

}  // namespace edgevl::text
