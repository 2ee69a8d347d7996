#include "cli/common.h"

#include <sys/resource.h>

#include <cstdlib>
#include <sstream>

#include "core/error.h"

namespace edgevl::cli {

void add_thread_option(CLI::App* cmd, int& threads) {
  cmd->add_option("-t,--threads", threads, "Worker threads (0 = all cores)")->check(CLI::Range(0, 1024));
}

void add_sampling_options(CLI::App* cmd, SamplingOptions& s) {
  cmd->add_option("--temp", s.temperature, "Temperature; 0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", s.top_k, "Keep the k most likely tokens (0 = off)")->capture_default_str();
  cmd->add_option("--top-p", s.top_p, "Nucleus sampling mass (1 = off)")->capture_default_str();
  cmd->add_option("--min-p", s.min_p, "Drop tokens below min-p x the top probability (0 = off)")->capture_default_str();
  cmd->add_option("--repeat-penalty", s.repeat_penalty, "Penalty for recent tokens (1 = off)")->capture_default_str();
  cmd->add_option("--repeat-last-n", s.repeat_last_n, "How many recent tokens are penalised")->capture_default_str();
  cmd->add_option("--seed", s.seed, "Random seed")->capture_default_str();
}

std::vector<int32_t> parse_id_list(const std::string& s) {
  std::vector<int32_t> ids;
  std::string tok;
  std::istringstream in(s);
  while (std::getline(in, tok, ',')) {
    size_t b = tok.find_first_not_of(" \t"), e = tok.find_last_not_of(" \t");
    EV_CHECK(b != std::string::npos, "empty entry in id list '", s, "'");
    tok = tok.substr(b, e - b + 1);
    char* end = nullptr;
    long v = std::strtol(tok.c_str(), &end, 10);
    EV_CHECK(end && *end == 0 && v >= 0 && v < (1L << 31), "bad token id '", tok, "'");
    ids.push_back((int32_t)v);
  }
  EV_CHECK(!ids.empty(), "empty id list");
  return ids;
}

double peak_rss_mib() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;  // Linux reports KiB
}

}  // namespace edgevl::cli
