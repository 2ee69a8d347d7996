// Chat-template interpreter: parity with the reference renders of the real Gemma 3 and Qwen3
// templates (every line of ../shared/fixtures/tokenizers/*/chat.jsonl), plus the Jinja2 language
// features on hand-written templates whose expected output follows Python Jinja2 as transformers
// configures it (trim_blocks, lstrip_blocks, loopcontrols).
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "test_util.h"
#include "text/jinja/template.h"

using edgevl::Error;
using edgevl::text::jinja::RenderLimits;
using edgevl::text::jinja::Template;
using ojson = nlohmann::ordered_json;

namespace {

std::string R(const std::string& tmpl, const std::string& ctx = "{}") {
  return Template::parse(tmpl).render(ojson::parse(ctx));
}

std::string token_text(const ojson& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content")) return v["content"].get<std::string>();
  return "";
}

// json.dumps-style text (", " and ": " separators) of a JSON value.
std::string py_json(const ojson& v) {
  if (v.is_object()) {
    std::string s = "{";
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      s += (first ? "" : ", ") + ojson(it.key()).dump() + ": " + py_json(it.value());
      first = false;
    }
    return s + "}";
  }
  if (v.is_array()) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + py_json(v[i]);
    return s + "]";
  }
  return v.dump();
}

// The one place where the JavaScript reference (@huggingface/jinja) and Python Jinja2 disagree on
// these fixtures: `'text' + message.content` with list content. Python raises TypeError
// ("can only concatenate str (not "list") to str"), so transformers cannot render these
// conversations; the JS port coerces the list to its parts' JSON joined by ",". We follow Python
// and raise. A case counts as this deviation only when our error is exactly that TypeError and the
// reference text contains the JS coercion of a list-valued content of that conversation.
bool is_js_list_concat_deviation(const ojson& c, const std::string& err) {
  if (err.find("unsupported operand type(s) for +: 'str' and 'list'") == std::string::npos) return false;
  const std::string want = c["rendered"].get<std::string>();
  for (const auto& m : c["messages"]) {
    if (!m.contains("content") || !m["content"].is_array()) continue;
    std::string coerced;
    for (size_t i = 0; i < m["content"].size(); ++i) coerced += (i ? "," : "") + py_json(m["content"][i]);
    if (want.find(coerced) != std::string::npos) return true;
  }
  return false;
}

void check_fixture(const std::string& model) {
  const std::string dir = edgevl::test::shared_dir() + "/fixtures/tokenizers/" + model;
  std::ifstream cf(dir + "/tokenizer_config.json");
  ASSERT_TRUE(cf) << dir;
  ojson cfg = ojson::parse(cf);
  const std::string tmpl = cfg["chat_template"].get<std::string>();
  const std::string bos = cfg.contains("bos_token") ? token_text(cfg["bos_token"]) : "";
  const std::string eos = cfg.contains("eos_token") ? token_text(cfg["eos_token"]) : "";
  std::ifstream in(dir + "/chat.jsonl");
  ASSERT_TRUE(in);
  std::string line;
  int n = 0, pass = 0, rendered = 0, errors = 0, deviations = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    ojson c = ojson::parse(line);
    ++n;
    const bool want_error = c.contains("error");
    std::string got;
    bool threw = false;
    std::string err;
    try {
      got = edgevl::text::render_chat_template(tmpl, c["messages"], c["add_generation_prompt"].get<bool>(),
                                               c.value("extra", ojson::object()), bos, eos);
    } catch (const Error& e) {
      threw = true;
      err = e.what();
    }
    if (want_error) {
      EXPECT_TRUE(threw) << model << " case " << n << ": reference raised '" << c["error"] << "' but got:\n" << got;
      if (threw) {
        ++pass;
        ++errors;
      }
    } else if (threw && is_js_list_concat_deviation(c, err)) {
      ++pass;
      ++deviations;
    } else {
      const std::string want = c["rendered"].get<std::string>();
      EXPECT_FALSE(threw) << model << " case " << n << ": " << err;
      EXPECT_EQ(got, want) << model << " case " << n;
      if (!threw && got == want) {
        ++pass;
        ++rendered;
      }
    }
  }
  EXPECT_GT(n, 0);
  EXPECT_EQ(pass, n);
  std::printf("%s: %d/%d chat cases (%d rendered byte-identical, %d errors as the reference, %d where Python "
              "Jinja2 raises on str + list and the JS reference coerces)\n",
              model.c_str(), pass, n, rendered, errors, deviations);
}

}  // namespace

