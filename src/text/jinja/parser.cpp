#include "text/jinja/parser.h"

#include <algorithm>
#include <cstring>
#include <initializer_list>

#include "core/error.h"

namespace edgevl::text::jinja {
namespace {

class Parser {
 public:
  explicit Parser(const std::vector<Token>& t) : t_(t) {}

  Body parse() {
    std::string found;
    Body body = parse_body({}, &found);
    return body;
  }

 private:
  struct Guard {
    explicit Guard(Parser* p) : p(p) {
      if (++p->depth_ > kMaxNesting) p->error("template nested deeper than 256 levels");
    }
    ~Guard() { --p->depth_; }
    Parser* p;
  };

  const Token& cur() const { return t_[i_]; }
  const Token& peek(size_t k = 1) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  void advance() {
    if (i_ + 1 < t_.size()) ++i_;
  }
  bool at_op(const char* op) const { return cur().type == Token::Op && cur().value == op; }
  bool at_name(const char* n) const { return cur().type == Token::Name && cur().value == n; }
  bool accept_op(const char* op) {
    if (!at_op(op)) return false;
    advance();
    return true;
  }
  bool accept_name(const char* n) {
    if (!at_name(n)) return false;
    advance();
    return true;
  }

  static std::string describe(const Token& t) {
    switch (t.type) {
      case Token::Text: return "text";
      case Token::VarBegin: return "'{{'";
      case Token::VarEnd: return "end of print statement '}}'";
      case Token::BlockBegin: return "'{%'";
      case Token::BlockEnd: return "end of statement block '%}'";
      case Token::Eof: return "end of template";
      case Token::String: return "string";
      default: return "'" + t.value + "'";
    }
  }

  [[noreturn]] void error(const std::string& msg) const { fail("jinja: line ", cur().line, ": ", msg); }

  void expect_op(const char* op) {
    if (!accept_op(op)) error(std::string("expected '") + op + "', got " + describe(cur()));
  }
  std::string expect_name() {
    if (cur().type != Token::Name) error("expected a name, got " + describe(cur()));
    std::string n = cur().value;
    advance();
    return n;
  }
  void expect_block_end() {
    if (cur().type != Token::BlockEnd) error("expected end of statement block, got " + describe(cur()));
    advance();
  }

  ExprPtr node(ExprKind k, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = line;
    return e;
  }
  // Sets the height from the children and rejects trees taller than kMaxNesting (a long chain of
  // `a + b + ...` is iterative to parse but recursive to evaluate).
  ExprPtr finish(ExprPtr e) {
    int h = 0;
    for (const auto& a : e->args)
      if (a) h = std::max(h, a->height);
    for (const auto& kv : e->kwargs) h = std::max(h, kv.second->height);
    e->height = h + 1;
    if (e->height > kMaxNesting) error("expression nested deeper than 256 levels");
    return e;
  }
  ExprPtr binary(ExprKind k, std::string op, ExprPtr a, ExprPtr b, int line) {
    auto e = node(k, line);
    e->name = std::move(op);
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return finish(std::move(e));
  }

  // ---- statements ----

  Body parse_body(std::initializer_list<const char*> ends, std::string* found) {
    Body body;
    while (true) {
      const Token& t = cur();
      if (t.type == Token::Eof) {
        if (ends.size() == 0) return body;
        std::string names;
        for (const char* e : ends) names += std::string(names.empty() ? "" : " or ") + "'" + e + "'";
        error("unexpected end of template, expected " + names);
      }
      if (t.type == Token::Text) {
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::Text;
        s->line = t.line;
        s->text = t.value;
        body.push_back(std::move(s));
        advance();
      } else if (t.type == Token::VarBegin) {
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::Output;
        s->line = t.line;
        advance();
        s->expr = parse_tuple(true);
        if (cur().type != Token::VarEnd) error("expected end of print statement, got " + describe(cur()));
        advance();
        body.push_back(std::move(s));
      } else if (t.type == Token::BlockBegin) {
        const Token& n = peek();
        if (n.type != Token::Name) {
          advance();
          error("expected a statement name, got " + describe(cur()));
        }
        for (const char* e : ends)
          if (n.value == e) {
            *found = e;
            advance();
            advance();
            return body;
          }
        body.push_back(parse_statement());
      } else {
        error("unexpected " + describe(t));
      }
    }
  }

