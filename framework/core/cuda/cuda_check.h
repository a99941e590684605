// Error checking and small RAII helpers for CUDA runtime code (CUDA-side translation units only).
//
// GRAFT_CUDA_CHECK(expr): a failed runtime call becomes graft::Error naming the call, the CUDA
// error string and file:line. GRAFT_CUDA_CHECK_LAUNCH(): the same for the last kernel launch.
#pragma once

#include <cuda_runtime_api.h>

#include "framework/core/error.h"

#define GRAFT_CUDA_CHECK(expr)                                                                 \
  do {                                                                                         \
    cudaError_t graft_e_ = (expr);                                                             \
    GRAFT_CHECK(graft_e_ == cudaSuccess, #expr, " failed: ", cudaGetErrorName(graft_e_), " (", \
                cudaGetErrorString(graft_e_), ")");                                            \
  } while (0)

#define GRAFT_CUDA_CHECK_LAUNCH() GRAFT_CUDA_CHECK(cudaGetLastError())

namespace graft::cuda {

// Makes `device` current for the scope and restores the previous device after.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    GRAFT_CUDA_CHECK(cudaGetDevice(&prev_));
    if (prev_ != device) GRAFT_CUDA_CHECK(cudaSetDevice(device));
    cur_ = device;
  }
  ~DeviceGuard() {
    if (prev_ != cur_) cudaSetDevice(prev_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = 0, cur_ = 0;
};

}  // namespace graft::cuda
