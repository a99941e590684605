// The current-stream notion of the CUDA backend.
//
// Each host thread has, per device, a current stream. By default it is one non-blocking stream
// per device that graft creates on first use (never the legacy default stream, which would
// serialise against every other stream). Allocation, copies, memsets and every kernel launched
// with `params.stream == nullptr` go to the current stream; StreamGuard switches it for a scope
// (e.g. a communication stream later). Work on one stream runs in issue order, which is what the
// stream-ordered caching allocator relies on: a block released on stream S may be handed out
// again on S at once.
#pragma once

#include <cuda_runtime_api.h>

#include "framework/core/device.h"

namespace graft::cuda {

int device_count();
// The calling thread's current stream for `device` (creates the default stream lazily).
cudaStream_t current_stream(int device = 0);
void set_current_stream(int device, cudaStream_t stream);
// `explicit_stream` when it is not null, else the current stream of `device`: how kernel
// launchers turn a params struct's `void* stream` into a cudaStream_t.
cudaStream_t stream_or_current(void* explicit_stream, Device device);

// Sets the current stream of `device` for the scope and restores the previous one.
class StreamGuard {
 public:
  StreamGuard(int device, cudaStream_t stream) : device_(device), prev_(current_stream(device)) {
    set_current_stream(device, stream);
  }
  ~StreamGuard() { set_current_stream(device_, prev_); }
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  int device_;
  cudaStream_t prev_;
};

}  // namespace graft::cuda