TEST(JinjaFixtures, Gemma3) { check_fixture("gemma3"); }
TEST(JinjaFixtures, Qwen3) { check_fixture("qwen3"); }

// ---- whitespace control ----

TEST(Jinja, TrimAndLstripBlocks) {
  // trim_blocks drops the newline after a block tag; lstrip_blocks the indentation before it.
  EXPECT_EQ(R("{% if true %}\n  yes\n{% endif %}\nafter"), "  yes\nafter");
  EXPECT_EQ(R("a\n    {% if true %}\nb\n    {% endif %}\nc"), "a\nb\nc");
  // Not for variable tags.
  EXPECT_EQ(R("  {{ 1 }}\n{{ 2 }}"), "  1\n2");
  // Comments are trimmed like blocks.
  EXPECT_EQ(R("a\n  {# note #}\nb"), "a\nb");
  // lstrip only when the tag starts the line.
  EXPECT_EQ(R("x {% if true %}y{% endif %}"), "x y");
  // One trailing newline of the template is dropped (keep_trailing_newline=False).
  EXPECT_EQ(R("hi\n"), "hi");
  EXPECT_EQ(R("hi\n\n"), "hi\n");
  // CRLF becomes LF.
  EXPECT_EQ(R("a\r\nb"), "a\nb");
}

TEST(Jinja, MinusAndPlusModifiers) {
  EXPECT_EQ(R("a   \n  {{- 'b' -}}  \n  c"), "abc");
  EXPECT_EQ(R("a\n{%- if true -%}\n  b  \n{%- endif -%}\nc"), "abc");
  EXPECT_EQ(R("a  {#- c -#}  b"), "ab");
  // `+` keeps the indentation lstrip_blocks would remove and the newline trim_blocks would drop.
  EXPECT_EQ(R("a\n  {%+ if true %}b{% endif +%}\nc"), "a\n  b\nc");
}

TEST(Jinja, Raw) {
  EXPECT_EQ(R("{% raw %}{{ x }}{% if %}{% endraw %}"), "{{ x }}{% if %}");
  EXPECT_EQ(R("{% raw -%}  {{ y }}  {%- endraw %}!"), "{{ y }}!");
}

// ---- expressions ----

TEST(Jinja, Literals) {
  EXPECT_EQ(R("{{ 1 }} {{ 1.5 }} {{ 2.0 }} {{ 1e3 }} {{ 'a' \"b\" }} {{ true }} {{ none }} {{ False }}"),
            "1 1.5 2.0 1000.0 ab True None False");
  EXPECT_EQ(R("{{ [1, 'a', none, [true]] }}"), "[1, 'a', None, [True]]");
  EXPECT_EQ(R("{{ {'a': 1, 'b': \"it's\"} }}"), "{'a': 1, 'b': \"it's\"}");
  EXPECT_EQ(R("{{ (1, 2) }} {{ (1,) }} {{ () }}"), "(1, 2) (1,) ()");
  EXPECT_EQ(R("{{ 'a\\nb\\t\\u00e9\\x41' }}"), "a\nb\t\xc3\xa9" "A");
  EXPECT_EQ(R("{{ 1_000 }}"), "1000");
}

