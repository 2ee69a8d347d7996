// Evaluation of expressions and statements with Jinja2's semantics (jinja2/runtime.py,
// jinja2/sandbox.py, jinja2/environment.py getattr/getitem) and Python's operators.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "text/jinja/interp.h"

namespace edgevl::text::jinja {

// ---- heap ----

void Interp::charge(size_t work) {
  work_ += work;
  if (work_ > limits_.max_work) fail("jinja: template does too much work (over ", limits_.max_work, " units)");
}

Value Interp::make_list(std::vector<Value> items, bool tuple) {
  heap_items_ += items.size() + 1;
  if (heap_items_ > limits_.max_heap_items) fail("jinja: template creates too many values");
  charge(items.size());
  auto l = std::make_unique<List>();
  l->items = std::move(items);
  l->tuple = tuple;
  lists_.push_back(std::move(l));
  return Value::list(lists_.back().get());
}

Value Interp::make_dict(std::vector<std::pair<Value, Value>> items) {
  heap_items_ += items.size() + 1;
  if (heap_items_ > limits_.max_heap_items) fail("jinja: template creates too many values");
  charge(items.size());
  auto d = std::make_unique<Dict>();
  d->items = std::move(items);
  dicts_.push_back(std::move(d));
  return Value::dict(dicts_.back().get());
}

Value Interp::make_namespace() {
  Value d = make_dict();
  return Value::ns(&d.dict());
}

Value Interp::make_function(std::string name, std::function<Value(CallArgs&)> fn) {
  if (++heap_items_ > limits_.max_heap_items) fail("jinja: template creates too many values");
  auto f = std::make_unique<Function>();
  f->name = std::move(name);
  f->call = std::move(fn);
  functions_.push_back(std::move(f));
  return Value::function(functions_.back().get());
}

Value Interp::make_string(std::string s) {
  if (s.size() > limits_.max_output) fail("jinja: string longer than ", limits_.max_output, " bytes");
  charge(s.size());
  return Value::string(std::move(s));
}

Value Interp::from_json(const nlohmann::ordered_json& j, int depth) {
  if (depth > kMaxDepth) fail("jinja: context nested deeper than ", kMaxDepth, " levels");
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return Value::none();
    case nlohmann::ordered_json::value_t::boolean: return Value::boolean(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Value::integer(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      return u <= (uint64_t)INT64_MAX ? Value::integer((int64_t)u) : Value::number((double)u);
    }
    case nlohmann::ordered_json::value_t::number_float: return Value::number(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value::string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& x : j) items.push_back(from_json(x, depth + 1));
      return make_list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      std::vector<std::pair<Value, Value>> items;
      items.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it)
        items.emplace_back(Value::string(it.key()), from_json(it.value(), depth + 1));
      return make_dict(std::move(items));
    }
    default: fail("jinja: unsupported JSON value in context");
  }
}

// ---- render ----

std::string Interp::render(const Body& root, const nlohmann::ordered_json& context) {
  auto globals = std::make_shared<Frame>();
  add_globals(*globals);
  if (!context.is_null() && !context.is_object()) fail("jinja: render context must be a JSON object");
  if (context.is_object())
    for (auto it = context.begin(); it != context.end(); ++it) globals->vars[it.key()] = from_json(it.value());
  scope_ = globals;
  std::string out;
  try {
    exec(root, out);
  } catch (const Error& e) {
    std::string msg = e.what();
    if (msg.rfind("jinja: ", 0) == 0) msg = msg.substr(7);
    if (msg.rfind("line ", 0) == 0) throw Error("jinja: " + msg);
    throw Error(str_cat("jinja: line ", line_, ": ", msg));
  }
  return out;
}

void Interp::append(std::string& out, std::string_view s) {
  if (out.size() + s.size() > limits_.max_output) fail("output larger than ", limits_.max_output, " bytes");
  out += s;
}