  std::unique_ptr<Stmt> parse_statement() {
    Guard g(this);
    advance();  // {%
    auto s = std::make_unique<Stmt>();
    s->line = cur().line;
    const std::string name = cur().value;
    advance();
    std::string found;
    if (name == "if") {
      s->kind = StmtKind::If;
      ExprPtr c = parse_tuple(false);
      expect_block_end();
      while (true) {
        Body b = parse_body({"elif", "else", "endif"}, &found);
        s->branches.emplace_back(std::move(c), std::move(b));
        if (found == "elif") {
          c = parse_tuple(false);
          expect_block_end();
        } else if (found == "else") {
          expect_block_end();
          s->branches.emplace_back(nullptr, parse_body({"endif"}, &found));
          expect_block_end();
          break;
        } else {
          expect_block_end();
          break;
        }
      }
    } else if (name == "for") {
      s->kind = StmtKind::For;
      s->targets = parse_targets();
      if (!accept_name("in")) error("expected 'in' in for loop, got " + describe(cur()));
      s->expr = parse_tuple(false);
      if (accept_name("if")) s->cond = parse_expression(true);
      if (at_name("recursive")) error("recursive for loops are not supported");
      expect_block_end();
      ++loops_;
      s->body = parse_body({"endfor", "else"}, &found);
      --loops_;
      expect_block_end();
      if (found == "else") {
        s->else_body = parse_body({"endfor"}, &found);
        expect_block_end();
      }
    } else if (name == "set") {
      if (cur().type == Token::Name && peek().type == Token::Op && peek().value == "." &&
          peek(2).type == Token::Name) {
        s->targets.push_back(cur().value);
        s->text = peek(2).value;
        advance();
        advance();
        advance();
      } else {
        s->targets = parse_targets();
      }
      if (accept_op("=")) {
        s->kind = StmtKind::Set;
        s->expr = parse_tuple(true);
        expect_block_end();
      } else {
        if (s->targets.size() != 1 || !s->text.empty()) error("a block set takes one plain name");
        s->kind = StmtKind::SetBlock;
        s->expr = parse_filter_chain(false);
        expect_block_end();
        s->body = parse_body({"endset"}, &found);
        expect_block_end();
      }
    } else if (name == "macro") {
      s->kind = StmtKind::Macro;
      s->text = expect_name();
      expect_op("(");
      while (!accept_op(")")) {
        if (!s->params.empty()) expect_op(",");
        if (accept_op(")")) break;
        std::string p = expect_name();
        ExprPtr def;
        if (accept_op("=")) def = parse_expression(true);
        else if (!s->params.empty() && s->params.back().second)
          error("non-default argument follows default argument");
        s->params.emplace_back(std::move(p), std::move(def));
      }
      expect_block_end();
      int saved = loops_;
      loops_ = 0;
      s->body = parse_body({"endmacro"}, &found);
      loops_ = saved;
      expect_block_end();
    } else if (name == "filter") {
      s->kind = StmtKind::FilterBlock;
      s->expr = parse_filter_chain(true);
      expect_block_end();
      s->body = parse_body({"endfilter"}, &found);
      expect_block_end();
    } else if (name == "generation") {
      // transformers' AssistantTracker: renders its body (it only records offsets).
      s->kind = StmtKind::If;
      expect_block_end();
      auto t = node(ExprKind::Literal, s->line);
      t->literal = Value::boolean(true);
      s->branches.emplace_back(std::move(t), parse_body({"endgeneration"}, &found));
      expect_block_end();
    } else if (name == "break" || name == "continue") {
      if (loops_ == 0) error("'" + name + "' outside of a loop");
      s->kind = name == "break" ? StmtKind::Break : StmtKind::Continue;
      expect_block_end();
    } else {
      i_ -= 1;
      error("unknown or unsupported tag '" + name + "'");
    }
    return s;
  }

