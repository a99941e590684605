#include "parallel/comm_backend.h"

#include <map>
#include <mutex>

#include "framework/core/error.h"

namespace graft {
namespace {

struct Registry {
  std::mutex mu;
  std::map<std::string, CommBackend*> backends;
};

Registry& registry() {
  static Registry* r = new Registry();  // leaked: used from static initialisers of other files
  return *r;
}

}  // namespace

void register_comm_backend(const std::string& name, CommBackend* backend) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  GRAFT_CHECK(backend != nullptr, "register_comm_backend(", name, ", null)");
  GRAFT_CHECK(r.backends.emplace(name, backend).second, "communication backend ", name,
              " registered twice");
}

CommBackend* find_comm_backend(const std::string& name) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.backends.find(name);
  return it == r.backends.end() ? nullptr : it->second;
}

}  // namespace graft
