// Hugging Face tokenizer.json tokenizers behind the Tokenizer interface (tokenizer.h).
//
// The pipeline of the `tokenizers` library: added tokens are cut out of the raw text (leftmost
// longest; special=true ones only with parse_special; lstrip/rstrip/single_word honoured), each
// remaining fragment is normalized, cut again by the normalized added tokens, pre-tokenized, and
// each piece goes through the BPE model; the post-processor's single template adds BOS/EOS when
// add_special. decode maps ids to token strings and runs the decoder chain.
//
// Supported (anything else is a load-time Error naming it):
//  - model: BPE (byte-level or with byte_fallback; unk_token, fuse_unk, ignore_merges,
//    continuing_subword_prefix, end_of_word_suffix; dropout null/0)
//  - normalizers: NFC, NFD, NFKC, NFKD, Lowercase, Replace, Prepend, Strip, StripAccents, Sequence
//  - pre_tokenizers: ByteLevel, Split (every behaviour, invert), Metaspace (prepend schemes),
//    Digits, Punctuation, Whitespace, WhitespaceSplit, BertPreTokenizer, Sequence
//  - post_processors: TemplateProcessing, ByteLevel, BertProcessing, RobertaProcessing, Sequence
//  - decoders: ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, Sequence
// tokenizer_config.json supplies bos_token / eos_token and, for the Llama/Gemma tokenizer classes
// whose transformers code rebuilds the template from them, add_bos_token / add_eos_token.
// generation_config.json's eos_token_id (number or list) adds end-of-generation ids.
#pragma once
#include <memory>
#include <string>
#include <string_view>

#include "text/tokenizer.h"

namespace edgevl::text {

// Reads model_dir/tokenizer.json (required), tokenizer_config.json and generation_config.json
// (optional). Throws Error naming the file and the problem.
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& model_dir);

// The same from file contents; empty config strings mean "absent".
std::unique_ptr<Tokenizer> make_hf_tokenizer(std::string_view tokenizer_json, std::string_view tokenizer_config_json = {},
                                             std::string_view generation_config_json = {});

}  // namespace edgevl::text