  // `a`, `a, b`, `(a, b)`.
  std::vector<std::string> parse_targets() {
    std::vector<std::string> names;
    bool paren = accept_op("(");
    do {
      if (paren && at_op(")")) break;
      names.push_back(expect_name());
    } while (accept_op(","));
    if (paren) expect_op(")");
    static const char* kReserved[] = {"true", "false", "none", "True", "False", "None", "loop"};
    for (const auto& n : names)
      for (const char* r : kReserved)
        if (n == r && n != "loop") error("cannot assign to '" + n + "'");
    return names;
  }

  // `| f(args) | g` applied to the block's rendered text.
  ExprPtr parse_filter_chain(bool required) {
    ExprPtr e = node(ExprKind::BlockValue, cur().line);
    if (required) {
      if (cur().type != Token::Name) error("expected a filter name, got " + describe(cur()));
      e = parse_filter(std::move(e));
    }
    while (at_op("|")) {
      advance();
      e = parse_filter(std::move(e));
    }
    return e;
  }

  // ---- expressions (jinja2/parser.py precedence) ----

  bool is_tuple_end() const {
    const Token& t = cur();
    return t.type == Token::VarEnd || t.type == Token::BlockEnd || (t.type == Token::Op && t.value == ")");
  }

  ExprPtr parse_tuple(bool with_condexpr, bool explicit_parens = false) {
    int line = cur().line;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (is_tuple_end()) break;
      items.push_back(parse_expression(with_condexpr));
      if (at_op(",")) is_tuple = true;
      else break;
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parens) error("expected an expression, got " + describe(cur()));
    }
    auto e = node(ExprKind::Tuple, line);
    e->args = std::move(items);
    return finish(std::move(e));
  }

