// Each `edgevl` command registers itself on the app: its options, its --help text and the
// function that runs it. Commands parse, validate and print; model logic lives below cli/.
#pragma once
#include <CLI/CLI.hpp>

namespace edgevl::cli {

void add_generate(CLI::App& app);
void add_run(CLI::App& app);
void add_chat(CLI::App& app);
void add_preprocess(CLI::App& app);
void add_perplexity(CLI::App& app);
void add_bench(CLI::App& app);
void add_info(CLI::App& app);
void add_quantize(CLI::App& app);
void add_init(CLI::App& app);
void add_dump(CLI::App& app);
void add_train_dump(CLI::App& app);
void add_train(CLI::App& app);
void add_merge(CLI::App& app);
void add_template(CLI::App& app);
void add_tokenize(CLI::App& app);
void add_detokenize(CLI::App& app);

}  // namespace edgevl::cli
