// The CUDA DeviceGraphBackend (framework/core/device_graph.h): stream capture on the current
// stream, in cudaStreamCaptureModeThreadLocal (this thread may make no call that is unsafe during
// a capture, e.g. a synchronisation, and other threads are not constrained: cuBLASLt, cuDNN and
// the allocator run on this thread), allocations routed to a private pool of the caching
// allocator while capturing.
#include <memory>
#include <string>

#include "framework/core/cuda/caching_allocator.h"
#include "framework/core/cuda/cuda_check.h"
#include "framework/core/cuda/stream.h"
#include "framework/core/device_graph.h"

namespace graft::cuda {
namespace {

std::string cuda_error(const char* call, cudaError_t e) {
  return str(call, " failed: ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
}

class CudaGraph final : public DeviceGraph {
 public:
  CudaGraph(int device, cudaStream_t stream, int pool, cudaGraph_t graph, cudaGraphExec_t exec)
      : device_(device), stream_(stream), pool_(pool), graph_(graph), exec_(exec) {}
  ~CudaGraph() override {
    // Replays may still be queued: they must finish before the pool's blocks can be reused.
    DeviceGuard g(device_);
    cudaError_t e = cudaStreamSynchronize(stream_);
    if (e == cudaSuccess) e = cudaGraphExecDestroy(exec_);
    if (e == cudaSuccess) e = cudaGraphDestroy(graph_);
    cudaGetLastError();
    // On a failed synchronisation the device is unusable anyway; the pool is released either way
    // (the allocator's blocks stay valid memory).
    CachingAllocator::instance().release_pool(pool_);
  }
  void replay() override {
    DeviceGuard g(device_);
    GRAFT_CHECK(current_stream(device_) == stream_,
                "CUDA graph replay: the current stream of cuda:", device_,
                " is not the stream the graph was captured on");
    GRAFT_CUDA_CHECK(cudaGraphLaunch(exec_, stream_));
  }
  size_t num_nodes() const override {
    size_t n = 0;
    GRAFT_CUDA_CHECK(cudaGraphGetNodes(graph_, nullptr, &n));
    return n;
  }

 private:
  int device_;
  cudaStream_t stream_;
  int pool_;
  cudaGraph_t graph_;
  cudaGraphExec_t exec_;
};

class CudaGraphBackend final : public DeviceGraphBackend {
 public:
  std::unique_ptr<DeviceGraph> capture(Device device, const std::function<void()>& fn,
                                       std::string* why) override {
    GRAFT_CHECK(device.is_cuda(), "CUDA graph capture on ", device.str());
    DeviceGuard g(device.index);
    cudaStream_t s = current_stream(device.index);
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    GRAFT_CUDA_CHECK(cudaStreamIsCapturing(s, &status));
    if (status != cudaStreamCaptureStatusNone) {
      *why = "the stream is already being captured";
      return nullptr;
    }
    // Work queued before the capture must not be part of it and is not: capture records only
    // what is issued from now on. Errors of earlier kernels surface here, not as capture errors.
    GRAFT_CUDA_CHECK(cudaGetLastError());
    CachingAllocator& alloc = CachingAllocator::instance();
    // The capture's allocations all come from fresh memory of its own pool: return the general
    // pools' cached blocks (the warm-up steps' activations) to the driver first, so that the
    // graph does not hold a second copy of the step's working memory beside them.
    alloc.empty_cache(device.index);
    const int pool = alloc.begin_capture(device.index, s);
    cudaError_t e = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
      cudaGetLastError();
      alloc.end_capture(pool);
      alloc.release_pool(pool);
      *why = cuda_error("cudaStreamBeginCapture", e);
      return nullptr;
    }
    std::string err;
    try {
      fn();
    } catch (const std::exception& ex) {
      err = ex.what();
    }
    cudaGraph_t graph = nullptr;
    e = cudaStreamEndCapture(s, &graph);  // always: the stream leaves capture mode
    alloc.end_capture(pool);
    if (err.empty() && e != cudaSuccess) err = cuda_error("cudaStreamEndCapture", e);
    if (err.empty() && !graph) err = "cudaStreamEndCapture returned no graph";
    cudaGraphExec_t exec = nullptr;
    if (err.empty()) {
      e = cudaGraphInstantiate(&exec, graph, 0);
      if (e != cudaSuccess) err = cuda_error("cudaGraphInstantiate", e);
    }
    if (!err.empty()) {
      cudaGetLastError();  // capture errors are not sticky: clear the last error
      if (graph) cudaGraphDestroy(graph);
      cudaGetLastError();
      alloc.release_pool(pool);  // nothing of the capture ever ran
      *why = err;
      return nullptr;
    }
    return std::make_unique<CudaGraph>(device.index, s, pool, graph, exec);
  }
};

const bool registered = [] {
  static CudaGraphBackend* backend = new CudaGraphBackend();  // leaked: outlives static objects
  register_device_graph_backend(backend);
  return true;
}();

}  // namespace
}  // namespace graft::cuda
