// The interpreter of one render (internal to src/text/jinja). It owns every container created
// while rendering, the variable scopes and the limits that keep hostile templates bounded.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/jinja/ast.h"
#include "text/jinja/template.h"

namespace edgevl::text::jinja {

struct Frame {
  std::unordered_map<std::string, Value> vars;
  std::shared_ptr<Frame> parent;
};

class Interp {
 public:
  explicit Interp(const RenderLimits& limits) : limits_(limits) {}
  std::string render(const Body& root, const nlohmann::ordered_json& context);

  // ---- heap (lives until the render ends) ----
  Value make_list(std::vector<Value> items, bool tuple = false);
  Value make_dict(std::vector<std::pair<Value, Value>> items = {});
  Value make_namespace();
  Value make_function(std::string name, std::function<Value(CallArgs&)> fn);
  Value make_string(std::string s);  // checks the size limit
  Value from_json(const nlohmann::ordered_json& j, int depth = 0);
  void charge(size_t work);

  // ---- Python / Jinja2 semantics shared with the builtins ----
  [[noreturn]] void undefined_error(const Value& u) const;
  Value getattr(const Value& obj, const std::string& name);
  Value getitem(const Value& obj, const Value& key);
  Value call(const Value& callee, CallArgs& args);
  std::vector<Value> iterate(const Value& v);
  bool contains(const Value& container, const Value& item);
  Value binary(const std::string& op, const Value& a, const Value& b);

  // builtins.cpp
  Value filter(const std::string& name, const Value& v, CallArgs& args);
  bool test(const std::string& name, const Value& v, CallArgs& args);
  // A method of str / dict / list called directly; false when `name` is not one.
  bool call_method(const Value& self, const std::string& name, CallArgs& args, Value* out);
  bool has_method(const Value& self, const std::string& name) const;
  void add_globals(Frame& f);

 private:
  enum class Flow { Normal, Break, Continue };
  struct DepthGuard {
    explicit DepthGuard(Interp* in) : in(in) {
      if (++in->depth_ > in->limits_.max_depth) fail("jinja: recursion deeper than ", in->limits_.max_depth, " levels");
    }
    ~DepthGuard() { --in->depth_; }
    Interp* in;
  };

  Value eval(const Expr& e);
  Value eval_call(const Expr& e);
  Value eval_compare(const Expr& e);
  Value eval_slice(const Expr& e);
  void eval_args(const Expr& e, size_t first, CallArgs& out);
  Value lookup(const std::string& name) const;

  Flow exec(const Body& body, std::string& out);
  Flow exec_for(const Stmt& s, std::string& out);
  void exec_set(const Stmt& s, Value v);
  void append(std::string& out, std::string_view s);
  Value call_macro(const Stmt& m, const std::shared_ptr<Frame>& closure, CallArgs& args);

  RenderLimits limits_;
  std::vector<std::unique_ptr<List>> lists_;
  std::vector<std::unique_ptr<Dict>> dicts_;
  std::vector<std::unique_ptr<Function>> functions_;
  std::vector<std::unique_ptr<LoopState>> loops_;
  std::shared_ptr<Frame> scope_;
  Value block_value_;
  size_t heap_items_ = 0;
  uint64_t work_ = 0;
  int64_t iterations_ = 0;
  int depth_ = 0;
  int line_ = 0;
};

}  // namespace edgevl::text::jinja