  ExprPtr parse_expression(bool with_condexpr) {
    Guard g(this);
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
    int line = cur().line;
    ExprPtr e = parse_or();
    while (accept_name("if")) {
      ExprPtr c = parse_or();
      ExprPtr other;
      if (accept_name("else")) {
        Guard g(this);
        other = parse_condexpr();
      }
      auto n = node(ExprKind::Cond, line);
      n->args.push_back(std::move(c));
      n->args.push_back(std::move(e));
      n->args.push_back(std::move(other));
      e = finish(std::move(n));
    }
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (at_name("or")) {
      int line = cur().line;
      advance();
      e = binary(ExprKind::Or, "or", std::move(e), parse_and(), line);
    }
    return e;
  }

  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (at_name("and")) {
      int line = cur().line;
      advance();
      e = binary(ExprKind::And, "and", std::move(e), parse_not(), line);
    }
    return e;
  }

  ExprPtr parse_not() {
    if (at_name("not")) {
      Guard g(this);
      int line = cur().line;
      advance();
      auto n = node(ExprKind::Not, line);
      n->args.push_back(parse_not());
      return finish(std::move(n));
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    int line = cur().line;
    ExprPtr first = parse_math1();
    ExprPtr e;
    while (true) {
      std::string op;
      const Token& t = cur();
      if (t.type == Token::Op &&
          (t.value == "==" || t.value == "!=" || t.value == "<" || t.value == "<=" || t.value == ">" ||
           t.value == ">=")) {
        op = t.value;
        advance();
      } else if (at_name("in")) {
        op = "in";
        advance();
      } else if (at_name("not") && peek().type == Token::Name && peek().value == "in") {
        op = "notin";
        advance();
        advance();
      } else {
        break;
      }
      if (!e) {
        e = node(ExprKind::Compare, line);
        e->args.push_back(std::move(first));
      }
      e->ops.push_back(op);
      e->args.push_back(parse_math1());
    }
    return e ? finish(std::move(e)) : std::move(first);
  }

  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (at_op("+") || at_op("-")) {
      std::string op = cur().value;
      int line = cur().line;
      advance();
      e = binary(ExprKind::Binary, op, std::move(e), parse_concat(), line);
    }
    return e;
  }

  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (at_op("~")) {
      int line = cur().line;
      advance();
      e = binary(ExprKind::Binary, "~", std::move(e), parse_math2(), line);
    }
    return e;
  }

  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (at_op("*") || at_op("/") || at_op("//") || at_op("%")) {
      std::string op = cur().value;
      int line = cur().line;
      advance();
      e = binary(ExprKind::Binary, op, std::move(e), parse_pow(), line);
    }
    return e;
  }

  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (at_op("**")) {
      int line = cur().line;
      advance();
      e = binary(ExprKind::Binary, "**", std::move(e), parse_unary(true), line);
    }
    return e;
  }

  ExprPtr parse_unary(bool with_filter) {
    Guard g(this);
    int line = cur().line;
    ExprPtr e;
    if (at_op("-") || at_op("+")) {
      bool neg = at_op("-");
      advance();
      e = node(neg ? ExprKind::Neg : ExprKind::Pos, line);
      e->args.push_back(parse_unary(false));
      e = finish(std::move(e));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    int line = t.line;
    auto lit = [&](Value v) {
      auto e = node(ExprKind::Literal, line);
      e->literal = std::move(v);
      return e;
    };
    if (t.type == Token::Name) {
      std::string n = t.value;
      advance();
      if (n == "true" || n == "True") return lit(Value::boolean(true));
      if (n == "false" || n == "False") return lit(Value::boolean(false));
      if (n == "none" || n == "None") return lit(Value::none());
      auto e = node(ExprKind::Name, line);
      e->name = n;
      return e;
    }
    if (t.type == Token::String) {
      std::string s = t.value;
      advance();
      while (cur().type == Token::String) {  // adjacent literals concatenate
        s += cur().value;
        advance();
      }
      return lit(Value::string(std::move(s)));
    }
    if (t.type == Token::Int) {
      int64_t v = t.ival;
      advance();
      return lit(Value::integer(v));
    }
    if (t.type == Token::Float) {
      double v = t.fval;
      advance();
      return lit(Value::number(v));
    }
    if (at_op("(")) {
      advance();
      ExprPtr e = parse_tuple(true, true);
      expect_op(")");
      return e;
    }
    if (at_op("[")) {
      advance();
      auto e = node(ExprKind::List, line);
      while (!at_op("]")) {
        if (!e->args.empty()) expect_op(",");
        if (at_op("]")) break;
        e->args.push_back(parse_expression(true));
      }
      advance();
      return finish(std::move(e));
    }
    if (at_op("{")) {
      advance();
      auto e = node(ExprKind::Dict, line);
      while (!at_op("}")) {
        if (!e->args.empty()) expect_op(",");
        if (at_op("}")) break;
        e->args.push_back(parse_expression(true));
        expect_op(":");
        e->args.push_back(parse_expression(true));
      }
      advance();
      return finish(std::move(e));
    }
    error("unexpected " + describe(t));
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (at_op(".") || at_op("[")) e = parse_subscript(std::move(e));
      else if (at_op("(")) e = parse_call(std::move(e));
      else return e;
    }
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (at_op("|")) {
        advance();
        e = parse_filter(std::move(e));
      } else if (at_name("is")) {
        e = parse_test(std::move(e));
      } else if (at_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj) {
    int line = cur().line;
    if (accept_op(".")) {
      if (cur().type == Token::Name) {
        auto e = node(ExprKind::Attr, line);
        e->name = cur().value;
        advance();
        e->args.push_back(std::move(obj));
        return finish(std::move(e));
      }
      if (cur().type == Token::Int) {
        auto e = node(ExprKind::Item, line);
        auto idx = node(ExprKind::Literal, line);
        idx->literal = Value::integer(cur().ival);
        advance();
        e->args.push_back(std::move(obj));
        e->args.push_back(std::move(idx));
        return finish(std::move(e));
      }
      error("expected a name or number after '.', got " + describe(cur()));
    }
    expect_op("[");
    ExprPtr start, stop, step;
    bool slice = false;
    if (!at_op(":")) start = parse_expression(true);
    if (accept_op(":")) {
      slice = true;
      if (!at_op("]") && !at_op(":")) stop = parse_expression(true);
      if (accept_op(":") && !at_op("]")) step = parse_expression(true);
    } else if (at_op(",")) {
      // obj[a, b] indexes with a tuple.
      auto t = node(ExprKind::Tuple, line);
      t->args.push_back(std::move(start));
      while (accept_op(",")) {
        if (at_op("]")) break;
        t->args.push_back(parse_expression(true));
      }
      start = finish(std::move(t));
    }
    expect_op("]");
    auto e = node(slice ? ExprKind::Slice : ExprKind::Item, line);
    e->args.push_back(std::move(obj));
    e->args.push_back(std::move(start));
    if (slice) {
      e->args.push_back(std::move(stop));
      e->args.push_back(std::move(step));
    }
    return finish(std::move(e));
  }

  void parse_call_args(Expr& e) {
    expect_op("(");
    bool first = true;
    while (!at_op(")")) {
      if (!first) expect_op(",");
      first = false;
      if (at_op(")")) break;
      if (at_op("*") || at_op("**")) error("*args and **kwargs in calls are not supported");
      if (cur().type == Token::Name && peek().type == Token::Op && peek().value == "=") {
        std::string k = cur().value;
        advance();
        advance();
        e.kwargs.emplace_back(std::move(k), parse_expression(true));
      } else {
        if (!e.kwargs.empty()) error("positional argument follows keyword argument");
        e.args.push_back(parse_expression(true));
      }
    }
    advance();
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto e = node(ExprKind::Call, cur().line);
    e->args.push_back(std::move(callee));
    parse_call_args(*e);
    return finish(std::move(e));
  }

  std::string dotted_name() {
    std::string n = expect_name();
    while (at_op(".") && peek().type == Token::Name) {
      advance();
      n += "." + cur().value;
      advance();
    }
    return n;
  }

  ExprPtr parse_filter(ExprPtr value) {
    int line = cur().line;
    auto e = node(ExprKind::Filter, line);
    e->name = dotted_name();
    if (!is_known_filter(e->name)) fail("jinja: line ", line, ": no filter named '", e->name, "'");
    e->args.push_back(std::move(value));
    if (at_op("(")) parse_call_args(*e);
    return finish(std::move(e));
  }

  ExprPtr parse_test(ExprPtr value) {
    int line = cur().line;
    advance();  // is
    auto e = node(ExprKind::Test, line);
    e->negated = accept_name("not");
    e->name = dotted_name();
    if (!is_known_test(e->name)) fail("jinja: line ", line, ": no test named '", e->name, "'");
    e->args.push_back(std::move(value));
    const Token& t = cur();
    if (at_op("(")) {
      parse_call_args(*e);
    } else if ((t.type == Token::Name || t.type == Token::String || t.type == Token::Int ||
                t.type == Token::Float || at_op("[") || at_op("{")) &&
               !(t.type == Token::Name && (t.value == "else" || t.value == "or" || t.value == "and"))) {
      if (at_name("is")) error("you cannot chain multiple tests with 'is'");
      Guard g(this);
      e->args.push_back(parse_postfix(parse_primary()));
    }
    return finish(std::move(e));
  }

  const std::vector<Token>& t_;
  size_t i_ = 0;
  int depth_ = 0;
  int loops_ = 0;
};

}  // namespace

Body parse_template(const std::vector<Token>& tokens) { return Parser(tokens).parse(); }

}  // namespace edgevl::text::jinja
