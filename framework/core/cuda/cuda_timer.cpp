// The CUDA DeviceTimer: CUDA events recorded on the current stream (framework/core/device_timer.h).
#include "framework/core/cuda/cuda_check.h"
#include "framework/core/cuda/stream.h"
#include "framework/core/device_timer.h"

namespace graft::cuda {
namespace {

class CudaTimer final : public DeviceTimer {
 public:
  void* record(Device device) override {
    GRAFT_CHECK(device.is_cuda(), "CUDA timer called for ", device.str());
    DeviceGuard g(device.index);
    cudaEvent_t e;
    GRAFT_CUDA_CHECK(cudaEventCreate(&e));
    GRAFT_CUDA_CHECK(cudaEventRecord(e, current_stream(device.index)));
    return e;
  }
  float elapsed_ms(void* start, void* end) override {
    GRAFT_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(end)));
    float ms = 0;
    GRAFT_CUDA_CHECK(
        cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)));
    return ms;
  }
  void destroy(void* event) override {
    if (event) GRAFT_CUDA_CHECK(cudaEventDestroy(static_cast<cudaEvent_t>(event)));
  }
};

const bool registered = [] {
  static CudaTimer* timer = new CudaTimer();  // leaked: outlives static objects
  register_device_timer(timer);
  return true;
}();

}  // namespace
}  // namespace graft::cuda
