// Captured device work replayed as one launch (CUDA graphs), reached without depending on CUDA:
// the CUDA library registers a DeviceGraphBackend at static-initialisation time (as device.h and
// device_timer.h); a CPU-only build has none.
//
//   std::string why;
//   std::unique_ptr<DeviceGraph> g = device_graph_backend()->capture(dev, [&] { step(); }, &why);
//   if (g) g->replay();  // capture queued nothing: the captured work runs only in replays
//
// Memory: allocations made while `fn` is captured come from a private pool that the graph owns
// (framework/core/cuda/caching_allocator.h): blocks allocated and released during the capture may
// be reused within it, but no block of the pool is handed to an allocation made outside the
// capture while the graph lives, since every replay writes them again. Blocks allocated before
// the capture and released during it join the pool (the graph's earlier nodes still use them).
// Destroying the graph waits for its replays and returns the pool's blocks to the allocator.
// Tensors allocated before the capture and alive after it (parameters, gradients, optimizer state,
// caches made in warm-up steps) are simply used by every replay, at the same addresses.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "framework/core/device.h"

namespace graft {

class DeviceGraph {
 public:
  virtual ~DeviceGraph() = default;
  // Queues one replay on the stream the graph was captured on (it must be the current stream of
  // the graph's device).
  virtual void replay() = 0;
  virtual size_t num_nodes() const = 0;
};

struct DeviceGraphBackend {
  virtual ~DeviceGraphBackend() = default;
  // Captures the work `fn` queues on the current stream of `device` (nothing runs) into an
  // instantiated graph. Null with *why set when fn throws or the capture or the instantiation
  // fails; the capture is then ended, the error cleared and the stream usable again.
  virtual std::unique_ptr<DeviceGraph> capture(Device device, const std::function<void()>& fn,
                                               std::string* why) = 0;
};

void register_device_graph_backend(DeviceGraphBackend* backend);
// The registered backend, or null (a CPU-only build).
DeviceGraphBackend* device_graph_backend();

}  // namespace graft
