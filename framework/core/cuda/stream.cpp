#include "framework/core/cuda/stream.h"

#include <mutex>
#include <vector>

#include "framework/core/cuda/cuda_check.h"

namespace graft::cuda {
namespace {

constexpr int kMaxDevices = 64;

// Process-wide default streams, created once per device and never destroyed (destroying them
// at exit would race with the CUDA runtime's own teardown).
cudaStream_t default_stream(int device) {
  static std::mutex mu;
  static cudaStream_t streams[kMaxDevices] = {};
  GRAFT_CHECK(device >= 0 && device < kMaxDevices, "device index ", device, " out of range");
  std::lock_guard<std::mutex> lock(mu);
  if (!streams[device]) {
    DeviceGuard g(device);
    GRAFT_CUDA_CHECK(cudaStreamCreateWithFlags(&streams[device], cudaStreamNonBlocking));
  }
  return streams[device];
}

struct ThreadStreams {
  cudaStream_t s[kMaxDevices] = {};
  bool set[kMaxDevices] = {};
};
thread_local ThreadStreams tls_streams;

}  // namespace

int device_count() {
  static const int n = [] {
    int c = 0;
    if (cudaGetDeviceCount(&c) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky "no driver" error so later calls are clean
      return 0;
    }
    return c;
  }();
  return n;
}

cudaStream_t current_stream(int device) {
  GRAFT_CHECK(device >= 0 && device < kMaxDevices, "device index ", device, " out of range");
  if (tls_streams.set[device]) return tls_streams.s[device];
  return default_stream(device);
}

void set_current_stream(int device, cudaStream_t stream) {
  GRAFT_CHECK(device >= 0 && device < kMaxDevices, "device index ", device, " out of range");
  tls_streams.s[device] = stream;
  tls_streams.set[device] = true;
}

cudaStream_t stream_or_current(void* explicit_stream, Device device) {
  GRAFT_CHECK(device.is_cuda(), "stream requested for ", device.str());
  if (explicit_stream) return static_cast<cudaStream_t>(explicit_stream);
  return current_stream(device.index);
}

}  // namespace graft::cuda
