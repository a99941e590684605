#include "framework/core/cuda/caching_allocator.h"

#include "framework/core/cuda/cuda_check.h"

namespace graft::cuda {

namespace {
constexpr size_t kSmallGranule = 512;
constexpr size_t kLargeGranule = size_t{2} << 20;
constexpr size_t kSmallLimit = size_t{1} << 20;
}  // namespace

CachingAllocator& CachingAllocator::instance() {
  // Leaked on purpose: tensors released during static destruction still find the allocator.
  static CachingAllocator* a = new CachingAllocator();
  return *a;
}

size_t CachingAllocator::round_size(size_t bytes) {
  if (bytes == 0) bytes = 1;
  const size_t g = bytes < kSmallLimit ? kSmallGranule : kLargeGranule;
  return (bytes + g - 1) / g * g;
}

void* CachingAllocator::allocate(size_t bytes, int device, cudaStream_t stream) {
  const size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  if (!pending_.empty()) collect_pending_locked(device, /*wait=*/false);
  Stats& st = stats(device);
  auto& pool = pools_[PoolKey{device, stream}];
  void* ptr = nullptr;
  auto it = pool.lower_bound(size);
  if (it != pool.end() && it->first - size <= it->first / 4) {
    ptr = it->second;
    st.cached -= it->first;
    live_[ptr] = Block{it->first, device, stream};
    pool.erase(it);
  } else {
    DeviceGuard g(device);
    cudaError_t e = cudaMalloc(&ptr, size);
    if (e != cudaSuccess) {
      cudaGetLastError();
      collect_pending_locked(device, /*wait=*/true);
      free_cached_locked(device);
      e = cudaMalloc(&ptr, size);
    }
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      GRAFT_CHECK(false, "CUDA out of memory on cuda:", device, ": requested ", bytes,
                  " bytes; graft holds ", st.current, " bytes in use, device has ", free_b, " of ",
                  total_b, " bytes free");
    }
    ++st.mallocs;
    live_[ptr] = Block{size, device, stream};
  }
  st.current += live_[ptr].size;
  if (st.current > st.peak) st.peak = st.current;
  return ptr;
}

void CachingAllocator::release(void* ptr) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  GRAFT_CHECK(it != live_.end(), "release of a pointer the CUDA allocator did not hand out");
  const Block b = it->second;
  live_.erase(it);
  Stats& st = stats(b.device);
  st.current -= b.size;
  st.cached += b.size;
  if (b.used_on.empty()) {
    pools_[PoolKey{b.device, b.stream}].emplace(b.size, ptr);
    return;
  }
  DeviceGuard g(b.device);
  Pending p{ptr, b, {}};
  for (cudaStream_t s : b.used_on) {
    cudaEvent_t ev;
    GRAFT_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    GRAFT_CUDA_CHECK(cudaEventRecord(ev, s));
    p.events.push_back(ev);
  }
  pending_.push_back(std::move(p));
}

void CachingAllocator::record_stream(void* ptr, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  GRAFT_CHECK(it != live_.end(), "record_stream of a pointer the CUDA allocator did not hand out");
  Block& b = it->second;
  if (stream == b.stream) return;
  for (cudaStream_t s : b.used_on)
    if (s == stream) return;
  b.used_on.push_back(stream);
}

void CachingAllocator::collect_pending_locked(int device, bool wait) {
  for (size_t i = 0; i < pending_.size();) {
    Pending& p = pending_[i];
    bool done = true;
    if (p.block.device == device) {
      for (cudaEvent_t ev : p.events) {
        if (wait) GRAFT_CUDA_CHECK(cudaEventSynchronize(ev));
        const cudaError_t e = cudaEventQuery(ev);
        if (e == cudaErrorNotReady) {
          done = false;
          break;
        }
        GRAFT_CUDA_CHECK(e);
      }
    } else {
      done = false;
    }
    if (!done) {
      ++i;
      continue;
    }
    for (cudaEvent_t ev : p.events) cudaEventDestroy(ev);
    pools_[PoolKey{p.block.device, p.block.stream}].emplace(p.block.size, p.ptr);
    pending_[i] = std::move(pending_.back());
    pending_.pop_back();
  }
}

size_t CachingAllocator::pending_blocks(int device) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& p : pending_) n += p.block.device == device;
  return n;
}

void CachingAllocator::free_cached_locked(int device) {
  DeviceGuard g(device);
  // Blocks may still be in use by queued kernels of their stream: wait for the device first.
  GRAFT_CUDA_CHECK(cudaDeviceSynchronize());
  for (auto& [key, pool] : pools_) {
    if (key.device != device) continue;
    for (auto& [size, p] : pool) {
      GRAFT_CUDA_CHECK(cudaFree(p));
      stats(device).cached -= size;
    }
    pool.clear();
  }
}

void CachingAllocator::empty_cache(int device) {
  std::lock_guard<std::mutex> lock(mu_);
  free_cached_locked(device);
}

size_t CachingAllocator::current_bytes(int device) {
  std::lock_guard<std::mutex> lock(mu_);
  return stats(device).current;
}

size_t CachingAllocator::peak_bytes(int device) {
  std::lock_guard<std::mutex> lock(mu_);
  return stats(device).peak;
}

size_t CachingAllocator::cached_bytes(int device) {
  std::lock_guard<std::mutex> lock(mu_);
  return stats(device).cached;
}

size_t CachingAllocator::malloc_calls(int device) {
  std::lock_guard<std::mutex> lock(mu_);
  return stats(device).mallocs;
}

void CachingAllocator::reset_peak(int device) {
  std::lock_guard<std::mutex> lock(mu_);
  stats(device).peak = stats(device).current;
}

}  // namespace graft::cuda