TEST(Jinja, Arithmetic) {
  EXPECT_EQ(R("{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }}"),
            "7 9 3.5 3 -4 1 2");
  EXPECT_EQ(R("{{ 2 ** 10 }} {{ 2 ** -1 }} {{ 1 + 1.5 }} {{ true + 1 }} {{ 4 / 2 }}"), "1024 0.5 2.5 2 2.0");
  EXPECT_EQ(R("{{ 'ab' + 'cd' }} {{ 'ab' * 3 }} {{ [1] + [2] }} {{ 'n' ~ 1 ~ none }}"), "abcd ababab [1, 2] n1None");
  EXPECT_EQ(R("{{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1e-5 }} {{ 123456789012345678.0 }}"),
            "0.30000000000000004 1e+20 1e-05 1.2345678901234568e+17");
  EXPECT_THROW(R("{{ 'a' + 1 }}"), Error);
  EXPECT_THROW(R("{{ 1 / 0 }}"), Error);
  EXPECT_THROW(R("{{ 1 // 0 }}"), Error);
  EXPECT_THROW(R("{{ x + 1 }}"), Error);  // Undefined in arithmetic
  // Filters bind tighter than unary minus's operand chain: -x|abs is (-x)|abs.
  EXPECT_EQ(R("{{ -3|abs }}"), "3");
}

TEST(Jinja, ComparisonsAndLogic) {
  EXPECT_EQ(R("{{ 1 == 1.0 }} {{ 1 != 2 }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'a' < 'b' }} {{ [1,2] == [1,2] }}"),
            "True True True False True True");
  EXPECT_EQ(R("{{ 'b' in 'abc' }} {{ 2 in [1,2] }} {{ 'k' in {'k': 1} }} {{ 3 not in [1] }} {{ 'x' in y }}"),
            "True True True True False");
  EXPECT_EQ(R("{{ 0 or 'x' }} {{ 1 and 'y' }} {{ '' and 1 }} {{ not 0 }} {{ not 1 == 1 }}"), "x y  True False");
  EXPECT_EQ(R("{{ 'y' if 1 else 'n' }} {{ 'y' if 0 else 'n' }} [{{ 'y' if 0 }}]"), "y n []");
  EXPECT_THROW(R("{{ 1 < 'a' }}"), Error);
  EXPECT_THROW(R("{{ 1 in 2 }}"), Error);
}

TEST(Jinja, AccessAndSlicing) {
  const std::string ctx = R"({"m": {"role": "user", "items": 5, "list": [1, 2, 3, 4]}, "s": "h\u00e9llo"})";
  EXPECT_EQ(R("{{ m.role }} {{ m['role'] }} {{ m.list[0] }} {{ m.list[-1] }} {{ m.list.1 }}", ctx), "user user 1 4 2");
  EXPECT_EQ(R("{{ m.list[1:3] }} {{ m.list[::-1] }} {{ m.list[:-1] }} {{ m.list[::2] }}", ctx),
            "[2, 3] [4, 3, 2, 1] [1, 2, 3] [1, 3]");
  EXPECT_EQ(R("{{ s[1] }} {{ s[::-1] }} {{ s[1:3] }} {{ s|length }}", ctx), "\xc3\xa9 oll\xc3\xa9h \xc3\xa9l 5");
  // Dot access finds dict methods before keys; subscript finds keys first.
  EXPECT_EQ(R("{{ m['items'] }} {{ m.items()|length }}", ctx), "5 3");
  // Missing keys and indexes are undefined (render empty, test as undefined).
  EXPECT_EQ(R("[{{ m.nope }}] {{ m.nope is defined }} {{ m.list[9] is undefined }} {{ none['x'] is undefined }}", ctx),
            "[] False True True");
  // But going further into an undefined value raises, as Jinja2's default Undefined does.
  EXPECT_THROW(R("{{ m.nope.deeper }}", ctx), Error);
  EXPECT_THROW(R("{{ nope['x'] }}", ctx), Error);
  EXPECT_THROW(R("{{ nope() }}", ctx), Error);
  EXPECT_THROW(R("{{ m.list.startswith('a') }}", ctx), Error);  // calling an undefined attribute
}

// ---- statements ----

TEST(Jinja, IfElif) {
  const std::string t = "{% if x == 1 %}one{% elif x == 2 %}two{% else %}many{% endif %}";
  EXPECT_EQ(R(t, R"({"x": 1})"), "one");
  EXPECT_EQ(R(t, R"({"x": 2})"), "two");
  EXPECT_EQ(R(t, R"({"x": 3})"), "many");
  EXPECT_EQ(R(t), "many");
}

