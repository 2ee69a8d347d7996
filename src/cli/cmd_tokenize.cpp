// edgevl tokenize / detokenize: a model's tokenizer on text or ids, one at a time or over JSONL
// datasets (each line's object gains ids, ids_special and decoded).
#include <cstdio>
#include <fstream>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "core/mmap.h"
#include "runtime/session.h"

namespace edgevl::cli {

namespace {
using ojson = nlohmann::ordered_json;

std::unique_ptr<text::Tokenizer> open_tokenizer(const std::string& model) {
  auto tok = load_tokenizer_for(model);
  EV_CHECK(tok, model, ": no tokenizer found (a GGUF vocabulary or a tokenizer.json folder)");
  return tok;
}

std::string json_string(const std::string& s) {
  return ojson(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}
}  // namespace

void add_tokenize(CLI::App& app) {
  struct Opts {
    std::string model, text, jsonl, out;
    bool special = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("tokenize", "Token ids and pieces of a text (or of each line of a JSONL file)");
  cmd->add_option("model", o->model, "Model folder (tokenizer.json) or .gguf file")->required();
  cmd->add_option("text", o->text, "Text to tokenize");
  cmd->add_flag("--special", o->special, "Add the tokenizer's special tokens (BOS/EOS) as its rules say");
  cmd->add_option("--jsonl", o->jsonl, "Batch: JSONL whose objects have a 'text' field");
  cmd->add_option("--out", o->out, "Batch output: each object plus ids, ids_special and decoded");
  cmd->callback([o] {
    auto tok = open_tokenizer(o->model);
    if (o->jsonl.empty()) {
      EV_CHECK(text::utf8::is_valid(o->text), "tokenize: the text is not valid UTF-8");
      auto ids = tok->encode(o->text, o->special, true);
      for (int32_t id : ids) std::printf("%d\t%s\n", id, json_string(tok->token_text(id)).c_str());
      std::fprintf(stderr, "%zu tokens\n", ids.size());
      return;
    }
    EV_CHECK(!o->out.empty(), "tokenize: --jsonl needs --out");
    std::ifstream in(o->jsonl);
    EV_CHECK(in, o->jsonl, ": cannot open");
    std::string out, line;
    int64_t n = 0;
    while (std::getline(in, line)) {
      ++n;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      ojson obj;
      try {
        obj = ojson::parse(line);
      } catch (const nlohmann::json::exception& e) {
        fail(o->jsonl, ":", n, ": invalid JSON: ", e.what());
      }
      EV_CHECK(obj.is_object() && obj.contains("text") && obj["text"].is_string(), o->jsonl, ":", n,
               ": expected an object with a string 'text'");
      const std::string text = obj["text"].get<std::string>();
      // As HF: control-token strings in the text are recognised either way; only BOS/EOS differ.
      auto ids = tok->encode(text, false, true);
      obj["ids"] = ids;
      obj["ids_special"] = tok->encode(text, true, true);
      obj["decoded"] = tok->decode(ids, false);
      out += obj.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    }
    write_file_atomic(o->out, out.data(), out.size());
    std::fprintf(stderr, "%lld lines -> %s\n", (long long)n, o->out.c_str());
  });
}

void add_detokenize(CLI::App& app) {
  struct Opts {
    std::string model, ids;
    bool skip_special = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("detokenize", "Text of a list of token ids");
  cmd->add_option("model", o->model, "Model folder (tokenizer.json) or .gguf file")->required();
  cmd->add_option("ids", o->ids, "Comma-separated token ids")->required();
  cmd->add_flag("--skip-special", o->skip_special, "Leave out control tokens");
  cmd->callback([o] {
    auto tok = open_tokenizer(o->model);
    std::string s = tok->decode(parse_id_list(o->ids), o->skip_special);
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::printf("\n");
  });
}

}  // namespace edgevl::cli
