// edgevl: run, inspect, convert and benchmark models on this machine.
#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"edgevl: run and post-train compact multimodal models entirely on this device"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "edgevl 0.1.0");
  edgevl::cli::add_run(app);
  edgevl::cli::add_chat(app);
  edgevl::cli::add_generate(app);
  edgevl::cli::add_perplexity(app);
  edgevl::cli::add_bench(app);
  edgevl::cli::add_info(app);
  edgevl::cli::add_quantize(app);
  edgevl::cli::add_init(app);
  edgevl::cli::add_dump(app);
  edgevl::cli::add_train(app);
  edgevl::cli::add_merge(app);
  edgevl::cli::add_train_dump(app);
  edgevl::cli::add_preprocess(app);
  edgevl::cli::add_template(app);
  edgevl::cli::add_tokenize(app);
  edgevl::cli::add_detokenize(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const edgevl::Error& e) {
    std::fprintf(stderr, "edgevl: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "edgevl: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "edgevl: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