TEST(Jinja, ForLoopVariables) {
  EXPECT_EQ(R("{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}"
              "{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %}"),
            "1032TrueFalse3|2121FalseFalse3|3210FalseTrue3|");
  EXPECT_EQ(R("{% for x in [1,2,3] %}{{ loop.previtem is defined }}{{ loop.previtem }}-{{ loop.nextitem }};{% endfor %}"),
            "False-2;True1-3;True2-;");
  EXPECT_EQ(R("{% for x in [1,2,3,4] if x is even %}{{ x }}{{ loop.length }}{% endfor %}"), "2242");
  EXPECT_EQ(R("{% for x in [] %}no{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(R("{% for x in nothing %}no{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(R("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}"), "a=1;b=2;");
  EXPECT_EQ(R("{% for k in {'b': 1, 'a': 2} %}{{ k }}{% endfor %}"), "ba");
  EXPECT_EQ(R("{% for x in [1,2,3] %}{{ loop.cycle('a', 'b') }}{% endfor %}"), "aba");
  EXPECT_EQ(R("{% for a in [1,2] %}{% for b in [3,4] %}{{ loop.index }}{{ a }}{{ b }} {% endfor %}{% endfor %}"),
            "113 214 123 224 ");
  // loopcontrols
  EXPECT_EQ(R("{% for x in range(10) %}{% if x == 3 %}{% break %}{% endif %}{% if x == 1 %}{% continue %}{% endif %}{{ x }}{% endfor %}"),
            "02");
  EXPECT_THROW(R("{% for x in 5 %}{% endfor %}"), Error);
  EXPECT_THROW(R("{% for x in none %}{% endfor %}"), Error);
}

TEST(Jinja, SetScopingAndNamespace) {
  // A set inside a loop does not leak out; a namespace carries state out.
  EXPECT_EQ(R("{% set x = 1 %}{% for i in [1,2] %}{% set x = i %}{% endfor %}{{ x }}"), "1");
  EXPECT_EQ(R("{% set ns = namespace(x=1, y='a') %}{% for i in [1,2,3] %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}{{ ns.y }}"),
            "7a");
  // if does not open a scope.
  EXPECT_EQ(R("{% if true %}{% set x = 5 %}{% endif %}{{ x }}"), "5");
  EXPECT_EQ(R("{% set a, b = 1, 2 %}{{ a }}{{ b }}"), "12");
  EXPECT_EQ(R("{% set t = 1, 2 %}{{ t }}"), "(1, 2)");
  EXPECT_EQ(R("{% set body %}  Hi {{ 1 + 1 }}  {% endset %}[{{ body }}]"), "[  Hi 2  ]");
  EXPECT_EQ(R("{% set body | trim | upper %}  hi  {% endset %}[{{ body }}]"), "[HI]");
  EXPECT_THROW(R("{% set d = {} %}{% set d.x = 1 %}"), Error);
  EXPECT_EQ(R("{% set ns = namespace({'a': 1}) %}{{ ns.a }}"), "1");
}

TEST(Jinja, Macros) {
  EXPECT_EQ(R("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}"
              "{{ greet('A') }} {{ greet('B', '?') }} {{ greet(punct='.', name='C') }} [{{ greet() }}]"),
            "Hi A! Hi B? Hi C. [Hi !]");
  // Recursion, and macros see the template's variables.
  EXPECT_EQ(R("{% macro r(n) %}{% if n > 0 %}{{ n }}{{ r(n - 1) }}{% endif %}{% endmacro %}{{ r(3) }}"), "321");
  EXPECT_EQ(R("{% set g = 'x' %}{% macro m() %}{{ g }}{% endmacro %}{{ m() }}", "{}"), "x");
  EXPECT_THROW(R("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}"), Error);
  EXPECT_THROW(R("{% macro m(a) %}{% endmacro %}{{ m(b=1) }}"), Error);
  // Runaway recursion is an Error, not a crash.
  EXPECT_THROW(R("{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}"), Error);
}

TEST(Jinja, GenerationAndFilterBlocks) {
  EXPECT_EQ(R("{% generation %}gen {{ 1 }}{% endgeneration %}"), "gen 1");
  EXPECT_EQ(R("{% filter upper %}abc{{ 'd' }}{% endfilter %}"), "ABCD");
}

// ---- filters ----

TEST(Jinja, StringFilters) {
  EXPECT_EQ(R("[{{ '  a b \n'|trim }}] [{{ 'xxaxx'|trim('x') }}] {{ 'abc'|upper }} {{ 'ABC'|lower }}"), "[a b] [a] ABC abc");
  EXPECT_EQ(R("{{ 'hello wORLD-foo (bar)'|title }} {{ 'hELLO'|capitalize }}"), "Hello World-Foo (Bar) Hello");
  EXPECT_EQ(R("{{ 'aXbXc'|replace('X', '-') }} {{ 'aaa'|replace('a', 'b', 2) }}"), "a-b-c bba");
  EXPECT_EQ(R("{{ 'a\nb\n\nc'|indent(2) }}|{{ 'a\nb'|indent(2, true) }}|{{ 'a\n\nb'|indent(2, blank=true) }}"),
            "a\n  b\n\n  c|  a\n  b|a\n  \n  b");
  EXPECT_EQ(R("{{ '<a href=\"x\">&\\'</a>'|escape }}"), "&lt;a href=&#34;x&#34;&gt;&amp;&#39;&lt;/a&gt;");
  EXPECT_EQ(R("{{ 'abc'|length }} {{ [1,2]|count }} {{ {'a':1}|length }} {{ x|length }}"), "3 2 1 0");
  EXPECT_EQ(R("{{ '%s=%d'|format('a', 3) }} {{ 'ab'|reverse }} {{ 'a b  c'|wordcount }}"), "a=3 ba 3");
  EXPECT_EQ(R("{{ 'stra\xc3\x9f\xc3\xa9'|upper }}"), "STRASS\xc3\x89");
}

TEST(Jinja, ToJson) {
  const std::string ctx = R"({"t": {"name": "f", "b": [1, 2.5, true, null, "\u00e9\"\n"], "a": {}}})";
  // transformers' tojson: json.dumps with ensure_ascii=False, key order kept.
  EXPECT_EQ(R("{{ t|tojson }}", ctx), "{\"name\": \"f\", \"b\": [1, 2.5, true, null, \"\xc3\xa9\\\"\\n\"], \"a\": {}}");
  EXPECT_EQ(R("{{ t|tojson(indent=2) }}", ctx),
            "{\n  \"name\": \"f\",\n  \"b\": [\n    1,\n    2.5,\n    true,\n    null,\n    \"\xc3\xa9\\\"\\n\"\n  ],\n  \"a\": {}\n}");
  EXPECT_EQ(R("{{ {'b': 1, 'a': [1.0]}|tojson(sort_keys=true) }}"), "{\"a\": [1.0], \"b\": 1}");
  EXPECT_EQ(R("{{ 'x<y>&'|tojson }}"), "\"x<y>&\"");
  EXPECT_THROW(R("{{ nope|tojson }}"), Error);
}

