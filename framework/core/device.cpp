#include "framework/core/device.h"

#include "framework/core/error.h"

namespace graft {
namespace {
DeviceBackend*& backend_slot() {
  static DeviceBackend* backend = nullptr;
  return backend;
}
}  // namespace

std::string Device::str() const {
  return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index);
}

Device parse_device(const std::string& s, const std::string& what) {
  if (s == "cpu") return Device::cpu();
  if (s == "cuda") return Device::cuda(0);
  if (s.rfind("cuda:", 0) == 0) {
    const std::string idx = s.substr(5);
    GRAFT_INPUT_CHECK(!idx.empty() && idx.find_first_not_of("0123456789") == std::string::npos,
                      what, " = '", s, "': expected cpu, cuda or cuda:N");
    return Device::cuda(std::stoi(idx));
  }
  throw InputError(str(what, " = '", s, "': expected cpu, cuda or cuda:N"));
}

void register_device_backend(DeviceBackend* backend) { backend_slot() = backend; }

DeviceBackend& device_backend() {
  DeviceBackend* b = backend_slot();
  GRAFT_INPUT_CHECK(b != nullptr, "device cuda requested but graft was built without CUDA");
  GRAFT_INPUT_CHECK(b->device_count() > 0, "device cuda requested but no CUDA GPU is visible");
  return *b;
}

bool cuda_available() {
  DeviceBackend* b = backend_slot();
  return b != nullptr && b->device_count() > 0;
}

}  // namespace graft
