// Values of the chat-template language: Python's view of JSON (None, bool, int, float, str, list,
// tuple, dict in insertion order) plus Jinja2's Undefined, namespaces, callables and the `loop`
// object. Containers live in the interpreter's heap for one render (see interp.h) and Values point
// at them, so aliasing behaves like Python references and cycles through namespaces cannot leak
// or overflow the stack on destruction.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace edgevl::text::jinja {

struct List;
struct Dict;
struct Function;
struct LoopState;

class Value {
 public:
  enum class Kind : uint8_t { Undefined, None, Bool, Int, Float, String, List, Dict, Namespace, Function, Loop };

  Value() = default;  // Undefined
  static Value undefined(std::string name = {}) {
    Value v;
    v.s_ = std::move(name);
    return v;
  }
  static Value none() { return make(Kind::None); }
  static Value boolean(bool b) {
    Value v = make(Kind::Bool);
    v.b_ = b;
    return v;
  }
  static Value integer(int64_t i) {
    Value v = make(Kind::Int);
    v.i_ = i;
    return v;
  }
  static Value number(double f) {
    Value v = make(Kind::Float);
    v.f_ = f;
    return v;
  }
  static Value string(std::string s) {
    Value v = make(Kind::String);
    v.s_ = std::move(s);
    return v;
  }
  static Value list(List* l) {
    Value v = make(Kind::List);
    v.l_ = l;
    return v;
  }
  static Value dict(Dict* d) {
    Value v = make(Kind::Dict);
    v.d_ = d;
    return v;
  }
  static Value ns(Dict* d) {
    Value v = make(Kind::Namespace);
    v.d_ = d;
    return v;
  }
  static Value function(Function* f) {
    Value v = make(Kind::Function);
    v.fn_ = f;
    return v;
  }
  static Value loop(LoopState* l) {
    Value v = make(Kind::Loop);
    v.loop_ = l;
    return v;
  }

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_bool() const { return kind_ == Kind::Bool; }
  bool is_int() const { return kind_ == Kind::Int; }
  bool is_float() const { return kind_ == Kind::Float; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_list() const { return kind_ == Kind::List; }
  bool is_dict() const { return kind_ == Kind::Dict; }
  bool is_namespace() const { return kind_ == Kind::Namespace; }
  bool is_function() const { return kind_ == Kind::Function; }
  bool is_loop() const { return kind_ == Kind::Loop; }
  // Python numbers: bool is an int subclass.
  bool is_numeric() const { return kind_ == Kind::Bool || kind_ == Kind::Int || kind_ == Kind::Float; }
  bool is_integral() const { return kind_ == Kind::Bool || kind_ == Kind::Int; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return kind_ == Kind::Bool ? (b_ ? 1 : 0) : i_; }  // bool or int
  double as_double() const { return kind_ == Kind::Float ? f_ : (double)as_int(); }  // numeric
  const std::string& str() const { return s_; }  // string; for Undefined, the name it stands for
  List& list() const { return *l_; }
  Dict& dict() const { return *d_; }  // dict or namespace
  Function& fn() const { return *fn_; }
  LoopState& loop_state() const { return *loop_; }

  // Python truthiness (Undefined is false).
  bool truthy() const;
  // Python type name, for error messages.
  const char* type_name() const;

 private:
  static Value make(Kind k) {
    Value v;
    v.kind_ = k;
    return v;
  }
  Kind kind_ = Kind::Undefined;
  union {
    bool b_;
    int64_t i_ = 0;
    double f_;
    List* l_;
    Dict* d_;
    Function* fn_;
    LoopState* loop_;
  };
  std::string s_;
};

struct List {
  std::vector<Value> items;
  bool tuple = false;
};

struct Dict {
  std::vector<std::pair<Value, Value>> items;  // insertion order, keys unique
  const Value* find(const Value& key) const;
  const Value* find(std::string_view key) const;
  void set(const Value& key, Value value);
};

struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
};

struct Function {
  std::string name;
  std::function<Value(CallArgs&)> call;
};

struct LoopState {
  List* items = nullptr;
  int64_t index0 = 0;
  Function* cycle = nullptr;
};

// Python semantics, with recursion bounded (deeper than kMaxDepth fails with edgevl::Error).
constexpr int kMaxDepth = 256;
bool equals(const Value& a, const Value& b, int depth = 0);
// <0, 0, >0; TypeError-like edgevl::Error for unorderable pairs (as Python 3).
int compare(const Value& a, const Value& b, int depth = 0);
std::string to_str(const Value& v);   // str(v); Undefined -> ""
std::string repr(const Value& v);     // repr(v)
std::string py_float_repr(double d);  // repr(float)

struct JsonOptions {
  int indent = -1;  // < 0: one line
  std::string indent_str;  // used when non-empty instead of `indent` spaces
  bool sort_keys = false;
  bool ensure_ascii = false;  // transformers' tojson default: keep non-ASCII as is
  std::string item_sep, key_sep;  // empty: Python's defaults for the indent mode
};
// json.dumps(v) as transformers' `tojson` filter calls it.
std::string to_json(const Value& v, const JsonOptions& opt);

// UTF-8 helpers working on code points (Python's string model). Invalid bytes count as one
// character each and are kept as they are.
size_t utf8_next(std::string_view s, size_t pos, uint32_t* cp = nullptr);
std::vector<size_t> utf8_offsets(std::string_view s);  // char starts, plus s.size() at the end
size_t utf8_length(std::string_view s);
bool py_isspace(uint32_t cp);
uint32_t cp_lower(uint32_t cp);
uint32_t cp_upper(uint32_t cp);
std::string str_upper(std::string_view s);
std::string str_lower(std::string_view s);
std::string str_capitalize(std::string_view s);
std::string str_title(std::string_view s);  // Python str.title()

}  // namespace edgevl::text::jinja