TEST(Jinja, SequenceFilters) {
  const std::string ctx = R"({"ms": [{"role": "system", "n": 3}, {"role": "user", "n": 1}, {"role": "user", "n": 2}]})";
  EXPECT_EQ(R("{{ ms|selectattr('role', 'equalto', 'user')|map(attribute='n')|list }}", ctx), "[1, 2]");
  EXPECT_EQ(R("{{ ms|rejectattr('role', 'eq', 'user')|map(attribute='role')|join(',') }}", ctx), "system");
  EXPECT_EQ(R("{{ ms|selectattr('missing')|list }} {{ ms|selectattr('missing', 'undefined')|length }}", ctx), "[] 3");
  EXPECT_EQ(R("{{ ms|map(attribute='n')|sort }} {{ ms|sort(attribute='n', reverse=true)|map(attribute='n')|join }}", ctx),
            "[1, 2, 3] 321");
  EXPECT_EQ(R("{{ [1,2,3]|first }} {{ [1,2,3]|last }} {{ 'abc'|first }} [{{ []|first }}]"), "1 3 a []");
  EXPECT_EQ(R("{{ [1, 2, 3]|join('-') }} {{ ['a', 'B', 'A', 'b']|unique|list }} {{ [3,1]|reverse|list }}"),
            "1-2-3 ['a', 'B'] [1, 3]");
  EXPECT_EQ(R("{{ ['b','A','c']|sort }} {{ {'b': 1, 'a': 2}|dictsort }} {{ {'b': 1, 'a': 2}|items|list }}"),
            "['A', 'b', 'c'] [('a', 2), ('b', 1)] [('b', 1), ('a', 2)]");
  EXPECT_EQ(R("{{ [1,2,3]|select('odd')|list }} {{ [1,2,3]|reject('odd')|list }} {{ ['a','b']|map('upper')|join }}"),
            "[1, 3] [2] AB");
  EXPECT_EQ(R("{{ [3,1,2]|max }} {{ [3,1,2]|min }} {{ [1,2,3]|sum }} {{ [1,2,3,4,5]|batch(2)|list }}"),
            "3 1 6 [[1, 2], [3, 4], [5]]");
}

