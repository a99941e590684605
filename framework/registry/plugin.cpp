// Plugins: shared libraries whose static registrations add layers or architectures.
//
// dlopen(RTLD_NOW | RTLD_GLOBAL) runs the plugin's static initialisers, which call
// Registry::add(); while it runs, the registry labels new entries with the plugin path and
// collects registration errors instead of throwing them across dlopen. The plugin resolves
// graft's symbols from the executable (built with ENABLE_EXPORTS), so it must not link graft's
// libraries itself. Loading the same path twice is a no-op.
#include <dlfcn.h>

#include <filesystem>
#include <mutex>
#include <set>

#include "framework/registry/registry.h"

namespace graft {

void load_plugin(const std::string& path) {
  static std::mutex m;
  static std::set<std::string> loaded;
  std::lock_guard<std::mutex> lock(m);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw InputError(str(path, ": plugin file not found"));
  const std::string canonical = std::filesystem::canonical(path, ec).string();
  if (loaded.count(canonical)) return;
  Registry& reg = Registry::global();
  reg.set_current_source(path);
  void* handle = dlopen(canonical.c_str(), RTLD_NOW | RTLD_GLOBAL);
  reg.set_current_source("builtin");
  std::vector<std::string> errors = reg.take_deferred_errors();
  if (!handle) {
    const char* why = dlerror();
    throw InputError(str(path, ": cannot load plugin: ", why ? why : "unknown dlopen error"));
  }
  loaded.insert(canonical);
  if (!errors.empty()) {
    std::string all;
    for (const auto& e : errors) all += (all.empty() ? "" : "; ") + e;
    throw InputError(str(path, ": plugin registration failed: ", all));
  }
}

}  // namespace graft
