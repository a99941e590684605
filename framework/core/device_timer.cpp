#include "framework/core/device_timer.h"

#include "framework/core/error.h"

namespace graft {
namespace {
DeviceTimer*& slot() {
  static DeviceTimer* timer = nullptr;
  return timer;
}
}  // namespace

void register_device_timer(DeviceTimer* timer) { slot() = timer; }

DeviceTimer& device_timer() {
  GRAFT_INPUT_CHECK(slot() != nullptr,
                    "device timing needs the CUDA backend (this graft was built "
                    "without CUDA)");
  return *slot();
}

}  // namespace graft