Interp::Flow Interp::exec(const Body& body, std::string& out) {
  DepthGuard g(this);
  for (const auto& sp : body) {
    const Stmt& s = *sp;
    line_ = s.line;
    switch (s.kind) {
      case StmtKind::Text: append(out, s.text); break;
      case StmtKind::Output: {
        Value v = eval(*s.expr);
        if (v.is_string()) append(out, v.str());
        else append(out, to_str(v));
        break;
      }
      case StmtKind::If:
        for (const auto& br : s.branches) {
          if (!br.first || eval(*br.first).truthy()) {
            Flow f = exec(br.second, out);
            if (f != Flow::Normal) return f;
            break;
          }
        }
        break;
      case StmtKind::For: exec_for(s, out); break;
      case StmtKind::Set: exec_set(s, eval(*s.expr)); break;
      case StmtKind::SetBlock:
      case StmtKind::FilterBlock: {
        std::string inner;
        Flow f = exec(s.body, inner);
        Value saved = block_value_;
        block_value_ = make_string(std::move(inner));
        Value v = eval(*s.expr);
        block_value_ = saved;
        if (s.kind == StmtKind::SetBlock) exec_set(s, v);
        else append(out, to_str(v));
        if (f != Flow::Normal) return f;
        break;
      }
      case StmtKind::Macro: {
        const Stmt* m = &s;
        std::shared_ptr<Frame> closure = scope_;
        scope_->vars[s.text] =
            make_function(s.text, [this, m, closure](CallArgs& a) { return call_macro(*m, closure, a); });
        break;
      }
      case StmtKind::Break: return Flow::Break;
      case StmtKind::Continue: return Flow::Continue;
    }
  }
  return Flow::Normal;
}

void Interp::exec_set(const Stmt& s, Value v) {
  if (!s.text.empty()) {
    Value target = lookup(s.targets[0]);
    if (!target.is_namespace()) fail("cannot assign attribute on non-namespace object");
    target.dict().set(Value::string(s.text), std::move(v));
    return;
  }
  if (s.targets.size() == 1) {
    scope_->vars[s.targets[0]] = std::move(v);
    return;
  }
  std::vector<Value> items = iterate(v);
  if (items.size() != s.targets.size())
    fail(items.size() < s.targets.size() ? "not enough" : "too many", " values to unpack (expected ",
         s.targets.size(), ", got ", items.size(), ")");
  for (size_t i = 0; i < items.size(); ++i) scope_->vars[s.targets[i]] = items[i];
}

