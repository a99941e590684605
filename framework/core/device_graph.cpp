#include "framework/core/device_graph.h"

namespace graft {
namespace {
DeviceGraphBackend*& slot() {
  static DeviceGraphBackend* backend = nullptr;
  return backend;
}
}  // namespace

void register_device_graph_backend(DeviceGraphBackend* backend) { slot() = backend; }

DeviceGraphBackend* device_graph_backend() { return slot(); }

}  // namespace graft
