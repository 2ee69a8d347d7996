// Options and helpers shared by several commands.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "runtime/sampler.h"

namespace edgevl::cli {

void add_thread_option(CLI::App* cmd, int& threads);
void add_sampling_options(CLI::App* cmd, SamplingOptions& s);
std::vector<int32_t> parse_id_list(const std::string& s);  // "1, 2,3" -> {1,2,3}; Error on junk
// Peak resident set size of this process in MiB (getrusage).
double peak_rss_mib();

}  // namespace edgevl::cli