Interp::Flow Interp::exec_for(const Stmt& s, std::string& out) {
  Value iterable = eval(*s.expr);
  std::vector<Value> items = iterate(iterable);
  auto frame = std::make_shared<Frame>();
  frame->parent = scope_;
  auto saved = scope_;
  scope_ = frame;
  auto bind = [&](const Value& item) {
    frame->vars.clear();
    if (s.targets.size() == 1) {
      frame->vars[s.targets[0]] = item;
      return;
    }
    std::vector<Value> parts = iterate(item);
    if (parts.size() != s.targets.size())
      fail(parts.size() < s.targets.size() ? "not enough" : "too many", " values to unpack (expected ",
           s.targets.size(), ", got ", parts.size(), ")");
    for (size_t i = 0; i < parts.size(); ++i) frame->vars[s.targets[i]] = parts[i];
  };
  try {
    if (s.cond) {
      std::vector<Value> kept;
      for (auto& item : items) {
        if (++iterations_ > limits_.max_loop_iterations) fail("more than ", limits_.max_loop_iterations, " loop iterations");
        bind(item);
        if (eval(*s.cond).truthy()) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    Value list = make_list(std::move(items));
    loops_.push_back(std::make_unique<LoopState>());
    LoopState* st = loops_.back().get();
    st->items = &list.list();
    Value loop_value = Value::loop(st);
    const size_t n = st->items->items.size();
    for (size_t i = 0; i < n; ++i) {
      if (++iterations_ > limits_.max_loop_iterations) fail("more than ", limits_.max_loop_iterations, " loop iterations");
      charge(1);
      st->index0 = (int64_t)i;
      bind(st->items->items[i]);
      frame->vars["loop"] = loop_value;
      Flow f = exec(s.body, out);
      if (f == Flow::Break) break;
    }
    if (n == 0 && !s.else_body.empty()) {
      frame->vars.clear();
      scope_ = saved;
      exec(s.else_body, out);
    }
  } catch (...) {
    scope_ = saved;
    throw;
  }
  scope_ = saved;
  return Flow::Normal;
}

Value Interp::call_macro(const Stmt& m, const std::shared_ptr<Frame>& closure, CallArgs& args) {
  DepthGuard g(this);
  if (args.pos.size() > m.params.size())
    fail("macro '", m.text, "' takes not more than ", m.params.size(), " argument(s)");
  auto frame = std::make_shared<Frame>();
  frame->parent = closure;
  for (const auto& kv : args.kw) {
    bool known = false;
    for (size_t i = 0; i < m.params.size(); ++i)
      if (m.params[i].first == kv.first) {
        if (i < args.pos.size()) fail("macro '", m.text, "' got multiple values for argument '", kv.first, "'");
        known = true;
      }
    if (!known) fail("macro '", m.text, "' takes no keyword argument '", kv.first, "'");
  }
  auto saved = scope_;
  int saved_line = line_;
  scope_ = frame;
  std::string out;
  try {
    for (size_t i = 0; i < m.params.size(); ++i) {
      const auto& p = m.params[i];
      Value v = Value::undefined("'" + p.first + "' is undefined");
      bool set = false;
      if (i < args.pos.size()) {
        v = args.pos[i];
        set = true;
      }
      for (const auto& kv : args.kw)
        if (kv.first == p.first) {
          v = kv.second;
          set = true;
        }
      if (!set && p.second) v = eval(*p.second);
      frame->vars[p.first] = v;
    }
    exec(m.body, out);
  } catch (...) {
    scope_ = saved;
    throw;
  }
  scope_ = saved;
  line_ = saved_line;
  return make_string(std::move(out));
}

// ---- expressions ----

Value Interp::lookup(const std::string& name) const {
  for (const Frame* f = scope_.get(); f; f = f->parent.get()) {
    auto it = f->vars.find(name);
    if (it != f->vars.end()) return it->second;
  }
  return Value::undefined("'" + name + "' is undefined");
}

void Interp::undefined_error(const Value& u) const {
  fail(u.str().empty() ? std::string("value is undefined") : u.str());
}

void Interp::eval_args(const Expr& e, size_t first, CallArgs& out) {
  for (size_t i = first; i < e.args.size(); ++i) out.pos.push_back(eval(*e.args[i]));
  for (const auto& kv : e.kwargs) out.kw.emplace_back(kv.first, eval(*kv.second));
}

Value Interp::eval(const Expr& e) {
  DepthGuard g(this);
  switch (e.kind) {
    case ExprKind::Literal: return e.literal;
    case ExprKind::Name: return lookup(e.name);
    case ExprKind::BlockValue: return block_value_;
    case ExprKind::List:
    case ExprKind::Tuple: {
      std::vector<Value> items;
      items.reserve(e.args.size());
      for (const auto& a : e.args) items.push_back(eval(*a));
      return make_list(std::move(items), e.kind == ExprKind::Tuple);
    }
    case ExprKind::Dict: {
      Value d = make_dict();
      for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
        Value k = eval(*e.args[i]);
        if (k.is_list() && !k.list().tuple) fail("unhashable type: 'list'");
        if (k.is_dict()) fail("unhashable type: 'dict'");
        d.dict().set(k, eval(*e.args[i + 1]));
      }
      return d;
    }
    case ExprKind::Attr: return getattr(eval(*e.args[0]), e.name);
    case ExprKind::Item: return getitem(eval(*e.args[0]), eval(*e.args[1]));
    case ExprKind::Slice: return eval_slice(e);
    case ExprKind::Call: return eval_call(e);
    case ExprKind::Filter: {
      Value v = eval(*e.args[0]);
      CallArgs a;
      eval_args(e, 1, a);
      return filter(e.name, v, a);
    }
    case ExprKind::Test: {
      Value v = eval(*e.args[0]);
      CallArgs a;
      eval_args(e, 1, a);
      return Value::boolean(test(e.name, v, a) != e.negated);
    }
    case ExprKind::Neg:
    case ExprKind::Pos: {
      Value v = eval(*e.args[0]);
      if (v.is_undefined()) undefined_error(v);
      if (!v.is_numeric()) fail("bad operand type for unary ", e.kind == ExprKind::Neg ? "-" : "+", ": '", v.type_name(), "'");
      if (e.kind == ExprKind::Pos) return v.is_float() ? v : Value::integer(v.as_int());
      if (v.is_float()) return Value::number(-v.as_double());
      if (v.as_int() == INT64_MIN) fail("integer overflow");
      return Value::integer(-v.as_int());
    }
    case ExprKind::Not: return Value::boolean(!eval(*e.args[0]).truthy());
    case ExprKind::And: {
      Value a = eval(*e.args[0]);
      return a.truthy() ? eval(*e.args[1]) : a;
    }
    case ExprKind::Or: {
      Value a = eval(*e.args[0]);
      return a.truthy() ? a : eval(*e.args[1]);
    }
    case ExprKind::Cond:
      if (eval(*e.args[0]).truthy()) return eval(*e.args[1]);
      return e.args[2] ? eval(*e.args[2]) : Value::undefined("the inline if-expression evaluated to false and no else section was defined");
    case ExprKind::Compare: return eval_compare(e);
    case ExprKind::Binary: {
      Value a = eval(*e.args[0]);
      Value b = eval(*e.args[1]);
      return binary(e.name, a, b);
    }
  }
  fail("unknown expression");
}

Value Interp::eval_call(const Expr& e) {
  const Expr& callee = *e.args[0];
  if (callee.kind == ExprKind::Attr) {
    // obj.method(...) without materializing a bound method.
    Value self = eval(*callee.args[0]);
    if (self.is_undefined()) undefined_error(self);
    if ((self.is_string() || self.is_dict() || self.is_list()) && has_method(self, callee.name)) {
      CallArgs a;
      eval_args(e, 1, a);
      Value out;
      if (call_method(self, callee.name, a, &out)) return out;
    }
    Value f = getattr(self, callee.name);
    CallArgs a;
    eval_args(e, 1, a);
    return call(f, a);
  }
  Value f = eval(callee);
  CallArgs a;
  eval_args(e, 1, a);
  return call(f, a);
}

Value Interp::call(const Value& callee, CallArgs& args) {
  if (callee.is_function()) return callee.fn().call(args);
  if (callee.is_undefined()) undefined_error(callee);
  fail("'", callee.type_name(), "' object is not callable");
}

Value Interp::eval_compare(const Expr& e) {
  Value left = eval(*e.args[0]);
  for (size_t i = 0; i < e.ops.size(); ++i) {
    Value right = eval(*e.args[i + 1]);
    const std::string& op = e.ops[i];
    bool r;
    if (op == "==") r = equals(left, right);
    else if (op == "!=") r = !equals(left, right);
    else if (op == "in") r = contains(right, left);
    else if (op == "notin") r = !contains(right, left);
    else {
      if (left.is_undefined()) undefined_error(left);
      if (right.is_undefined()) undefined_error(right);
      int c = compare(left, right);
      r = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
    }
    if (!r) return Value::boolean(false);
    left = std::move(right);
  }
  return Value::boolean(true);
}

// Python's slice.indices().
static void slice_indices(int64_t len, const Value& start, const Value& stop, const Value& step, int64_t* s0,
                          int64_t* s1, int64_t* st) {
  auto as_index = [](const Value& v, const char* what) -> int64_t {
    if (!v.is_integral()) fail("slice ", what, " must be an integer or None, not ", v.type_name());
    return v.as_int();
  };
  int64_t k = (step.is_none() || step.is_undefined()) ? 1 : as_index(step, "step");
  if (k == 0) fail("slice step cannot be zero");
  int64_t lo, hi;
  if (k > 0) {
    lo = 0;
    hi = len;
  } else {
    lo = -1;
    hi = len - 1;
  }
  auto clamp = [&](const Value& v, int64_t def) -> int64_t {
    if (v.is_none() || v.is_undefined()) return def;
    int64_t x = as_index(v, "index");
    if (x < 0) {
      x += len;
      if (x < lo) x = lo;
    } else if (x > hi) {
      x = hi;
    }
    return x;
  };
  *s0 = clamp(start, k > 0 ? lo : hi);
  *s1 = clamp(stop, k > 0 ? hi : lo);
  *st = k;
}

Value Interp::eval_slice(const Expr& e) {
  Value obj = eval(*e.args[0]);
  Value none = Value::none();
  Value a = e.args[1] ? eval(*e.args[1]) : none;
  Value b = e.args[2] ? eval(*e.args[2]) : none;
  Value c = e.args[3] ? eval(*e.args[3]) : none;
  if (obj.is_undefined()) undefined_error(obj);
  if (obj.is_list()) {
    const auto& items = obj.list().items;
    int64_t s0, s1, st;
    slice_indices((int64_t)items.size(), a, b, c, &s0, &s1, &st);
    std::vector<Value> out;
    for (int64_t i = s0; st > 0 ? i < s1 : i > s1; i += st) out.push_back(items[(size_t)i]);
    return make_list(std::move(out), obj.list().tuple);
  }
  if (obj.is_string()) {
    const std::string& s = obj.str();
    std::vector<size_t> off = utf8_offsets(s);
    int64_t s0, s1, st;
    slice_indices((int64_t)off.size() - 1, a, b, c, &s0, &s1, &st);
    std::string out;
    for (int64_t i = s0; st > 0 ? i < s1 : i > s1; i += st) out.append(s, off[i], off[i + 1] - off[i]);
    return make_string(std::move(out));
  }
  return Value::undefined("'" + std::string(obj.type_name()) + " object' is not subscriptable");
}

Value Interp::getattr(const Value& obj, const std::string& name) {
  switch (obj.kind()) {
    case Value::Kind::Undefined: undefined_error(obj);
    case Value::Kind::Dict: {
      if (has_method(obj, name)) {
        Value self = obj;
        return make_function(name, [this, self, name](CallArgs& a) {
          Value out;
          call_method(self, name, a, &out);
          return out;
        });
      }
      if (const Value* v = obj.dict().find(name)) return *v;
      break;
    }
    case Value::Kind::Namespace:
      if (const Value* v = obj.dict().find(name)) return *v;
      break;
    case Value::Kind::String:
    case Value::Kind::List:
      if (has_method(obj, name)) {
        Value self = obj;
        return make_function(name, [this, self, name](CallArgs& a) {
          Value out;
          call_method(self, name, a, &out);
          return out;
        });
      }
      break;
    case Value::Kind::Loop: {
      const LoopState& st = obj.loop_state();
      const int64_t n = (int64_t)st.items->items.size();
      const int64_t i = st.index0;
      if (name == "index") return Value::integer(i + 1);
      if (name == "index0") return Value::integer(i);
      if (name == "revindex") return Value::integer(n - i);
      if (name == "revindex0") return Value::integer(n - i - 1);
      if (name == "first") return Value::boolean(i == 0);
      if (name == "last") return Value::boolean(i == n - 1);
      if (name == "length") return Value::integer(n);
      if (name == "depth") return Value::integer(1);
      if (name == "depth0") return Value::integer(0);
      if (name == "previtem") {
        if (i > 0) return st.items->items[(size_t)i - 1];
        return Value::undefined("there is no previous item");
      }
      if (name == "nextitem") {
        if (i + 1 < n) return st.items->items[(size_t)i + 1];
        return Value::undefined("there is no next item");
      }
      if (name == "cycle") {
        const LoopState* sp = &st;
        return make_function("cycle", [sp](CallArgs& a) -> Value {
          if (a.pos.empty()) fail("no items for cycling given");
          return a.pos[(size_t)(sp->index0 % (int64_t)a.pos.size())];
        });
      }
      break;
    }
    default: break;
  }
  return Value::undefined("'" + std::string(obj.type_name()) + " object' has no attribute '" + name + "'");
}

Value Interp::getitem(const Value& obj, const Value& key) {
  if (obj.is_undefined()) undefined_error(obj);
  if (obj.is_dict()) {
    if (const Value* v = obj.dict().find(key)) return *v;
    if (key.is_string() && has_method(obj, key.str())) return getattr(obj, key.str());
    return Value::undefined("'dict object' has no attribute " + repr(key));
  }
  if ((obj.is_list() || obj.is_string()) && key.is_integral()) {
    int64_t i = key.as_int();
    if (obj.is_list()) {
      const auto& items = obj.list().items;
      int64_t n = (int64_t)items.size();
      if (i < 0) i += n;
      if (i >= 0 && i < n) return items[(size_t)i];
      return Value::undefined(std::string("'") + obj.type_name() + " object' has no element " + std::to_string(key.as_int()));
    }
    std::vector<size_t> off = utf8_offsets(obj.str());
    int64_t n = (int64_t)off.size() - 1;
    if (i < 0) i += n;
    if (i >= 0 && i < n) return Value::string(obj.str().substr(off[i], off[i + 1] - off[i]));
    return Value::undefined("'str object' has no element " + std::to_string(key.as_int()));
  }
  if (key.is_string()) return getattr(obj, key.str());
  return Value::undefined(std::string("'") + obj.type_name() + " object' has no element " + repr(key));
}

std::vector<Value> Interp::iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Undefined: return {};
    case Value::Kind::List:
      charge(v.list().items.size());
      return v.list().items;
    case Value::Kind::Dict: {
      std::vector<Value> keys;
      for (const auto& kv : v.dict().items) keys.push_back(kv.first);
      charge(keys.size());
      return keys;
    }
    case Value::Kind::String: {
      std::vector<Value> chars;
      const std::string& s = v.str();
      for (size_t i = 0; i < s.size();) {
        size_t n = utf8_next(s, i);
        chars.push_back(Value::string(s.substr(i, n - i)));
        i = n;
      }
      charge(s.size());
      return chars;
    }
    default: fail("'", v.type_name(), "' object is not iterable");
  }
}

