#include "kernels/cuda/cublaslt_util.h"

#include <map>
#include <mutex>
#include <utility>

#include "framework/core/cuda/caching_allocator.h"

namespace graft::cuda {

cublasLtHandle_t cublaslt_handle() {
  static cublasLtHandle_t h = [] {
    cublasLtHandle_t x = nullptr;
    GRAFT_CUBLAS_CHECK(cublasLtCreate(&x));
    return x;
  }();
  return h;
}

void* cublaslt_workspace(int device, cudaStream_t stream, size_t bytes) {
  static std::mutex mu;
  static auto* spaces = new std::map<std::pair<int, cudaStream_t>, std::pair<void*, size_t>>();
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = (*spaces)[{device, stream}];
  if (slot.second < bytes) {
    CachingAllocator::instance().release(slot.first);
    slot.first = CachingAllocator::instance().allocate(bytes, device, stream);
    slot.second = bytes;
  }
  return slot.first;
}

}  // namespace graft::cuda
