// The global layer registry (see registry.h). Entries are added at static-initialisation time and
// by plugins; lookups take a mutex so a plugin loading on one thread never tears a read on another.
#include "framework/registry/registry.h"

#include <cxxabi.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <mutex>

namespace graft {
namespace {

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}

std::string demangle(std::type_index t) {
  int status = 0;
  char* d = abi::__cxa_demangle(t.name(), nullptr, nullptr, &status);
  std::string out = status == 0 && d ? d : t.name();
  std::free(d);
  return out;
}

}  // namespace

Registry& Registry::global() {
  static Registry* r = new Registry();  // never destroyed: plugins may outlive static teardown
  return *r;
}

void Registry::add(RegistryEntry entry) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  entry.source = current_source_;
  std::string error;
  if (entry.name.empty()) error = str("a ", entry.kind, " was registered with an empty name");
  for (const auto& e : entries_) {
    if (e.name == entry.name && e.interface == entry.interface && e.config == entry.config) {
      error = str("layer name '", entry.name, "' registered twice (", e.source, " and ",
                  entry.source, ")");
      break;
    }
  }
  if (!error.empty()) {
    if (current_source_ != "builtin") {
      deferred_errors_.push_back(error);
      return;
    }
    throw InputError(error);
  }
  entries_.push_back(std::move(entry));
}

const RegistryEntry* Registry::find(const std::string& name) const {
  std::lock_guard<std::mutex> lock(registry_mutex());
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

const RegistryEntry* Registry::find(const std::string& name, std::type_index interface,
                                    std::type_index config) const {
  std::lock_guard<std::mutex> lock(registry_mutex());
  for (const auto& e : entries_)
    if (e.name == name && e.interface == interface && e.config == config) return &e;
  return nullptr;
}

std::vector<RegistryEntry> Registry::entries() const {
  std::vector<RegistryEntry> out;
  {
    std::lock_guard<std::mutex> lock(registry_mutex());
    out.assign(entries_.begin(), entries_.end());
  }
  std::sort(out.begin(), out.end(), [](const RegistryEntry& a, const RegistryEntry& b) {
    return a.name != b.name ? a.name < b.name : a.kind < b.kind;
  });
  return out;
}

std::vector<std::string> Registry::names_for(std::type_index interface) const {
  std::vector<std::string> out;
  {
    std::lock_guard<std::mutex> lock(registry_mutex());
    for (const auto& e : entries_)
      if (e.interface == interface) out.push_back(e.name);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

void Registry::throw_not_found(const std::string& name, const std::string& actual,
                               std::type_index interface, std::type_index config) const {
  std::string via = actual != name ? str(" (override of '", name, "')") : "";
  if (const RegistryEntry* e = find(actual)) {
    throw InputError(str("registry entry '", actual, "'", via, " is a ", e->kind, " (",
                         demangle(e->interface), " from ", demangle(e->config), "), not a ",
                         demangle(interface), " from ", demangle(config)));
  }
  std::string known;
  for (const auto& n : names_for(interface)) known += (known.empty() ? "" : ", ") + n;
  throw InputError(str("no layer registered under '", actual, "'", via, "; registered ",
                       demangle(interface), " names: ", known.empty() ? "(none)" : known));
}

void Registry::set_current_source(std::string source) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  current_source_ = std::move(source);
}

std::vector<std::string> Registry::take_deferred_errors() {
  std::lock_guard<std::mutex> lock(registry_mutex());
  return std::exchange(deferred_errors_, {});
}

void Registry::note_build_time(const std::string& name, std::chrono::steady_clock::time_point t0) {
  static const bool on = [] {
    const char* e = std::getenv("GRAFT_BUILD_TIMING");
    return e && *e && std::string(e) != "0";
  }();
  if (!on) return;
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (s >= 0.05) std::cerr << "[graft] build: " << name << " " << s << " s" << std::endl;
}

}  // namespace graft