bool Interp::contains(const Value& c, const Value& item) {
  switch (c.kind()) {
    case Value::Kind::Undefined: return false;
    case Value::Kind::String:
      if (!item.is_string()) fail("'in <string>' requires string as left operand, not ", item.type_name());
      return c.str().find(item.str()) != std::string::npos;
    case Value::Kind::List:
      for (const auto& x : c.list().items)
        if (equals(x, item)) return true;
      return false;
    case Value::Kind::Dict: return c.dict().find(item) != nullptr;
    default: fail("argument of type '", c.type_name(), "' is not iterable");
  }
}

// Python ints are unbounded; ours are int64 and overflow is an Error.
template <typename Op>
static int64_t checked(Op op, int64_t a, int64_t b) {
  int64_t r;
  if (op(a, b, &r)) fail("integer overflow");
  return r;
}
static bool add_ovf(int64_t a, int64_t b, int64_t* r) { return __builtin_add_overflow(a, b, r); }
static bool sub_ovf(int64_t a, int64_t b, int64_t* r) { return __builtin_sub_overflow(a, b, r); }
static bool mul_ovf(int64_t a, int64_t b, int64_t* r) { return __builtin_mul_overflow(a, b, r); }

Value Interp::binary(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") {
    std::string s = to_str(a);
    std::string t = to_str(b);
    if (s.size() + t.size() > limits_.max_output) fail("string longer than ", limits_.max_output, " bytes");
    return make_string(s + t);
  }
  if (a.is_undefined()) undefined_error(a);
  if (b.is_undefined()) undefined_error(b);
  auto type_error = [&]() -> Value {
    fail("unsupported operand type(s) for ", op, ": '", a.type_name(), "' and '", b.type_name(), "'");
  };
  const bool num = a.is_numeric() && b.is_numeric();
  const bool ints = a.is_integral() && b.is_integral();
  if (op == "+") {
    if (ints) return Value::integer(checked(add_ovf, a.as_int(), b.as_int()));
    if (num) return Value::number(a.as_double() + b.as_double());
    if (a.is_string() && b.is_string()) {
      if (a.str().size() + b.str().size() > limits_.max_output) fail("string longer than ", limits_.max_output, " bytes");
      return make_string(a.str() + b.str());
    }
    if (a.is_list() && b.is_list() && a.list().tuple == b.list().tuple) {
      std::vector<Value> items = a.list().items;
      items.insert(items.end(), b.list().items.begin(), b.list().items.end());
      return make_list(std::move(items), a.list().tuple);
    }
    return type_error();
  }
  if (op == "-") {
    if (ints) return Value::integer(checked(sub_ovf, a.as_int(), b.as_int()));
    if (num) return Value::number(a.as_double() - b.as_double());
    return type_error();
  }
  if (op == "*") {
    if (ints) return Value::integer(checked(mul_ovf, a.as_int(), b.as_int()));
    if (num) return Value::number(a.as_double() * b.as_double());
    const Value* seq = a.is_integral() ? &b : &a;
    const Value* count = a.is_integral() ? &a : &b;
    if (!count->is_integral()) return type_error();
    int64_t n = std::max<int64_t>(0, count->as_int());
    if (seq->is_string()) {
      const std::string& s = seq->str();
      if (!s.empty() && (uint64_t)n > limits_.max_output / s.size()) fail("string longer than ", limits_.max_output, " bytes");
      std::string out;
      for (int64_t i = 0; i < n; ++i) out += s;
      return make_string(std::move(out));
    }
    if (seq->is_list()) {
      const auto& items = seq->list().items;
      if (!items.empty() && (uint64_t)n > limits_.max_heap_items / items.size()) fail("template creates too many values");
      std::vector<Value> out;
      for (int64_t i = 0; i < n; ++i) out.insert(out.end(), items.begin(), items.end());
      return make_list(std::move(out), seq->list().tuple);
    }
    return type_error();
  }
  if (op == "/") {
    if (!num) return type_error();
    if (b.as_double() == 0) fail("division by zero");
    return Value::number(a.as_double() / b.as_double());
  }
  if (op == "//" || op == "%") {
    if (op == "%" && a.is_string()) {
      CallArgs args;
      if (b.is_list() && b.list().tuple) args.pos = b.list().items;
      else args.pos.push_back(b);
      return filter("format", a, args);
    }
    if (!num) return type_error();
    if (ints) {
      int64_t x = a.as_int(), y = b.as_int();
      if (y == 0) fail("integer division or modulo by zero");
      if (x == INT64_MIN && y == -1) fail("integer overflow");
      int64_t q = x / y, r = x % y;
      if (r != 0 && ((r < 0) != (y < 0))) {
        q -= 1;
        r += y;
      }
      return Value::integer(op == "//" ? q : r);
    }
    double x = a.as_double(), y = b.as_double();
    if (y == 0) fail("float division by zero");
    if (op == "//") return Value::number(std::floor(x / y));
    double r = std::fmod(x, y);
    if (r != 0 && ((r < 0) != (y < 0))) r += y;
    return Value::number(r);
  }
  if (op == "**") {
    if (!num) return type_error();
    if (ints && b.as_int() >= 0) {
      int64_t base = a.as_int(), e = b.as_int(), r = 1;
      while (e > 0) {
        if (e & 1) r = checked(mul_ovf, r, base);
        e >>= 1;
        if (e > 0) base = checked(mul_ovf, base, base);
      }
      return Value::integer(r);
    }
    if (a.as_double() == 0 && b.as_double() < 0) fail("0.0 cannot be raised to a negative power");
    return Value::number(std::pow(a.as_double(), b.as_double()));
  }
  fail("unknown operator ", op);
}

}  // namespace edgevl::text::jinja
