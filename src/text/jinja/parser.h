// Tokens -> syntax tree, following jinja2/parser.py's grammar and operator precedence.
#pragma once
#include <string_view>
#include <vector>

#include "text/jinja/ast.h"
#include "text/jinja/lexer.h"

namespace edgevl::text::jinja {

// Nesting (expressions and blocks) deeper than this is rejected, so hostile templates cannot
// exhaust the stack while parsing or rendering.
constexpr int kMaxNesting = 256;

// Throws edgevl::Error with the line on syntax errors, unknown tags, unknown filters or tests,
// unclosed blocks and too deep nesting.
Body parse_template(const std::vector<Token>& tokens);

bool is_known_filter(std::string_view name);  // defined with the filters (builtins.cpp)
bool is_known_test(std::string_view name);

}  // namespace edgevl::text::jinja
