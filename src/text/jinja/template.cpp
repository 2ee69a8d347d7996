#include "text/jinja/template.h"

#include "text/jinja/interp.h"
#include "text/jinja/lexer.h"
#include "text/jinja/parser.h"

namespace edgevl::text::jinja {

struct Template::Program {
  Body body;
};

Template Template::parse(std::string_view source) {
  auto p = std::make_shared<Program>();
  p->body = parse_template(tokenize(source));
  Template t;
  t.program_ = std::move(p);
  return t;
}

std::string Template::render(const nlohmann::ordered_json& context, const RenderLimits& limits) const {
  EV_CHECK(program_, "jinja: render of an empty Template");
  Interp in(limits);
  return in.render(program_->body, context);
}

std::string Template::render(const nlohmann::json& context, const RenderLimits& limits) const {
  return render(nlohmann::ordered_json::parse(context.dump()), limits);
}

}  // namespace edgevl::text::jinja

namespace edgevl::text {

std::string render_chat_template(std::string_view tmpl, const nlohmann::ordered_json& messages,
                                 bool add_generation_prompt, const nlohmann::ordered_json& extra,
                                 const std::string& bos_token, const std::string& eos_token) {
  nlohmann::ordered_json ctx = nlohmann::ordered_json::object();
  ctx["messages"] = messages;
  ctx["add_generation_prompt"] = add_generation_prompt;
  ctx["bos_token"] = bos_token;
  ctx["eos_token"] = eos_token;
  if (extra.is_object())
    for (auto it = extra.begin(); it != extra.end(); ++it) ctx[it.key()] = it.value();
  else if (!extra.is_null())
    fail("chat template: extra variables must be a JSON object");
  return jinja::Template::parse(tmpl).render(ctx);
}

std::string render_chat_template(std::string_view tmpl, const nlohmann::json& messages, bool add_generation_prompt,
                                 const nlohmann::json& extra, const std::string& bos_token,
                                 const std::string& eos_token) {
  return render_chat_template(tmpl, nlohmann::ordered_json::parse(messages.dump()), add_generation_prompt,
                              nlohmann::ordered_json::parse(extra.dump()), bos_token, eos_token);
}

}  // namespace edgevl::text