TEST(Jinja, ValueFilters) {
  EXPECT_EQ(R("{{ x|default('d') }} {{ none|default('d') }} {{ ''|default('d', true) }} {{ x|d('e') }}"), "d None d e");
  EXPECT_EQ(R("{{ '42'|int + 1 }} {{ '4.7'|int }} {{ 'x'|int(7) }} {{ 3.9|int }} {{ '1.5'|float }} {{ 2|float }}"),
            "43 4 7 3 1.5 2.0");
  EXPECT_EQ(R("{{ 2.5|round }} {{ 3.5|round }} {{ 1.2345|round(2) }} {{ 1.21|round(1, 'ceil') }} {{ -2|abs }}"),
            "2.0 4.0 1.23 1.3 2");
  EXPECT_EQ(R("{{ 1|string ~ 'a' }} {{ [1]|string }} {{ 'x'|safe }} {{ 'abc'|list }}"), "1a [1] x ['a', 'b', 'c']");
}

// ---- tests (`is`) ----

TEST(Jinja, Tests) {
  EXPECT_EQ(R("{{ x is defined }}{{ x is undefined }}{{ none is none }}{{ 'a' is string }}{{ 1 is number }}"
              "{{ 1.5 is number }}{{ {} is mapping }}{{ [] is iterable }}{{ 'a' is iterable }}{{ 1 is iterable }}"),
            "FalseTrueTrueTrueTrueTrueTrueTrueTrueFalse");
  EXPECT_EQ(R("{{ [] is sequence }}{{ true is boolean }}{{ 1 is boolean }}{{ true is true }}{{ 1 is true }}"
              "{{ false is false }}{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(4) }}"),
            "TrueTrueFalseTrueFalseTrueTrueTrueTrueFalse");
  EXPECT_EQ(R("{{ 1 is equalto 1 }}{{ 'a' is not none }}{{ 'a' is not string }}{{ 1 is integer }}{{ 1.0 is float }}"
              "{{ range is callable }}{{ 2 is in [1, 2] }}{{ 'ab' is lower }}"),
            "TrueTrueFalseTrueTrueTrueTrueTrue");
}

// ---- methods and globals ----

TEST(Jinja, StringMethods) {
  EXPECT_EQ(R("{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }}"),
            "True True ['a', 'b', '', 'c'] ['a', 'b']");
  EXPECT_EQ(R("{{ 'a,b,c'.split(',', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ 'x</think>y'.split('</think>')[-1] }}"),
            "['a', 'b,c'] ['a,b', 'c'] y");
  EXPECT_EQ(R("[{{ '\n x \n'.strip() }}] [{{ '\n\nx\n'.lstrip('\n') }}] [{{ 'xyy'.rstrip('y') }}] {{ 'aaa'.replace('a', 'b', 1) }}"),
            "[x] [x\n] [x] baa");
  EXPECT_EQ(R("{{ 'Ab'.upper() }}{{ 'Ab'.lower() }} {{ 'hello world'.title() }} {{ 'abcb'.find('b') }} {{ 'abcb'.rfind('b') }}"
              " {{ 'abcb'.find('z') }} {{ 'abcb'.count('b') }}"),
            "ABab Hello World 1 3 -1 2");
  EXPECT_EQ(R("{{ '{} and {name}'.format(1, name='x') }} {{ ', '.join(['a', 'b']) }} {{ 'a\nb'.splitlines() }}"),
            "1 and x a, b ['a', 'b']");
}

