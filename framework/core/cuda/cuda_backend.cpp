// The CUDA DeviceBackend, registered at static-initialisation time (this object file is linked
// into every executable, so the registration is never dropped).
//
// Memory: device memory through the stream-ordered CachingAllocator on the current stream;
// pinned host memory through a small size-keyed cache of cudaHostAlloc blocks.
// Copies: host<->device copies are synchronous with respect to the host: the host buffer may be
// reused on return. Device->host copies wait for the stream. Host->device copies of up to
// kStagedBytes (ids, positions, targets, scalars) do not wait: the source is copied into a pinned
// staging block at once, the device copy is queued on the current stream, and the block returns
// to the pinned cache when an event recorded after it has completed (polled at the next staged
// copy); larger host->device copies (weights) are queued and then the stream is synchronised.
// Device->device copies are queued on the current stream and not waited for: every later device use
// is ordered after them on that stream and every host read goes through a device->host copy, which
// waits, so no observer can tell. Kernel-detected bad input (input_errors.h) surfaces as InputError
// at synchronize() and at every copy that waits. A host copy on a stream being captured into a
// CUDA graph is an error (the capture then fails and the step runs eagerly).
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "framework/core/cuda/caching_allocator.h"
#include "framework/core/cuda/cuda_check.h"
#include "framework/core/cuda/input_errors.h"
#include "framework/core/cuda/stream.h"
#include "framework/core/device.h"

namespace graft::cuda {
namespace {

class PinnedCache {
 public:
  void* allocate(size_t bytes) {
    const size_t size = CachingAllocator::round_size(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(size);
    void* p = nullptr;
    if (it != free_.end()) {
      p = it->second;
      free_.erase(it);
    } else {
      GRAFT_CUDA_CHECK(cudaHostAlloc(&p, size, cudaHostAllocPortable));
    }
    live_[p] = size;
    return p;
  }
  void release(void* p) {
    if (!p) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(p);
    GRAFT_CHECK(it != live_.end(), "release_pinned of a pointer not from allocate_pinned");
    free_.emplace(it->second, p);
    live_.erase(it);
  }

 private:
  std::mutex mu_;
  std::multimap<size_t, void*> free_;
  std::unordered_map<void*, size_t> live_;
};

// Pinned staging blocks of queued host->device copies, released once their copy has run.
class StagingQueue {
 public:
  explicit StagingQueue(PinnedCache* cache) : cache_(cache) {}
  // Queues dst <- src (host) on `s` through a pinned block; returns without waiting.
  void upload(void* dst, const void* src, size_t bytes, cudaStream_t s) {
    std::lock_guard<std::mutex> lock(mu_);
    reap();
    void* block = cache_->allocate(bytes);
    std::memcpy(block, src, bytes);
    GRAFT_CUDA_CHECK(cudaMemcpyAsync(dst, block, bytes, cudaMemcpyHostToDevice, s));
    cudaEvent_t ev;
    if (free_events_.empty()) {
      GRAFT_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    } else {
      ev = free_events_.back();
      free_events_.pop_back();
    }
    GRAFT_CUDA_CHECK(cudaEventRecord(ev, s));
    pending_.push_back({ev, block});
  }

 private:
  void reap() {  // under mu_: releases the blocks whose copies are done, oldest first
    size_t done = 0;
    while (done < pending_.size()) {
      const cudaError_t e = cudaEventQuery(pending_[done].first);
      if (e == cudaErrorNotReady) break;
      GRAFT_CUDA_CHECK(e);
      cache_->release(pending_[done].second);
      free_events_.push_back(pending_[done].first);
      ++done;
    }
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(done));
  }
  PinnedCache* cache_;
  std::mutex mu_;
  std::vector<std::pair<cudaEvent_t, void*>> pending_;
  std::vector<cudaEvent_t> free_events_;
};

constexpr size_t kStagedBytes = size_t{4} << 20;

class CudaBackend final : public DeviceBackend {
 public:
  int device_count() override { return cuda::device_count(); }
  void set_device(int index) override {
    check(Device::cuda(index));
    GRAFT_CUDA_CHECK(cudaSetDevice(index));
  }

