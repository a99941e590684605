// Where tests find the source tree's files and the graft executable at run time — never from a
// compile-time path, so a test binary works wherever the tree and the build are copied.
//
//   source_root(): $GRAFT_SOURCE_ROOT if set, else the first folder holding
//                  recipes/tiny-cpu.yaml and tests/fixtures/hf found walking up from the working
//                  directory, then from the test executable's folder.
//   graft_binary(): $GRAFT_BIN if set (ctest sets it), else `graft` beside the test executable.
//   example_plugin(): $GRAFT_EXAMPLE_PLUGIN if set, else plugins/graft_example_plugin.so beside
//                  the executable's folder (build/bin -> build/plugins), else the build's own
//                  path of it.
//   run_command(cmd): runs a shell command, returns its exit code and its stdout + stderr.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace graft::test {

inline std::filesystem::path executable_dir() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return std::filesystem::current_path();
  buf[n] = '\0';
  return std::filesystem::path(buf).parent_path();
}

inline std::string source_root() {
  if (const char* e = std::getenv("GRAFT_SOURCE_ROOT"); e && *e) return e;
  namespace fs = std::filesystem;
  auto is_root = [](const fs::path& p) {
    return fs::exists(p / "recipes/tiny-cpu.yaml") && fs::is_directory(p / "tests/fixtures/hf");
  };
  for (fs::path start : {fs::current_path(), executable_dir()})
    for (fs::path p = start; !p.empty(); p = p.parent_path()) {
      if (is_root(p)) return p.string();
      if (p == p.parent_path()) break;
    }
  throw std::runtime_error(
      "cannot find the graft source tree (recipes/, tests/fixtures/) above the working "
      "directory or the test executable; set GRAFT_SOURCE_ROOT");
}

inline std::string graft_binary() {
  if (const char* e = std::getenv("GRAFT_BIN"); e && *e) return e;
  return (executable_dir() / "graft").string();
}

inline std::string example_plugin() {
  if (const char* e = std::getenv("GRAFT_EXAMPLE_PLUGIN"); e && *e) return e;
  const auto beside = executable_dir().parent_path() / "plugins" / "graft_example_plugin.so";
  if (std::filesystem::exists(beside)) return beside.string();
#ifdef GRAFT_EXAMPLE_PLUGIN
  return GRAFT_EXAMPLE_PLUGIN;
#else
  return beside.string();
#endif
}

struct CommandResult {
  int code = -1;    // exit code; -1 when the command could not start or did not exit
  std::string out;  // stdout and stderr
};

inline CommandResult run_command(const std::string& cmd) {
  CommandResult r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace graft::test
