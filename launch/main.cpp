// The graft executable: `graft COMMAND [options]`. Commands register themselves (see
// launch/command.h), so adding one never touches this file.
//
// `--plugin PATH` (or `--plugin=PATH`), anywhere on the command line and repeatable, loads a
// plugin before the command is looked up (a plugin may add layers, architectures or commands);
// the option is removed from the arguments the command sees.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "framework/core/error.h"
#include "framework/registry/registry.h"
#include "launch/command.h"
#include "parallel/launch.h"

namespace {

// Splits `--plugin PATH` / `--plugin=PATH` out of args; throws InputError on a missing PATH.
std::vector<std::string> take_plugins(std::vector<std::string>& args) {
  std::vector<std::string> plugins, rest;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--plugin") {
      if (i + 1 >= args.size())
        throw graft::InputError("--plugin needs a PATH to a shared library");
      plugins.push_back(args[++i]);
    } else if (a.rfind("--plugin=", 0) == 0) {
      plugins.push_back(a.substr(9));
    } else {
      rest.push_back(a);
    }
  }
  args = std::move(rest);
  return plugins;
}

}  // namespace

int main(int argc, char** argv) {
  using graft::launch::commands;
  auto usage = [] {
    std::printf("graft: train, convert, check and benchmark decoder-only language models\n\n");
    std::printf(
        "usage: graft COMMAND [options] [--plugin PATH ...]   (graft COMMAND --help for a "
        "command's options)\n\n");
    std::printf("commands:\n");
    for (const auto& [name, cmd] : commands())
      std::printf("  %-10s %s\n", name.c_str(), cmd.summary.c_str());
  };
  // Under mpirun / srun: MPI first (ranks, node-local rank); a world of one otherwise.
  try {
    graft::init_world(&argc, &argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "graft: cannot start the distributed runtime: %s\n", e.what());
    return 2;
  }
  const std::string rank = graft::rank_prefix();  // "rank N: " when the world has several ranks
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    for (const auto& p : take_plugins(args)) graft::load_plugin(p);
  } catch (const graft::InputError& e) {
    std::fprintf(stderr, "graft: %s\n", e.what());
    return 2;
  }
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    usage();
    return args.empty() ? 2 : 0;
  }
  const std::string name = args[0];
  auto it = commands().find(name);
  if (it == commands().end()) {
    std::fprintf(stderr, "graft: unknown command '%s' (graft --help lists them)\n", name.c_str());
    return 2;
  }
  args.erase(args.begin());
  try {
    return it->second.run(args);
  } catch (const graft::CollectiveInputError& e) {
    if (graft::world_info().rank == 0)
      std::fprintf(stderr, "graft %s: %s\n", name.c_str(), e.what());
    return 2;
  } catch (const graft::InputError& e) {
    std::fprintf(stderr, "%sgraft %s: %s\n", rank.c_str(), name.c_str(), e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%sgraft %s: internal error: %s\n", rank.c_str(), name.c_str(), e.what());
    return 1;
  }
}
