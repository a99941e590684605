// Device-side timing for benchmarks, reached without depending on CUDA: the CUDA library
// registers a DeviceTimer (CUDA events on the current stream) at static-initialisation time.
//
//   void* a = device_timer().record(dev);  ...work...  void* b = device_timer().record(dev);
//   float ms = device_timer().elapsed_ms(a, b);  // waits for b
//   device_timer().destroy(a); device_timer().destroy(b);
#pragma once

#include "framework/core/device.h"

namespace graft {

struct DeviceTimer {
  virtual ~DeviceTimer() = default;
  // Queues a timestamp on the current stream of `device`; returns its handle.
  virtual void* record(Device device) = 0;
  // Waits for `end`; milliseconds from `start` to `end`.
  virtual float elapsed_ms(void* start, void* end) = 0;
  virtual void destroy(void* event) = 0;
};

void register_device_timer(DeviceTimer* timer);
// The registered timer; throws graft::InputError when there is none (CPU-only build).
DeviceTimer& device_timer();

}  // namespace graft
