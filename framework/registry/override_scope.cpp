// OverrideScope: a per-thread stack of name substitutions (see registry.h).
//
// Each scope pushes one frame; resolve() walks the frames innermost first and follows the
// substitution chain (a -> b in an outer scope, b -> c in an inner one: a resolves to c). A chain
// that comes back to a name it already visited is an error. Frames are thread_local, so a model
// built on another thread sees none of them.
#include <algorithm>
#include <set>

#include "framework/registry/registry.h"

namespace graft {
namespace {

struct Frame {
  uint64_t id = 0;
  std::vector<std::pair<std::string, std::string>> overrides;
};

std::vector<Frame>& scope_stack() {
  thread_local std::vector<Frame> stack;
  return stack;
}

uint64_t next_frame_id() {
  thread_local uint64_t n = 0;
  return ++n;
}

}  // namespace

std::string Registry::resolve(const std::string& name) const {
  const auto& stack = scope_stack();
  std::string cur = name;
  std::set<std::string> seen{cur};
  for (;;) {
    const std::string* next = nullptr;
    for (auto f = stack.rbegin(); f != stack.rend() && !next; ++f)
      for (const auto& [from, to] : f->overrides)
        if (from == cur) {
          next = &to;
          break;
        }
    if (!next) return cur;
    if (!seen.insert(*next).second)
      throw InputError(
          str("layer overrides form a cycle through '", *next, "' (resolving '", name, "')"));
    cur = *next;
  }
}

OverrideScope::OverrideScope(std::vector<std::pair<std::string, std::string>> overrides) {
  const Registry& reg = Registry::global();
  for (size_t i = 0; i < overrides.size(); ++i) {
    const auto& [from, to] = overrides[i];
    for (size_t j = 0; j < i; ++j)
      if (overrides[j].first == from)
        throw InputError(str("layer override of '", from, "' given twice in one scope ('",
                             overrides[j].second, "' and '", to, "')"));
    const RegistryEntry* target = reg.find(to);
    if (!target) {
      std::string known;
      for (const auto& e : reg.entries()) known += (known.empty() ? "" : ", ") + e.name;
      throw InputError(str("layer override '", from, "' -> '", to, "': no layer registered under '",
                           to, "'; registered: ", known));
    }
    const RegistryEntry* source = reg.find(from);
    if (source) {
      const RegistryEntry* same = reg.find(to, source->interface, source->config);
      if (!same)
        throw InputError(str("layer override '", from, "' -> '", to, "': '", to, "' is a ",
                             target->kind, ", not a ", source->kind, " built like '", from, "'"));
    }
  }
  id_ = next_frame_id();
  scope_stack().push_back(Frame{id_, std::move(overrides)});
}

OverrideScope::~OverrideScope() {
  auto& stack = scope_stack();
  for (auto it = stack.end(); it != stack.begin();) {
    --it;
    if (it->id == id_) {
      stack.erase(it);
      return;
    }
  }
}

}  // namespace graft
