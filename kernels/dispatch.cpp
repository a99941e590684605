#include "kernels/dispatch.h"

#include <map>
#include <mutex>

#include "framework/core/error.h"

namespace graft::kernels {
namespace {
std::map<std::string, ErasedKernel>& table() {
  static std::map<std::string, ErasedKernel> t;
  return t;
}
}  // namespace

void register_cuda_kernel(const std::string& name, ErasedKernel fn) {
  GRAFT_CHECK(table().count(name) == 0, "CUDA kernel '", name, "' registered twice");
  table()[name] = fn;
}

ErasedKernel cuda_kernel(const std::string& name) {
  auto it = table().find(name);
  GRAFT_INPUT_CHECK(it != table().end(), "no CUDA implementation of ", name,
                    " in this build (CPU-only build, or the family has no CUDA kernel yet)");
  return it->second;
}

bool has_cuda_kernel(const std::string& name) { return table().count(name) > 0; }

}  // namespace graft::kernels
