#include "trainers/rewards.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include "core/error.h"
#include "core/mmap.h"
#include "text/json_schema.h"
#include "text/pretokenizer.h"

namespace edgevl::train {

namespace {

using Json = nlohmann::ordered_json;

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t\r\n") - a + 1);
}

std::string field_text(const Json& row, const std::string& field) {
  EV_CHECK(row.contains(field), "reward: the row has no \"", field, "\" field");
  const Json& v = row[field];
  return v.is_string() ? v.get<std::string>() : v.dump();
}

// The completion as JSON: trimmed, a ```json ... ``` fence removed; discarded when not JSON.
nlohmann::json completion_json(const std::string& completion) {
  std::string s = trim(completion);
  if (s.rfind("```", 0) == 0) {
    const size_t nl = s.find('\n'), end = s.rfind("```");
    if (nl != std::string::npos && end > nl) s = s.substr(nl + 1, end - nl - 1);
  }
  return nlohmann::json::parse(s, nullptr, false);
}

class Exact final : public Reward {
 public:
  Exact(std::string field, bool contains) : field_(std::move(field)), contains_(contains) {}
  double score(const Json& row, const std::string& c) const override {
    const std::string want = trim(field_text(row, field_));
    return contains_ ? c.find(want) != std::string::npos : trim(c) == want;
  }

 private:
  std::string field_;
  bool contains_;
};

class Regex final : public Reward {
 public:
  explicit Regex(const std::string& p) try : re_(p) {
  } catch (const Error& e) {
    fail("reward: bad regex '", p, "' (", e.what(), ")");
  }
  double score(const Json&, const std::string& c) const override { return re_.search(c); }

 private:
  text::RegexMatcher re_;
};

class JsonValid final : public Reward {
 public:
  explicit JsonValid(std::string schema_file) {
    if (schema_file.empty()) return;
    schema_ = nlohmann::json::parse(read_text_file(schema_file), nullptr, false);
    EV_CHECK(!schema_.is_discarded(), schema_file, ": not JSON");
    has_schema_ = true;
  }
  double score(const Json&, const std::string& c) const override {
    const nlohmann::json v = completion_json(c);
    if (v.is_discarded()) return 0;
    return !has_schema_ || text::json_schema_violation(schema_, v).empty();
  }

 private:
  nlohmann::json schema_;
  bool has_schema_ = false;
};

class Length final : public Reward {
 public:
  explicit Length(double n) : n_(n) { EV_CHECK(n > 0, "reward: length:N needs N > 0"); }
  double score(const Json&, const std::string& c) const override { return -std::abs((double)c.size() - n_) / n_; }

 private:
  double n_;
};

class Command final : public Reward {
 public:
  explicit Command(std::string cmd) : cmd_(std::move(cmd)) { EV_CHECK(!cmd_.empty(), "reward: cmd: needs a command"); }
  double score(const Json& row, const std::string& c) const override {
    char path[] = "/tmp/edgevl-reward-XXXXXX";
    const int fd = mkstemp(path);
    EV_CHECK(fd >= 0, "reward: cannot create a temporary file");
    const std::string in = Json{{"prompt_row", row}, {"completion", c}}.dump();
    const bool wrote = write(fd, in.data(), in.size()) == (ssize_t)in.size();
    close(fd);
    std::string out;
    int status = -1;
    if (wrote) {
      FILE* p = popen(("(" + cmd_ + ") < '" + path + "'").c_str(), "r");
      if (p) {
        char buf[256];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, p)) > 0 && out.size() < 4096) out.append(buf, n);
        status = pclose(p);
      }
    }
    unlink(path);
    EV_CHECK(wrote && status == 0, "reward: command '", cmd_, "' failed (exit status ", status, ")");
    char* end = nullptr;
    const std::string t = trim(out);
    const double v = std::strtod(t.c_str(), &end);
    EV_CHECK(!t.empty() && end == t.c_str() + t.size() && std::isfinite(v), "reward: command '", cmd_,
             "' printed '", t.substr(0, 80), "', not a number");
    return v;
  }

 private:
  std::string cmd_;
};

}  // namespace

std::unique_ptr<Reward> make_reward(const std::string& spec) {
  const size_t colon = spec.find(':');
  const std::string kind = spec.substr(0, colon), arg = colon == std::string::npos ? "" : spec.substr(colon + 1);
  if (kind == "exact" || kind == "contains") return std::make_unique<Exact>(arg.empty() ? "answer" : arg, kind == "contains");
  if (kind == "regex") return std::make_unique<Regex>(arg);
  if (kind == "json") return std::make_unique<JsonValid>("");
  if (kind == "json-schema") {
    EV_CHECK(!arg.empty(), "reward: json-schema:FILE needs a file");
    return std::make_unique<JsonValid>(arg);
  }
  if (kind == "length") {
    char* end = nullptr;
    const double n = std::strtod(arg.c_str(), &end);
    EV_CHECK(!arg.empty() && *end == 0, "reward: length:N needs a number, got '", arg, "'");
    return std::make_unique<Length>(n);
  }
  if (kind == "cmd") return std::make_unique<Command>(arg);
  fail("reward: unknown spec '", spec, "' (exact, contains, regex:, json, json-schema:, length:, cmd:)");
}

}  // namespace edgevl::train
