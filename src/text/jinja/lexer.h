// Template source -> tokens, with Jinja2's whitespace rules as transformers configures them:
// trim_blocks=True (drop the first newline after a block or comment tag), lstrip_blocks=True
// (drop spaces and tabs before a block or comment tag that starts a line), keep_trailing_newline
// =False, `-` and `+` modifiers, `{% raw %}`, newlines normalized to "\n" (jinja2/lexer.py).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace edgevl::text::jinja {

struct Token {
  enum Type : uint8_t { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };
  Type type;
  std::string value;  // text, name, string contents (unescaped), operator
  int64_t ival = 0;
  double fval = 0;
  int line = 1;
};

// Throws edgevl::Error on unclosed tags, comments or strings and on unexpected characters.
std::vector<Token> tokenize(std::string_view source);

}  // namespace edgevl::text::jinja
