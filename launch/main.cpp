// The graft executable: `graft COMMAND [options]`. Commands register themselves (see
// launch/command.h), so adding one never touches this file.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "framework/core/error.h"
#include "launch/command.h"

int main(int argc, char** argv) {
  using graft::launch::commands;
  auto usage = [] {
    std::printf("graft: train, convert, check and benchmark decoder-only language models\n\n");
    std::printf("usage: graft COMMAND [options]   (graft COMMAND --help for a command's options)\n\n");
    std::printf("commands:\n");
    for (const auto& [name, cmd] : commands()) std::printf("  %-10s %s\n", name.c_str(), cmd.summary.c_str());
  };
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    usage();
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  auto it = commands().find(name);
  if (it == commands().end()) {
    std::fprintf(stderr, "graft: unknown command '%s' (graft --help lists them)\n", name.c_str());
    return 2;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  try {
    return it->second.run(args);
  } catch (const graft::InputError& e) {
    std::fprintf(stderr, "graft %s: %s\n", name.c_str(), e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "graft %s: internal error: %s\n", name.c_str(), e.what());
    return 1;
  }
}