TEST(Jinja, DictMethodsAndGlobals) {
  EXPECT_EQ(R("{{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 5) }} {{ d.keys()|list }} {{ d.values()|list }}",
              R"({"d": {"a": 1, "b": 2}})"),
            "1 None 5 ['a', 'b'] [1, 2]");
  EXPECT_EQ(R("{{ range(3)|list }} {{ range(1, 7, 2)|list }} {{ range(3, 0, -1)|list }}"), "[0, 1, 2] [1, 3, 5] [3, 2, 1]");
  EXPECT_EQ(R("{{ dict(a=1)['a'] }}"), "1");
  EXPECT_EQ(R("{{ strftime_now('%Y')|length }}"), "4");
  try {
    R("{{ raise_exception('bad role') }}");
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad role"), std::string::npos);
  }
}

TEST(Jinja, ChatTemplateHelper) {
  const std::string t =
      "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}{% endfor %}"
      "{% if add_generation_prompt %}<assistant>{% endif %}{{ extra_var }}";
  ojson msgs = ojson::parse(R"([{"role": "user", "content": "hi"}])");
  EXPECT_EQ(edgevl::text::render_chat_template(t, msgs, true, ojson::parse(R"({"extra_var": "!"})"), "<s>", "</s>"),
            "<s><user>hi</s><assistant>!");
  nlohmann::json m2 = nlohmann::json::parse(R"([{"role": "user", "content": "x"}])");
  EXPECT_EQ(edgevl::text::render_chat_template(t, m2, false, nlohmann::json::object(), "", ""), "<user>x");
}

// ---- malformed templates and limits ----

TEST(Jinja, MalformedTemplatesFail) {
  const char* bad[] = {
      "{{ x ",                  // unclosed variable tag
      "{% if x %}",             // missing endif
      "{% for x in y %}",       // missing endfor
      "{% if %}{% endif %}",    // missing condition
      "{{ x | nosuchfilter }}",  // unknown filter
      "{{ x is nosuchtest }}",  // unknown test
      "{% endif %}",            // stray end tag
      "{% frobnicate %}",       // unknown tag
      "{# unclosed comment",
      "{{ 'unterminated }}",
      "{{ (1 + 2 }}",
      "{{ [1, 2 }}",
      "{{ 1 + }}",
      "{% break %}",            // outside a loop
      "{% for in x %}{% endfor %}",
      "{% set = 1 %}",
      "{% macro m(a=1, b) %}{% endmacro %}",
      "{% raw %}never closed",
      "{{ a @ b }}",
      "{% include 'x' %}",
  };
  for (const char* t : bad) EXPECT_THROW(Template::parse(t), Error) << t;
}

TEST(Jinja, HostileTemplatesAreBounded) {
  // Deep nesting.
  std::string deep(5000, '(');
  EXPECT_THROW(Template::parse("{{ " + deep + "1" + std::string(5000, ')') + " }}"), Error);
  std::string chain = "{{ 1";
  for (int i = 0; i < 5000; ++i) chain += " + 1";
  EXPECT_THROW(Template::parse(chain + " }}"), Error);
  std::string ifs;
  for (int i = 0; i < 1000; ++i) ifs += "{% if true %}";
  EXPECT_THROW(Template::parse(ifs), Error);
  // Runaway loops and output.
  EXPECT_THROW(R("{% for i in range(1000000) %}{% for j in range(1000000) %}{% endfor %}{% endfor %}"), Error);
  EXPECT_THROW(R("{{ 'x' * 100000000 }}"), Error);
  EXPECT_THROW(R("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}"),
               Error);
  RenderLimits small;
  small.max_output = 100;
  EXPECT_THROW(Template::parse("{% for i in range(100) %}{{ i }}{% endfor %}").render(ojson::object(), small), Error);
  // Self-referencing namespace: printing it is bounded.
  EXPECT_THROW(R("{% set ns = namespace() %}{% set ns.self = ns %}{{ ns }}"), Error);
}
