// Syntax tree of a parsed template. One node type per family keeps the interpreter a plain switch.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "text/jinja/value.h"

namespace edgevl::text::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class ExprKind : uint8_t {
  Literal,     // literal (scalar only)
  Name,        // name
  List,        // args = items
  Tuple,       // args = items
  Dict,        // args = key0, value0, key1, value1, ...
  Attr,        // args[0].name
  Item,        // args[0][args[1]]
  Slice,       // args[0][args[1]:args[2]:args[3]] (null when absent)
  Call,        // args[0](args[1..], kwargs)
  Filter,      // args[0] | name(args[1..], kwargs)
  Test,        // args[0] is [not] name(args[1..], kwargs)
  Neg,         // -args[0]
  Pos,         // +args[0]
  Not,         // not args[0]
  Binary,      // args[0] name args[1]: + - * / // % ** ~
  Compare,     // args[0] ops[0] args[1] ops[1] args[2] ... (Python chaining)
  And,         // args[0] and args[1]
  Or,          // args[0] or args[1]
  Cond,        // args[1] if args[0] else args[2] (args[2] may be null)
  BlockValue,  // the rendered body of `{% set x | f %}` / `{% filter f %}`
};

struct Expr {
  ExprKind kind;
  int line = 0;
  Value literal;
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
  bool negated = false;  // `is not`
  int height = 1;        // 1 + the tallest child, bounded by kMaxNesting
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;

enum class StmtKind : uint8_t {
  Text,      // text
  Output,    // {{ expr }}
  If,        // branches: (cond, body); a final else has a null cond
  For,       // for targets in expr [if cond]: body [else else_body]
  Set,       // set targets = expr, or set targets[0].attr = expr
  SetBlock,  // set targets[0] [| filter] %}body{% endset
  Macro,     // macro name(params): body
  FilterBlock,  // filter expr(BlockValue-based chain): body
  Break,
  Continue,
};

struct Stmt {
  StmtKind kind;
  int line = 0;
  std::string text;  // Text; Macro name; Set attribute (`ns.attr`) when non-empty
  ExprPtr expr;      // Output value; For iterable; Set value; SetBlock / FilterBlock filter chain
  ExprPtr cond;      // For filter
  std::vector<std::string> targets;
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body, else_body;
  std::vector<std::pair<std::string, ExprPtr>> params;  // Macro parameters and defaults
};

}  // namespace edgevl::text::jinja
