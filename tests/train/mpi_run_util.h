// Helpers of the tests that run `graft train` under mpirun against one process
// (data_parallel_test, tensor_parallel_test, context_parallel_test, fp8_*_test).
#pragma once

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/test_paths.h"

namespace graft::test {

inline bool have_mpirun() { return std::system("command -v mpirun >/dev/null 2>&1") == 0; }

// `graft ARGS` on np ranks (oversubscribing the CI cores, ranks yielding when idle).
inline CommandResult mpirun(int np, const std::string& args) {
  return run_command(
      "mpirun --allow-run-as-root --oversubscribe --mca mpi_yield_when_idle 1 "
      "--mca btl self,vader,tcp -np " +
      std::to_string(np) + " " + graft_binary() + " " + args);
}

// The "loss" of every line of a --metrics-out file, in order.
inline std::vector<double> metric_losses(const std::string& path) {
  std::vector<double> out;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) out.push_back(nlohmann::json::parse(line).at("loss").get<double>());
  return out;
}

// " --set a --set b ..." for a command line.
inline std::string sets(const std::vector<std::string>& s) {
  std::string out;
  for (const auto& x : s) out += " --set " + x;
  return out;
}

}  // namespace graft::test