  void* allocate(size_t bytes, Device device) override {
    check(device);
    return CachingAllocator::instance().allocate(bytes, device.index, current_stream(device.index));
  }
  void release(void* ptr, size_t, Device) override { CachingAllocator::instance().release(ptr); }

  void copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) override {
    if (bytes == 0) return;
    if (dst_dev.is_cuda() && src_dev.is_cuda()) {
      const int d = dst_dev.index;
      DeviceGuard g(d);
      cudaStream_t s = current_stream(d);
      if (dst_dev.index == src_dev.index) {
        GRAFT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s));
      } else {
        // The source device's pending work must be done before a peer copy reads it.
        GRAFT_CUDA_CHECK(cudaStreamSynchronize(current_stream(src_dev.index)));
        GRAFT_CUDA_CHECK(cudaMemcpyPeerAsync(dst, d, src, src_dev.index, bytes, s));
      }
      return;
    }
    const Device gpu = dst_dev.is_cuda() ? dst_dev : src_dev;
    GRAFT_CHECK(gpu.is_cuda(), "CUDA backend asked to copy host to host");
    check(gpu);
    DeviceGuard g(gpu.index);
    cudaStream_t s = current_stream(gpu.index);
    // A graph would replay a host copy from a staging block reused since (or wait on the host):
    // while capturing, a host copy fails the capture instead (cuda_graph.cpp falls back).
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    GRAFT_CUDA_CHECK(cudaStreamIsCapturing(s, &cs));
    GRAFT_CHECK(cs == cudaStreamCaptureStatusNone, "a ", bytes, "-byte ",
                dst_dev.is_cuda() ? "host->device" : "device->host",
                " copy while the step is captured in a CUDA graph (per-step values must reach a "
                "graph through device buffers written before it)");
    if (dst_dev.is_cuda() && bytes <= kStagedBytes) {
      staging_.upload(dst, src, bytes, s);  // no wait: the source is already copied
      return;
    }
    const cudaMemcpyKind kind = dst_dev.is_cuda() ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost;
    GRAFT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, s));
    GRAFT_CUDA_CHECK(cudaStreamSynchronize(s));
    check_input_errors(gpu.index);
  }

  void memset_zero(void* ptr, size_t bytes, Device device) override {
    if (bytes == 0) return;
    check(device);
    DeviceGuard g(device.index);
    GRAFT_CUDA_CHECK(cudaMemsetAsync(ptr, 0, bytes, current_stream(device.index)));
  }

  void synchronize(Device device) override {
    check(device);
    DeviceGuard g(device.index);
    GRAFT_CUDA_CHECK(cudaStreamSynchronize(current_stream(device.index)));
    check_input_errors(device.index);
  }

  void* allocate_pinned(size_t bytes) override { return pinned_.allocate(bytes); }
  void release_pinned(void* ptr) override { pinned_.release(ptr); }

  size_t current_bytes(Device device) override {
    return CachingAllocator::instance().current_bytes(device.index);
  }
  size_t peak_bytes(Device device) override {
    return CachingAllocator::instance().peak_bytes(device.index);
  }
  void reset_peak(Device device) override { CachingAllocator::instance().reset_peak(device.index); }

 private:
  void check(Device device) {
    GRAFT_CHECK(device.is_cuda(), "CUDA backend called for ", device.str());
    GRAFT_INPUT_CHECK(device.index >= 0 && device.index < device_count(), "device ", device.str(),
                      " requested but ", device_count(), " CUDA GPU(s) are visible");
  }
  PinnedCache pinned_;
  StagingQueue staging_{&pinned_};
};

const bool registered = [] {
  static CudaBackend* backend = new CudaBackend();  // leaked: outlives static tensors
  register_device_backend(backend);
  return true;
}();

}  // namespace
}  // namespace graft::cuda
